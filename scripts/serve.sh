#!/usr/bin/env bash
# Serve the api (REST, Socket.IO, console) and one worker in the foreground; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
THREADS="${API_THREADS:-300}"  # threading mode: every WebSocket holds one thread

.venv/bin/gunicorn --no-control-socket -k gthread -w 1 --threads "$THREADS" \
  -b "0.0.0.0:$PORT" --graceful-timeout 10 wsgi:app &
API=$!
.venv/bin/python worker.py &
WORKER=$!
trap 'kill -TERM $API $WORKER 2>/dev/null; wait $API $WORKER 2>/dev/null; exit 0' INT TERM
echo "serving on http://127.0.0.1:$PORT (api pid $API, worker pid $WORKER); Ctrl-C stops both"
wait -n $API $WORKER
kill -TERM $API $WORKER 2>/dev/null || true
wait
