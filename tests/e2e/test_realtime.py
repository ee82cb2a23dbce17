"""Socket.IO with real python-socketio clients against real gunicorn processes."""
import threading

import pytest
import requests
import socketio
from flask_jwt_extended import decode_token

from tests.factories import create_user, token_for


def connect(url, namespace, token):
    client = socketio.Client(reconnection=False)
    client.connect(url, namespaces=[namespace], auth={"token": token}, transports=["websocket"],
                   wait_timeout=10)
    return client


def refusal(url, namespace, token):
    """Connect expecting a refusal; return the reason the server gave."""
    client = socketio.Client(reconnection=False)
    reasons = []
    client.on("connect_error", lambda data: reasons.append(data), namespace=namespace)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(url, namespaces=[namespace], auth={"token": token} if token else None,
                       transports=["websocket"], wait_timeout=5)
    client.disconnect()
    return reasons[0]["data"] if reasons else None


def test_operator_opens_control_and_a_citizen_is_refused(live_server, db):
    operator = create_user(db.session, role="operator")
    citizen = create_user(db.session, role="citizen")
    client = connect(live_server.url, "/control", token_for(operator))
    assert client.connected
    client.disconnect()
    reason = refusal(live_server.url, "/control", token_for(citizen))
    assert reason and reason["status"] == 403 and "operators" in reason["detail"]


@pytest.mark.parametrize("token", [None, "garbage", "eyJhbGciOiJIUzI1NiJ9.e30.invalid"])
def test_bad_tokens_are_refused_with_a_reason(live_server, token):
    reason = refusal(live_server.url, "/mobile", token)
    assert reason and reason["status"] == 401 and reason["detail"]


def test_an_emit_in_one_process_reaches_a_client_of_the_other(two_servers, db):
    first, second = two_servers
    protected = create_user(db.session, name="보호대상")
    guardian = create_user(db.session, name="보호자")
    received, arrived = [], threading.Event()
    client = socketio.Client(reconnection=False)
    client.on("guardian.invited", lambda data: (received.append(data), arrived.set()), namespace="/mobile")
    client.connect(second.url, namespaces=["/mobile"], auth={"token": token_for(guardian)},
                   transports=["websocket"], wait_timeout=10)
    try:
        answer = requests.post(first.url + "/api/v1/guardians", json={"phone": guardian.phone},
                               headers={"Authorization": f"Bearer {token_for(protected)}"}, timeout=10)
        assert answer.status_code == 201
        assert arrived.wait(5), "the invitation emitted by process 1 never reached process 2's client"
        assert received[0]["from"]["name"] == "보호대상"
    finally:
        client.disconnect()


def test_deleting_an_account_closes_its_sockets_on_every_process(two_servers, db):
    """A citizen's phone connected to process 2 is closed once the account is deleted through process 1, and
    cannot come back; another citizen's stays. (Staff accounts are not deleted by their holder: an admin
    suspends them, which closes their sockets the same way: test_staff.)"""
    from tests.factories import PASSWORD
    first, second = two_servers
    leaving, staying = create_user(db.session, name="떠나는 시민"), create_user(db.session, name="남는 시민")
    token = token_for(leaving)
    gone, stayed_gone = threading.Event(), threading.Event()
    phone = socketio.Client(reconnection=False)
    phone.on("disconnect", lambda *_reason: gone.set(), namespace="/mobile")
    phone.connect(second.url, namespaces=["/mobile"], auth={"token": token}, transports=["websocket"],
                  wait_timeout=10)
    other = socketio.Client(reconnection=False)
    other.on("disconnect", lambda *_reason: stayed_gone.set(), namespace="/mobile")
    other.connect(second.url, namespaces=["/mobile"], auth={"token": token_for(staying)},
                  transports=["websocket"], wait_timeout=10)
    try:
        answer = requests.delete(first.url + "/api/v1/me", json={"password": PASSWORD},
                                 headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 204, answer.text
        assert gone.wait(5), "the deleted citizen's socket on process 2 stayed open"
        assert not stayed_gone.wait(1) and other.connected
        assert refusal(second.url, "/mobile", token)["status"] == 401  # and cannot come back
    finally:
        phone.disconnect()
        other.disconnect()


def test_signing_out_closes_that_sign_ins_sockets_on_every_process(two_servers, db):
    """A guardian signs out of a shared phone through process 1: that phone's socket on process 2 closes and
    cannot come back with its access token; the guardian's own phone, signed in apart, stays connected."""
    from tests.factories import PASSWORD
    first, second = two_servers
    guardian = create_user(db.session, name="보호자")

    def signed_in():
        tokens = requests.post(first.url + "/api/v1/auth/login", json={"phone": guardian.phone, "password": PASSWORD},
                               timeout=10).json()
        return tokens["access_token"], tokens["refresh_token"]

    (shared_access, shared_refresh), (own_access, _) = signed_in(), signed_in()
    closed = {"shared": threading.Event(), "own": threading.Event()}
    phones = {}
    for name, access in (("shared", shared_access), ("own", own_access)):
        phones[name] = socketio.Client(reconnection=False)
        phones[name].on("disconnect", lambda *_reason, name=name: closed[name].set(), namespace="/mobile")
        phones[name].connect(second.url, namespaces=["/mobile"], auth={"token": access}, transports=["websocket"],
                             wait_timeout=10)
    try:
        answer = requests.post(first.url + "/api/v1/auth/logout", headers={"Authorization": f"Bearer {shared_refresh}"},
                               timeout=10)
        assert answer.status_code == 204, answer.text
        assert closed["shared"].wait(5), "the signed-out phone's socket on process 2 stayed open"
        assert refusal(second.url, "/mobile", shared_access)["status"] == 401
        assert not closed["own"].wait(1) and phones["own"].connected
        assert phones["own"].call("watch", {"walk_id": "not-a-walk"}, namespace="/mobile", timeout=5)["error"]
    finally:
        for phone in phones.values():
            phone.disconnect()


def test_a_refused_control_connect_on_the_same_connection_leaves_the_mobile_socket_its_person(live_server, db):
    """socket.io clients carry both namespaces on one connection, and Flask-SocketIO keeps one session per
    connection: a citizen's refused /control connect must not forget who the /mobile socket is."""
    import time
    import uuid
    citizen = create_user(db.session)
    client, refused = socketio.Client(reconnection=False), threading.Event()
    client.on("connect_error", lambda data: refused.set(), namespace="/control")
    client.connect(live_server.url, namespaces=["/mobile", "/control"], auth={"token": token_for(citizen)},
                   transports=["websocket"], wait=False)
    try:
        assert refused.wait(10)
        deadline = time.monotonic() + 10
        while "/mobile" not in client.namespaces and time.monotonic() < deadline:
            time.sleep(0.05)
        fix = {"lat": 37.47, "lon": 126.92, "accuracy_m": 8, "t": "2026-01-01T00:00:00+00:00"}
        ack = client.call("location", {"kind": "walk", "id": str(uuid.uuid4()), "fixes": [fix]},
                          namespace="/mobile", timeout=5)
        assert ack["error"]["status"] == 404  # an unknown walk of a known person, not a socket without one
    finally:
        client.disconnect()


def test_a_connect_event_from_a_connected_client_is_refused(live_server, db):
    """An EVENT packet named connect, with another person's token, must not make the socket theirs."""
    operator = create_user(db.session, role="operator")
    admin = create_user(db.session, role="admin")
    client = connect(live_server.url, "/control", token_for(operator))
    try:
        for data in ({"token": token_for(admin)}, ({}, {"token": token_for(admin)})):  # a tuple: two arguments
            assert client.call("connect", data, namespace="/control", timeout=5)["error"]["status"] == 404
        assert client.call("nothing", {}, namespace="/control", timeout=5)["error"]["status"] == 404
        assert client.connected
    finally:
        client.disconnect()


def test_suspending_an_operator_closes_their_console_on_every_process_and_keeps_it_shut(two_servers, db):
    """An admin on process 1 suspends an operator whose console is open on process 2: the console closes at
    once, cannot reconnect with its token, and receives nothing of the next alarm."""
    first, second = two_servers
    admin = create_user(db.session, role="admin")
    operator = create_user(db.session, role="operator", name="정직 관제요원")
    token = token_for(operator)
    gone, received = threading.Event(), []
    console = socketio.Client(reconnection=False)
    console.on("disconnect", lambda *_reason: gone.set(), namespace="/control")
    console.on("incident.created", received.append, namespace="/control")
    console.connect(second.url, namespaces=["/control"], auth={"token": token}, transports=["websocket"],
                    wait_timeout=10)
    try:
        answer = requests.post(f"{first.url}/api/v1/admin/users/{operator.id}/suspend", json={"reason": "조사"},
                               headers={"Authorization": f"Bearer {token_for(admin)}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert gone.wait(5), "the suspended operator's console on process 2 stayed open"
        assert refusal(second.url, "/control", token)["status"] == 401
        sos = requests.post(first.url + "/api/v1/sos", json={"lat": 37.4705, "lon": 126.9190},
                            headers={"Authorization": f"Bearer {token_for(create_user(db.session))}"}, timeout=10)
        assert sos.status_code == 201 and received == []
    finally:
        console.disconnect()


def test_a_moved_operator_reconnects_to_the_new_districts_room(two_servers, db):
    """Moved from 관악구 to 강남구 by an admin on process 1, an operator's console on process 2 is closed; the same
    token reconnects, and the console then hears 강남구's alarms, not 관악구's."""
    first, second = two_servers
    admin = create_user(db.session, role="admin")
    operator = create_user(db.session, role="operator", name="전보 관제요원")
    token = token_for(operator)
    gone = threading.Event()
    console = socketio.Client(reconnection=False)
    console.on("disconnect", lambda *_reason: gone.set(), namespace="/control")
    console.connect(second.url, namespaces=["/control"], auth={"token": token}, transports=["websocket"],
                    wait_timeout=10)
    try:
        answer = requests.patch(f"{first.url}/api/v1/admin/users/{operator.id}",
                                json={"district": "11680", "reason": "인사 발령"},
                                headers={"Authorization": f"Bearer {token_for(admin)}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert gone.wait(5), "the moved operator's console stayed in the old district's room"
    finally:
        console.disconnect()
    heard, gangnam_arrived = [], threading.Event()
    again = socketio.Client(reconnection=False)
    again.on("incident.created", lambda data: (heard.append(data["district"]), data["district"] == "11680"
                                               and gangnam_arrived.set()), namespace="/control")
    again.connect(second.url, namespaces=["/control"], auth={"token": token}, transports=["websocket"],
                  wait_timeout=10)
    try:
        for point in ({"lat": 37.4705, "lon": 126.9190}, {"lat": 37.5172, "lon": 127.0473}):  # 관악구, then 강남구청
            sos = requests.post(first.url + "/api/v1/sos", json=point,
                                headers={"Authorization": f"Bearer {token_for(create_user(db.session))}"}, timeout=10)
            assert sos.status_code == 201, sos.text
        assert gangnam_arrived.wait(5), "the moved operator did not hear 강남구's alarm"
        assert heard == ["11680"]
    finally:
        again.disconnect()


@pytest.mark.parametrize("change", [
    "UPDATE users SET suspended_at = now() WHERE id = :user",
    "UPDATE refresh_tokens SET revoked_at = now() WHERE jti = :sign_in",
    "UPDATE refresh_tokens SET expires_at = now() WHERE jti = :sign_in",
    "UPDATE users SET district_code = '11680' WHERE id = :user",
    "DELETE FROM users WHERE id = :user",
], ids=["suspended", "signed-out", "sign-in-expired", "moved", "deleted"])
def test_a_socket_whose_person_lost_standing_closes_even_when_no_close_was_sent(live_server, db, change):
    """The backstop: the person's standing changes in the database with no close sent through Redis (as when
    the process that made the change died right after its commit, or Redis was away): the process holding the
    socket finds it at its next sweep (every second here) and closes it. Another operator's socket stays."""
    from sqlalchemy import text

    from tests.factories import PASSWORD
    operator = create_user(db.session, role="operator", name="쓸려 나갈 관제요원")
    staying = create_user(db.session, role="operator", name="남는 관제요원")
    tokens = requests.post(live_server.url + "/api/v1/auth/login", json={"phone": operator.phone,
                                                                         "password": PASSWORD}, timeout=10).json()
    sign_in = decode_token(tokens["refresh_token"])["jti"]
    gone = {"operator": threading.Event(), "staying": threading.Event()}
    consoles = {}
    for name, token in (("operator", tokens["access_token"]), ("staying", token_for(staying))):
        consoles[name] = socketio.Client(reconnection=False)
        consoles[name].on("disconnect", lambda *_reason, name=name: gone[name].set(), namespace="/control")
        consoles[name].connect(live_server.url, namespaces=["/control"], auth={"token": token},
                               transports=["websocket"], wait_timeout=10)
    try:
        db.session.execute(text(change), {"user": operator.id, "sign_in": sign_in})
        db.session.commit()
        assert gone["operator"].wait(5), "the sweep did not close the socket"
        assert not gone["staying"].wait(1.5) and consoles["staying"].connected
    finally:
        for console in consoles.values():
            console.disconnect()
