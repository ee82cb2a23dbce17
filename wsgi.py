"""WSGI entry point for gunicorn and the `flask --app wsgi` command line."""
import sys

from safety_api import create_app

app = create_app()
# A serving process only: the setting is process-wide, so the app factory (tests, tools) leaves it alone.
sys.setswitchinterval(app.config["GIL_SWITCH_INTERVAL_S"])
