"""SocketEmitter against the real local Redis and a real python-socketio server."""
import json
import socket
import threading
import time
import uuid
from datetime import datetime

import pytest
import redis
import socketio
from werkzeug.serving import make_server

from notifications.sockets import SocketEmitter

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def channel():
    # Pub/Sub channels are shared by every Redis database, so each test takes its own name.
    return f"test-notifications-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def subscriber(channel):
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    yield pubsub
    pubsub.close()
    client.close()


@pytest.fixture
def emitter(channel):
    emitter = SocketEmitter(REDIS_URL, channel=channel)
    yield emitter
    emitter.close()


def published(pubsub, timeout=2.0):
    """Return the next queue message decoded from python-socketio's JSON, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message:
            return json.loads(message["data"])
    return None


def test_emit_publishes_event_room_and_namespace(emitter, subscriber):
    assert emitter.emit("incident.created", {"id": "42"}, namespace="/control",
                        room="district:11620") is True
    message = published(subscriber)
    assert {k: message[k] for k in ("method", "event", "data", "namespace", "room")} == {
        "method": "emit", "event": "incident.created", "data": [{"id": "42"}],
        "namespace": "/control", "room": "district:11620"}


def test_emit_without_a_room_goes_to_the_whole_namespace(emitter, subscriber):
    assert emitter.emit("positions", {"items": []}, namespace="/control")
    assert published(subscriber)["room"] is None


def test_emit_returns_false_when_redis_is_down(channel):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    emitter = SocketEmitter(f"redis://127.0.0.1:{port}/15", channel=channel, timeout_s=0.5)
    started = time.monotonic()
    assert emitter.emit("incident.created", {"id": "42"}, namespace="/control") is False
    assert time.monotonic() - started < 2
    emitter.close()


def test_unserialisable_payload_returns_false_and_publishes_nothing(emitter, subscriber):
    assert emitter.emit("walk.alert", {"at": datetime.now()}, namespace="/mobile") is False
    assert published(subscriber, timeout=0.3) is None


def test_emit_works_again_after_a_failure(emitter, subscriber):
    emitter.emit("walk.alert", {"at": datetime.now()}, namespace="/mobile")
    assert emitter.emit("walk.alert", {"alert": "overdue"}, namespace="/mobile", room="walk:1")
    assert published(subscriber)["data"] == [{"alert": "overdue"}]


@pytest.fixture
def live_server(channel):
    """A real python-socketio server listening on the same Redis channel; yields (url, sio)."""
    sio = socketio.Server(async_mode="threading",
                          client_manager=socketio.RedisManager(REDIS_URL, channel=channel))

    @sio.on("connect", namespace="/control")
    def connect(sid, environ, auth=None):
        sio.enter_room(sid, "district:11620", namespace="/control")

    server = make_server("127.0.0.1", 0, socketio.WSGIApp(sio), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def wait_for_listener(channel, timeout=5.0):
    """Wait until something (the server's queue listener) subscribes to ``channel``."""
    client = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + timeout
    try:
        while dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
            assert time.monotonic() < deadline, "the server never subscribed"
            time.sleep(0.02)
    finally:
        client.close()


def test_a_socketio_client_in_the_room_receives_the_emit(live_server, emitter, channel):
    received = threading.Event()
    payloads = []
    client = socketio.Client()
    client.on("incident.created", namespace="/control",
              handler=lambda data: (payloads.append(data), received.set()))
    client.connect(live_server, namespaces=["/control"], transports=["polling"])
    try:
        wait_for_listener(channel)  # a publish before the subscription would be lost
        assert emitter.emit("incident.created", {"id": "42"}, namespace="/control",
                            room="district:11620")
        assert received.wait(5)
    finally:
        client.disconnect()
    assert payloads == [{"id": "42"}]
