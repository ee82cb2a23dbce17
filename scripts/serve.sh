#!/usr/bin/env bash
# Serve the api (REST, Socket.IO, console) and one worker in the foreground; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
# Token-signing keys: the environment's, or random ones made once for this checkout and kept in
# .local-secrets (ignored by git), so that a demo never signs tokens with a key printed in the source and
# sign-ins survive a restart. A deployment sets its own (docs/operations.md).
if [ -z "${SECRET_KEY:-}" ] || [ -z "${JWT_SECRET_KEY:-}" ]; then
  if [ ! -s .local-secrets ]; then
    (umask 077; .venv/bin/python -c 'import secrets; print(f"SECRET_KEY={secrets.token_urlsafe(48)}\nJWT_SECRET_KEY={secrets.token_urlsafe(48)}")' > .local-secrets)
  fi
  set -a; . ./.local-secrets; set +a
fi
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
