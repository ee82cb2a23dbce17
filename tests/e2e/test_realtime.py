"""Socket.IO with real python-socketio clients against real gunicorn processes."""
import threading

import pytest
import requests
import socketio

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
