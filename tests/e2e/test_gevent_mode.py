"""The same api under gunicorn's gevent worker (SOCKETIO_ASYNC_MODE=gevent, gunicorn.conf.py): two processes
on the Redis queue, an SOS reaching the operators of another process, the caller's fixes going through the
group-commit writer (greenlets there, not threads) and a walk's positions reaching a guardian elsewhere."""
import time
import uuid

import pytest
import socketio
from sqlalchemy import func, select

from safety_api.models import LocationFix
from tests.e2e.test_sos_live import Listener, post_sos
from tests.e2e.test_walks_live import WATCHER_EVENTS, api, guardian_of, iso, now, start_walk, watch
from tests.factories import create_user, token_for
from tests.support.live import servers


@pytest.fixture(scope="module")
def gevent_servers(session_env):
    with servers({**session_env, "SOCKETIO_ASYNC_MODE": "gevent"}, count=2) as pair:
        yield pair


def phone(server, user) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(server.url, namespaces=["/mobile"], auth={"token": token_for(user)}, transports=["websocket"],
                   wait_timeout=10)
    return client


def test_sos_fixes_and_walk_positions_cross_processes_in_gevent_mode(gevent_servers, db, redis_client):
    first, second = gevent_servers
    operator = Listener(second.url, "/control", token_for(create_user(db.session, role="operator")),
                        ["incident.created", "positions"])
    citizen, walker = create_user(db.session), create_user(db.session, name="김귀가")
    guardian = guardian_of(db, walker)
    caller, walker_phone = phone(first, citizen), phone(first, walker)
    watcher = Listener(second.url, "/mobile", token_for(guardian), WATCHER_EVENTS)
    try:
        answer = post_sos(first, citizen, key=uuid.uuid4().hex)
        assert answer.status_code == 201, answer.text
        incident_id = answer.json()["incident"]["id"]
        assert operator.arrived["incident.created"].wait(10)
        assert operator.received["incident.created"][0]["id"] == incident_id

        # Twenty callers' worth of fixes at once from one phone: every ack follows its group's commit.
        acks = [caller.call("location", {"kind": "sos", "id": incident_id, "fixes": [
            {"lat": 37.4705 + i * 1e-5, "lon": 126.9190, "accuracy_m": 9, "t": iso(now())}]},
            namespace="/mobile", timeout=5) for i in range(20)]
        assert sum(a["accepted"] for a in acks) == 20, acks
        assert operator.arrived["positions"].wait(10)

        walk = start_walk(first, walker, [guardian])
        assert watch(watcher.client, walk["id"])["ok"] is True
        route = [(lat, lon) for lon, lat in walk["route"]["geometry"]["coordinates"]]
        fix = {"lat": route[0][0], "lon": route[0][1], "accuracy_m": 8, "t": iso(now())}
        ack = walker_phone.call("location", {"kind": "walk", "id": walk["id"], "fixes": [fix]}, namespace="/mobile",
                                timeout=5)
        assert ack["accepted"] == 1, ack
        assert watcher.arrived["walk.position"].wait(10)
        assert api(second, walker, "POST", f"/walks/{walk['id']}/finish").status_code == 200

        db.session.rollback()
        stored = db.session.scalar(select(func.count()).select_from(LocationFix)
                                   .where(LocationFix.incident_id == uuid.UUID(incident_id)))
        assert stored == 20
        assert redis_client.get(f"live:walk:{walk['id']}") is not None
    finally:
        for client in (caller, walker_phone):
            client.disconnect()
        operator.close()
        watcher.close()
        time.sleep(0.2)


def test_the_socket_sweep_runs_as_a_greenlet_in_gevent_mode(gevent_servers, db):
    """A suspension made straight in the database (no close sent) closes the socket at the next sweep, here a
    greenlet of the gevent worker."""
    import threading

    from sqlalchemy import text
    operator = create_user(db.session, role="operator")
    closed = threading.Event()
    console = socketio.Client(reconnection=False)
    console.on("disconnect", lambda *_reason: closed.set(), namespace="/control")
    console.connect(gevent_servers[0].url, namespaces=["/control"], auth={"token": token_for(operator)},
                    transports=["websocket"], wait_timeout=10)
    try:
        db.session.execute(text("UPDATE users SET suspended_at = now() WHERE id = :id"), {"id": operator.id})
        db.session.commit()
        assert closed.wait(5), "the gevent worker's sweep did not close the socket"
    finally:
        console.disconnect()
