"""The SOS benchmark's baseline: a bare Flask-SocketIO app, threading mode, on the same Redis message queue.

    gunicorn --no-control-socket -k gthread -w 1 --threads 700 -b 127.0.0.1:PORT bench.bare_socketio_app:app

POST /emit {id, payload} emits `incident.created` to the operators' room of /control through Redis: the
floor under POST /api/v1/sos (no auth, no database). /mobile takes the same `location` events as the real
app and acks them with counts; positions are batched to the room every 0.3 s, as the real app does.
"""
import os
import threading

from flask import Flask, jsonify, request
from flask_socketio import ConnectionRefusedError, Namespace, SocketIO, join_room

ROOM = "district:11620"
FLUSH_S = 0.3


def create_app() -> Flask:
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode=os.environ.get("SOCKETIO_ASYNC_MODE", "threading"), async_handlers=False,
                        logger=False, engineio_logger=False,
                        message_queue=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8"),
                        channel=os.environ.get("SOCKETIO_CHANNEL", "bench-bare"), cors_allowed_origins="*")
    latest, lock = {}, threading.Lock()

    def flush_forever():
        while True:
            socketio.sleep(FLUSH_S)
            with lock:
                items = list(latest.values())
                latest.clear()
            if items:
                socketio.emit("positions", {"items": items}, namespace="/control", to=ROOM)

    class Mobile(Namespace):
        def on_connect(self, auth=None):
            if not isinstance(auth, dict) or not auth.get("token"):
                raise ConnectionRefusedError("token required")

        def on_location(self, data):
            fixes = data.get("fixes") or []
            if fixes:
                with lock:
                    latest[data.get("id")] = {"kind": "sos", "id": data.get("id"), **fixes[-1]}
            return {"accepted": len(fixes), "rejected": 0, "duplicates": 0, "errors": []}

    class Control(Namespace):
        def on_connect(self, auth=None):
            join_room(ROOM)

    socketio.on_namespace(Mobile("/mobile"))
    socketio.on_namespace(Control("/control"))
    socketio.start_background_task(flush_forever)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/emit")
    def emit():
        body = request.get_json()
        socketio.emit("incident.created", {**body.get("payload", {}), "id": body["id"]}, namespace="/control",
                      to=ROOM)
        return jsonify({"incident": {"id": body["id"]}}), 201

    return app


app = create_app()
