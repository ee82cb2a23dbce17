"""Gunicorn settings of the api process, read by `gunicorn wsgi:app` run from the project root (`make run`,
the container image). Deployment knobs only; the app's own configuration is safety_api/config.py.

SOCKETIO_ASYNC_MODE chooses the worker. `threading` (the default): gthread, one thread per WebSocket, up to
API_THREADS. `gevent`: one greenlet per connection, up to API_CONNECTIONS; the way to hold thousands of
phones in one process (bench/ingest: 5,000 sockets held where threading collapsed; docs/monitoring.md).
"""
import os

_mode = os.environ.get("SOCKETIO_ASYNC_MODE", "threading")
workers = 1  # Socket.IO sessions live in one process: scale out with more processes behind a sticky balancer
graceful_timeout = 10
if _mode == "gevent":
    worker_class = "gevent"
    worker_connections = int(os.environ.get("API_CONNECTIONS", "10000"))
else:
    worker_class = "gthread"
    threads = int(os.environ.get("API_THREADS", "300"))
    worker_connections = max(1000, threads + 100)  # gthread also caps its clients at worker_connections


def post_worker_init(worker):
    """Before the first request: the api refuses to serve with the development signing key. An exception here is
    a boot error, on which gunicorn stops rather than starting worker after worker."""
    app = worker.wsgi
    if getattr(app, "import_name", None) == "safety_api":  # not the benchmarks' bare server
        from safety_api.security import refuse_to_serve_with_the_development_key
        refuse_to_serve_with_the_development_key(app)
