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


# --- the app's namespaces: every client event is acked, lifecycle names are not events ---------------------

@pytest.fixture
def app_sockets(app):
    """The app's namespaces on an in-process Socket.IO server without the message queue (Flask-SocketIO's test
    client refuses one); the app's own server and WSGI stack are put back afterwards."""
    from flask_socketio import SocketIO

    from safety_api.realtime import register_namespaces
    saved = app.wsgi_app, app.extensions.get("socketio"), app.extensions["socketio_server"]
    server = SocketIO()
    server.init_app(app, async_mode="threading", message_queue=None, logger=False, engineio_logger=False)
    register_namespaces(server)
    app.extensions["socketio_server"] = server.server  # what the app's services emit and disconnect through
    yield server
    app.wsgi_app, app.extensions["socketio"], app.extensions["socketio_server"] = saved


def open_socket(app, server, user, namespace="/mobile"):
    from flask_jwt_extended import create_access_token
    with app.app_context():
        token = create_access_token(identity=user)
    client = server.test_client(app, namespace=namespace, auth={"token": token})
    assert client.is_connected(namespace)
    return client


def problem_of(ack) -> dict:
    assert isinstance(ack, dict) and set(ack) == {"error"}, ack
    problem = ack["error"]
    assert problem["status"] and problem["title"] and problem["detail"] and problem["type"].startswith("https://")
    return problem


@pytest.fixture
def citizen(app, db):
    from tests.factories import create_user
    return create_user(db.session, name="시민")


@pytest.mark.parametrize("event, args", [
    ("location", ()), ("location", ({"kind": "sos", "id": str(uuid.uuid4()), "fixes": []}, 1)),
    ("watch", ()), ("unwatch", ()), ("watch", ({"walk_id": str(uuid.uuid4())}, {"extra": True})),
    ("location", (None,)), ("location", ("text",)), ("unwatch", ([1, 2],)),
    ("location", ({"kind": [], "id": str(uuid.uuid4()), "fixes": [{}]},)),
    ("location", ({"kind": {"walk": 1}, "id": str(uuid.uuid4()), "fixes": [{}]},)),
])
def test_an_event_of_the_wrong_shape_is_acked_with_a_422(app, app_sockets, citizen, caplog, event, args):
    client = open_socket(app, app_sockets, citizen)
    ack = client.emit(event, *args, namespace="/mobile", callback=True)
    assert problem_of(ack)["status"] == 422
    assert client.is_connected("/mobile")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("event", ["nothing-here", "on_connect", "__init__", "error", "connect_error"])
def test_an_unknown_event_is_acked_with_a_404(app, app_sockets, citizen, event):
    client = open_socket(app, app_sockets, citizen)
    assert problem_of(client.emit(event, {}, namespace="/mobile", callback=True))["status"] == 404


@pytest.mark.parametrize("namespace", ["/mobile", "/control"])
@pytest.mark.parametrize("event", ["connect", "disconnect"])
def test_lifecycle_names_sent_as_events_are_refused_and_change_nothing(app, db, app_sockets, caplog, namespace,
                                                                       event):
    """A client's EVENT named connect would re-run authentication: with another person's token it would make the
    socket theirs."""
    from flask_jwt_extended import create_access_token

    from tests.factories import create_user
    first = create_user(db.session, role="operator", name="첫째")
    second = create_user(db.session, role="admin", name="둘째")
    first_id, other = str(first.id), create_access_token(identity=second)
    client = open_socket(app, app_sockets, first, namespace)
    for args in ((), ({"token": other},), ({}, {"token": other}), ("reason",)):
        ack = client.emit(event, *args, namespace=namespace, callback=True)
        assert problem_of(ack)["status"] == 404, (args, ack)
    assert client.is_connected(namespace)
    sid = client.eio_sid and app_sockets.server.manager.sid_from_eio_sid(client.eio_sid, namespace)
    environ = app_sockets.server.get_environ(sid, namespace)
    assert environ["saved_session"][namespace]["user_id"] == first_id  # the socket is still the first person's
    rooms = app_sockets.server.rooms(sid, namespace=namespace)
    assert "central" not in rooms  # the admin's room was never joined
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    client.disconnect(namespace)


def test_an_unexpected_error_in_a_handler_is_an_error_ack(app, app_sockets, citizen, monkeypatch):
    from safety_api.realtime import handlers

    def broken(data, **_kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(handlers, "handle_unwatch", broken)
    client = open_socket(app, app_sockets, citizen)
    problem = problem_of(client.emit("unwatch", {"walk_id": str(uuid.uuid4())}, namespace="/mobile", callback=True))
    assert problem["status"] == 500 and "a bug" not in problem["detail"]
    assert client.is_connected("/mobile")


def test_a_connect_that_fails_on_a_dependency_is_refused_with_a_503(app, app_sockets, citizen, monkeypatch):
    """Anything but a refusal from the connect handler used to leave the client without an answer; any return
    value but False would have let it in."""
    from flask_jwt_extended import create_access_token

    from safety_api.realtime import namespaces

    def down(_auth):
        raise redis.ConnectionError("redis is away")
    monkeypatch.setattr(namespaces, "authenticate", down)
    with app.app_context():
        token = create_access_token(identity=citizen)
    client = app_sockets.test_client(app)  # on "/": the test client wraps _send_packet, so capture after it
    refusals = []
    send = app_sockets.server._send_packet

    def capture(eio_sid, pkt):
        if pkt.packet_type == 4:  # CONNECT_ERROR
            refusals.append(pkt.data)
        send(eio_sid, pkt)
    monkeypatch.setattr(app_sockets.server, "_send_packet", capture)
    client.connect("/mobile", auth={"token": token})
    assert not client.is_connected("/mobile")
    assert refusals and refusals[0]["data"]["status"] == 503


def test_deleting_the_account_closes_its_open_sockets(app, client, db, app_sockets, citizen):
    """A socket authenticates once, at connect; the account's deletion closes it (here in-process; across
    processes in tests/e2e/test_realtime.py)."""
    from tests.factories import PASSWORD, auth_header, create_user
    someone_else = create_user(db.session, name="이웃")
    key, other_key = f"sockets:user:{citizen.id}", f"sockets:user:{someone_else.id}"
    headers = auth_header(citizen)
    phone, tablet = open_socket(app, app_sockets, citizen), open_socket(app, app_sockets, citizen)
    neighbour = open_socket(app, app_sockets, someone_else)
    redis_client = app.extensions["redis"]
    assert redis_client.zcard(key) == 2 and redis_client.zcard(other_key) == 1
    tablet.disconnect("/mobile")
    assert redis_client.zcard(key) == 1  # a socket that goes is forgotten
    answer = client.delete("/api/v1/me", json={"password": PASSWORD}, headers=headers)
    assert answer.status_code == 204, answer.get_data(as_text=True)
    assert not phone.is_connected("/mobile")
    assert neighbour.is_connected("/mobile")
    assert not redis_client.exists(key) and redis_client.zcard(other_key) == 1


def test_a_password_change_closes_the_sockets_of_every_other_sign_in_and_keeps_its_own(app, client, db, app_sockets,
                                                                                       citizen):
    from tests.factories import PASSWORD
    signed_in = [client.post("/api/v1/auth/login", json={"phone": citizen.phone, "password": PASSWORD}).json
                 for _ in range(2)]
    this, lost = (app_sockets.test_client(app, namespace="/mobile", auth={"token": tokens["access_token"]})
                  for tokens in signed_in)
    answer = client.put("/api/v1/me/password", json={"password": PASSWORD, "new_password": "brand-new-pass-1"},
                        headers={"Authorization": f"Bearer {signed_in[0]['access_token']}"})
    assert answer.status_code == 204, answer.get_data(as_text=True)
    assert this.is_connected("/mobile")
    assert not lost.is_connected("/mobile")


def test_the_record_of_open_sockets_is_bounded_and_expires(app, db, app_sockets, citizen):
    """A crashed process never reports its sockets gone: its sids must not pile up under the person."""
    from safety_api.realtime import open_sockets
    key = f"sockets:user:{citizen.id}"
    redis_client = app.extensions["redis"]
    redis_client.zadd(key, {f"/mobile crashed-{n}": n for n in range(open_sockets.SOCKETS_KEPT + 5)})
    client = open_socket(app, app_sockets, citizen)
    assert redis_client.zcard(key) == open_sockets.SOCKETS_KEPT
    assert client.is_connected("/mobile")
    assert not redis_client.zrange(key, -1, -1)[0].startswith("/mobile crashed-")  # the newest is the live one
    assert 0 < redis_client.ttl(key) <= app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds()
    assert not any(m == "/mobile crashed-0" for m in redis_client.zrange(key, 0, -1))


def test_a_sign_out_landing_while_a_socket_is_still_connecting_closes_it_once_connected(
        app, db, app_sockets, citizen, monkeypatch):
    """The sign-out ends just after the connect read the sign-in, while python-socketio still holds the socket as
    connecting and so ignores the first disconnect: the second pass closes it."""
    from safety_api.realtime import namespaces, open_sockets
    from safety_api.services import accounts
    monkeypatch.setattr(open_sockets, "CLOSE_AGAIN_AFTER_S", 0.2)
    read = accounts.signed_in_user

    def read_then_sign_out(session, user_id, sign_in):
        user = read(session, user_id, sign_in)
        open_sockets.close_sockets_of(user_id)  # what a sign-out running at this moment does after its commit
        return user
    monkeypatch.setattr(namespaces.accounts, "signed_in_user", read_then_sign_out)
    client = open_socket(app, app_sockets, citizen)  # the first disconnect came while connecting: ignored
    deadline = time.time() + 5
    while client.is_connected("/mobile") and time.time() < deadline:
        time.sleep(0.05)
    assert not client.is_connected("/mobile")


def test_a_refused_connect_leaves_no_record_of_its_socket(app, db, app_sockets, citizen):
    """Sockets are recorded before the sign-in is read; a refusal must take its record back."""
    from safety_api.realtime.open_sockets import _key
    operator_console = app_sockets.test_client(app)
    with app.app_context():
        from flask_jwt_extended import create_access_token
        token = create_access_token(identity=citizen)
    operator_console.connect("/control", auth={"token": token})  # a citizen on /control: 403
    assert not operator_console.is_connected("/control")
    assert app.extensions["redis"].zcard(_key(citizen.id)) == 0


def test_an_admin_follows_the_central_centre_and_every_district_and_an_operator_only_their_own(app, db,
                                                                                                app_sockets):
    """Admins list every district's incidents: their /control sockets hear every district's news, a district
    loaded after they connected included; an operator hears only their own district's."""
    import time

    from safety_api.realtime import broadcast
    from tests.factories import create_user

    def joined(client):
        sid = app_sockets.server.manager.sid_from_eio_sid(client.eio_sid, "/control")
        return set(app_sockets.server.rooms(sid, namespace="/control")) - {sid}

    admin = open_socket(app, app_sockets, create_user(db.session, role="admin"), "/control")
    operator = open_socket(app, app_sockets, create_user(db.session, role="operator", district="11680"), "/control")
    assert joined(admin) == {"central", "districts"} and joined(operator) == {"district:11680"}
    with app.app_context():
        assert broadcast.to_district("99999", "incident.created", {"id": "from-a-district-loaded-later"})
    deadline, heard = time.monotonic() + 3, []
    while not heard and time.monotonic() < deadline:
        heard = [m["args"][0]["id"] for m in admin.get_received("/control") if m["name"] == "incident.created"]
        time.sleep(0.05)
    assert heard == ["from-a-district-loaded-later"]
    assert [m for m in operator.get_received("/control") if m["name"] == "incident.created"] == []
    admin.disconnect("/control"), operator.disconnect("/control")


def test_a_walk_fix_that_cannot_be_projected_is_acked_like_any_other(app, client, db, app_sockets, citizen):
    """The socket path of walk fixes: a valid coordinate that EPSG:5179 cannot place (-7.5, -144.5) proves the
    phone alive; it no longer fails the event with the rest of its write group."""
    from safety_api.clock import utcnow
    from tests.factories import auth_header
    walk = client.post("/api/v1/walks", headers=auth_header(citizen), json={
        "from": {"lat": 37.4705, "lon": 126.9190}, "to": {"lat": 37.4650, "lon": 126.9260}}).json
    phone = open_socket(app, app_sockets, citizen)
    fixes = [{"lat": -7.5, "lon": -144.5, "accuracy_m": 8.0, "t": utcnow().isoformat()}]
    ack = phone.emit("location", {"kind": "walk", "id": walk["id"], "fixes": fixes}, namespace="/mobile",
                     callback=True)
    assert (ack["accepted"], ack["rejected"]) == (1, 0), ack

