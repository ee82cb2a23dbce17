"""Flask-free domain services: module functions taking a session and plain values."""
