"""The SOS benchmark's baseline: a bare Flask-SocketIO app, threading mode, on the same Redis message queue.

    gunicorn --no-control-socket -k gthread -w 1 --threads 700 -b 127.0.0.1:PORT bench.bare_socketio_app:app

POST /emit {id, payload} emits `incident.created` to the operators' room of /control through Redis: the
floor under POST /api/v1/sos (no auth, no database). POST /emit-durable first stores the payload in
PostgreSQL (one INSERT, autocommit: one round trip and one WAL flush), then emits: the floor under any design
that keeps the rule "the alarm is committed before anyone is told" (DATABASE_URL; the `floor` phase).
/mobile takes the same `location` events as the real app and acks them with counts; positions are batched
to the room every 0.3 s, as the real app does.
"""
import contextlib
import os
import queue
import threading

import psycopg
from flask import Flask, jsonify, request
from flask_socketio import ConnectionRefusedError, Namespace, SocketIO, join_room
from psycopg.types.json import Jsonb

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

    durable = _Connections(os.environ.get("DATABASE_URL", ""), size=10)

    @app.post("/emit-durable")
    def emit_durable():
        body = request.get_json()
        with durable.connection() as conn:
            conn.execute("INSERT INTO bench_floor (id, payload) VALUES (%s, %s)", (body["id"], Jsonb(body)))
        socketio.emit("incident.created", {**body.get("payload", {}), "id": body["id"]}, namespace="/control",
                      to=ROOM)
        return jsonify({"incident": {"id": body["id"]}}), 201

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


class _Connections:
    """A fixed set of autocommit connections, all opened on first use (the `floor` phase only)."""

    def __init__(self, url: str, size: int):
        self.url, self.size, self.free, self.opened = url.replace("+psycopg", ""), size, queue.Queue(), False
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self):
        with self.lock:
            if not self.opened:
                for _ in range(self.size):
                    conn = psycopg.connect(self.url, autocommit=True)
                    conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id uuid PRIMARY KEY, payload jsonb NOT NULL)")
                    self.free.put(conn)
                self.opened = True
        conn = self.free.get()
        try:
            yield conn
        finally:
            self.free.put(conn)


app = create_app()
