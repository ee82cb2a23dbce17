#!/usr/bin/env bash
# Serve the api (REST, Socket.IO, console) and one worker in the foreground; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
# Worker class, threads or connections: gunicorn.conf.py (SOCKETIO_ASYNC_MODE, API_THREADS, API_CONNECTIONS).
.venv/bin/gunicorn --no-control-socket -b "0.0.0.0:$PORT" wsgi:app &
API=$!
.venv/bin/python worker.py &
WORKER=$!
trap 'kill -TERM $API $WORKER 2>/dev/null; wait $API $WORKER 2>/dev/null; exit 0' INT TERM
echo "serving on http://127.0.0.1:$PORT (api pid $API, worker pid $WORKER); Ctrl-C stops both"
wait -n $API $WORKER
kill -TERM $API $WORKER 2>/dev/null || true
wait
