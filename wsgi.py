"""WSGI entry point for gunicorn and the `flask --app wsgi` command line."""
from safety_api import create_app

app = create_app()
