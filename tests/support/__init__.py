"""Test helpers that are not fixtures: stand-in servers and plain factories."""
