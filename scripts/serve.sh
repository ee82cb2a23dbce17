#!/usr/bin/env bash
# Serve the api (REST, Socket.IO, console) and one worker in the foreground; Ctrl-C stops both, and so does
# either one ending (scripts/serve-lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/serve-lib.sh
PORT="${PORT:-8000}"
# Token-signing keys: the environment's, or random ones made once for this checkout and kept in
# .local-secrets (ignored by git), so that a demo never signs tokens with a key printed in the source and
# sign-ins survive a restart. Only a key left unset is taken from the file. A deployment sets its own
# (docs/operations.md).
if [ -z "${SECRET_KEY:-}" ] || [ -z "${JWT_SECRET_KEY:-}" ]; then
  if [ ! -s .local-secrets ]; then
    (umask 077; .venv/bin/python -c 'import secrets; print(f"SECRET_KEY={secrets.token_urlsafe(48)}\nJWT_SECRET_KEY={secrets.token_urlsafe(48)}")' > .local-secrets)
  fi
  fill_unset_from .local-secrets
fi
# Pushes: without FCM credentials the worker refuses to start (FCM would refuse every push), so a machine with
# none sends them to a local stand-in FCM server that accepts and lists them (GET $FCM_ENDPOINT/_requests).
if [ -z "${GOOGLE_APPLICATION_CREDENTIALS:-}" ] && [ -z "${FCM_ENDPOINT:-}" ]; then
  FCM_PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export FCM_ENDPOINT="http://127.0.0.1:$FCM_PORT"
  start_child stand-in-fcm .venv/bin/python -m tests.support.fake_fcm --port "$FCM_PORT"
  echo "no GOOGLE_APPLICATION_CREDENTIALS: pushes go to a stand-in FCM at $FCM_ENDPOINT (GET /_requests lists them)"
fi
# Worker class, threads or connections: gunicorn.conf.py (SOCKETIO_ASYNC_MODE, API_THREADS, API_CONNECTIONS).
start_child api .venv/bin/gunicorn --no-control-socket -b "0.0.0.0:$PORT" wsgi:app
start_child worker .venv/bin/python worker.py
echo "serving on http://127.0.0.1:$PORT (${CHILD_NAMES[*]}: pids ${CHILDREN[*]}); Ctrl-C stops them all"
supervise
