"""Socket.IO: one namespace per audience, joined across processes by the Redis message queue."""
from flask import Flask

from safety_api.extensions import socketio
from safety_api.realtime.open_sockets import Sweep
from safety_api.realtime.positions import batcher


def init_app(app: Flask):
    """Bind Socket.IO with an explicit async mode and the Redis queue, and register the namespaces."""
    socketio.init_app(
        app,
        async_mode=app.config["SOCKETIO_ASYNC_MODE"],
        **_queue(app.config.get("SOCKETIO_MESSAGE_QUEUE", app.config["REDIS_URL"]), app.config["SOCKETIO_CHANNEL"]),
        # Hot handlers run inline per connection: bounded concurrency, bounded Redis connections.
        async_handlers=False,
        cors_allowed_origins=app.config["CORS_ORIGINS"],
        logger=False, engineio_logger=False,
    )
    # Flask-SocketIO keeps one server per SocketIO object and replaces it on every init_app; each app keeps
    # its own so that emits go through the queue of the app they are made in.
    app.extensions["socketio_server"] = socketio.server
    app.extensions["socket_sweep"] = Sweep(app)
    # One batcher per process, as there is one app per serving process; its loop reads the interval each round.
    batcher.interval_s = app.config["POSITIONS_FLUSH_S"]
    register_namespaces(socketio)


def register_namespaces(server):
    """/mobile and /control on a Flask-SocketIO server, each with its error hook (Flask-SocketIO hands a
    handler's exception to it inside the handler's app and request context)."""
    from safety_api.realtime.namespaces import ControlNamespace, MobileNamespace

    for namespace in (MobileNamespace("/mobile"), ControlNamespace("/control")):
        server.on_namespace(namespace)
        server.on_error(namespace.namespace)(namespace.answer_error)


def _queue(url: str, channel: str) -> dict:
    """Our Redis queue (fails fast, resumes promptly after a Redis restart); any other queue as configured."""
    from safety_api.realtime.queue import RedisQueue

    if url.startswith(("redis://", "rediss://")):
        return {"client_manager": RedisQueue(url, channel=channel)}
    return {"message_queue": url, "channel": channel}
