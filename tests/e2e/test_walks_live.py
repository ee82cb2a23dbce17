"""Walk-home monitoring end to end: two gunicorn api processes and two workers on one Redis and one
database, real python-socketio clients for the walker, the guardians, strangers and an operator."""
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
import socketio
from sqlalchemy import func, select, text

from geo import track
from safety_api.models import GuardianLink, Incident, Job, LocationAccess, Walk, WalkAlert
from safety_api.services import walk_monitor
from tests.e2e.test_sos_live import Listener
from tests.factories import create_user, token_for
from tests.support.live import servers, wait_for

HOME_FROM = {"lat": 37.4705, "lon": 126.9190}
HOME_TO = {"lat": 37.4650, "lon": 126.9260}
WATCHER_EVENTS = ["walk.position", "walk.alert", "walk.ended", "walk.escalated"]
SHORT_TIMERS = {"WALK_SIGNAL_LOST_S": 3, "WALK_CHECKIN_WINDOW_S": 2, "WORKER_POLL_S": 0.1}


def guardian_of(db, walker, *, status="active"):
    guardian = create_user(db.session, name="보호자")
    db.session.add(GuardianLink(protected_id=walker.id, guardian_id=guardian.id, status=status))
    db.session.commit()
    return guardian


def api(server, user, method, path, **kwargs):
    headers = {"Authorization": f"Bearer {token_for(user)}"}
    return requests.request(method, server.url + "/api/v1" + path, headers=headers, timeout=10, **kwargs)


def start_walk(server, walker, guardians) -> dict:
    answer = api(server, walker, "POST", "/walks", json={"from": HOME_FROM, "to": HOME_TO,
                                                         "guardian_ids": [str(g.id) for g in guardians]})
    assert answer.status_code == 201, answer.text
    return answer.json()


def phone(server, user) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(server.url, namespaces=["/mobile"], auth={"token": token_for(user)}, transports=["websocket"],
                   wait_timeout=10)
    return client


def iso(moment: datetime) -> str:
    return moment.isoformat()


def now() -> datetime:
    return datetime.now(timezone.utc)


def watch(client, walk_id):
    return client.call("watch", {"walk_id": walk_id}, namespace="/mobile", timeout=5)


def test_guardians_on_another_process_follow_the_walk_and_everyone_else_is_refused(two_servers, db):
    first, second = two_servers
    walker = create_user(db.session, name="김귀가")
    chosen, unchosen = guardian_of(db, walker), guardian_of(db, walker)
    pending, stranger = guardian_of(db, walker, status="pending"), create_user(db.session)
    walk = start_walk(first, walker, [chosen])
    route = [(lat, lon) for lon, lat in walk["route"]["geometry"]["coordinates"]]
    guardian = Listener(second.url, "/mobile", token_for(chosen), WATCHER_EVENTS)
    walker_phone = Listener(first.url, "/mobile", token_for(walker), ["walk.alert"])
    others = [phone(second, who) for who in (unchosen, pending, stranger)]
    try:
        ack = watch(guardian.client, walk["id"])
        assert ack["ok"] is True and ack["walk"]["route"]["geometry"]["coordinates"]
        assert [watch(c, walk["id"])["error"]["status"] for c in others] == [404, 404, 404]
        refused = watch(others[2], "not-an-id")["error"]
        assert refused["status"] == 422 and refused["errors"][0]["field"] == "walk_id"  # the event's own field
        assert watch(others[2], str(uuid.uuid4()))["error"]["status"] == 404

        # Client timestamps, all fresh when they arrive (stamped as they are sent, so a slow machine cannot age
        # them past the staleness limit): 20 on the route, then 7 far off it.
        sent, sending = [], time.monotonic()
        for i in range(20):  # a phone in the foreground: one fix per message
            fix = {"lat": route[0][0] + i * 2e-5, "lon": route[0][1], "accuracy_m": 8,
                   "t": iso(now() - timedelta(seconds=50 - 0.5 * i))}
            ack = walker_phone.client.call("location", {"kind": "walk", "id": walk["id"], "fixes": [fix]},
                                           namespace="/mobile", timeout=5)
            assert ack["accepted"] == 1, ack
            sent.append(fix)
            time.sleep(0.05)
        sent_in = time.monotonic() - sending
        assert wait_for(lambda: _positions(guardian)[-1:] == [sent[-1]["t"]], 10)
        # Batched: at most one message per flush interval (0.3 s) while the fixes came, never one per fix.
        assert len(guardian.received["walk.position"]) <= min(19, int(sent_in / 0.3) + 2)
        assert all(item["id"] == walk["id"] for b in guardian.received["walk.position"] for item in b["items"])

        # Off the route, each fix to a different process: the walk row's lock orders them all.
        t1 = now()
        away = [{"lat": route[1][0], "lon": route[1][1] - 150 / 88_200, "accuracy_m": 8,
                 "t": iso(t1 - timedelta(seconds=35 - 5 * i))} for i in range(7)]
        for i, fix in enumerate(away):
            if i % 2:
                assert api(second, walker, "POST", f"/walks/{walk['id']}/fixes", json={"fixes": [fix]}).json()[
                    "accepted"] == 1
            else:
                walker_phone.client.call("location", {"kind": "walk", "id": walk["id"], "fixes": [fix]},
                                         namespace="/mobile", timeout=5)
        assert guardian.arrived["walk.alert"].wait(10) and walker_phone.arrived["walk.alert"].wait(10)
        assert guardian.received["walk.alert"][0]["alert"] == "deviated"
        assert _state(db, walk["id"]) == _pure_fold(db, walk["id"], sent + away)

        assert api(second, walker, "POST", f"/walks/{walk['id']}/checkin", json={"ok": True}).json()["answered"] == 1
        assert wait_for(lambda: [a["alert"] for a in guardian.received["walk.alert"]] == ["deviated", "checked_in"], 10)

        home = [{"lat": HOME_TO["lat"], "lon": HOME_TO["lon"], "accuracy_m": 6,
                 "t": iso(now() - timedelta(seconds=2 - i))} for i in range(3)]
        walker_phone.client.call("location", {"kind": "walk", "id": walk["id"], "fixes": home}, namespace="/mobile",
                                 timeout=5)
        assert guardian.arrived["walk.ended"].wait(10)
        assert guardian.received["walk.ended"][0]["status"] == "arrived"
        assert [a["alert"] for a in guardian.received["walk.alert"]][-1] == "arrived"
        assert api(first, chosen, "GET", f"/walks/{walk['id']}").json()["walk"]["status"] == "arrived"
        assert api(first, stranger, "GET", f"/walks/{walk['id']}").status_code == 404
        logged = db.session.execute(select(LocationAccess.viewer_id, LocationAccess.purpose)
                                    .order_by(LocationAccess.id)).all()
        assert logged == [(chosen.id, "walk.started"), (chosen.id, "walk.watch"), (chosen.id, "walk.read")]
    finally:
        for client in [guardian.client, walker_phone.client, *others]:
            client.disconnect()


def _positions(listener) -> list:
    return [item["t"] for batch in listener.received["walk.position"] for item in batch["items"]]


# When the server received the uploads: the one part of the state that depends on the moment, not the fixes.
RECEIPT_FIELDS = ("first_heard_t", "heard_t", "min_lag_s")


def _state(db, walk_id) -> dict:
    db.session.rollback()
    return {k: v for k, v in db.session.get(Walk, walk_id).monitor_state.items() if k not in RECEIPT_FIELDS}


def _pure_fold(db, walk_id, fixes) -> dict:
    """The same fixes folded in one process, with no database: what any process must have computed."""
    walk = db.session.get(Walk, walk_id)
    config, corridor = walk_monitor.monitor_config(walk), walk_monitor.corridor_of(walk)
    state = track.MonitorState.start(walk.started_at.timestamp())
    for raw in fixes:
        fix = track.Fix(lat=raw["lat"], lon=raw["lon"], accuracy_m=raw["accuracy_m"],
                        t=datetime.fromisoformat(raw["t"]).timestamp())
        state, _ = track.observe(state, fix, corridor=corridor, config=config, now=fix.t + 1.0)
    return {k: v for k, v in state.to_dict().items() if k not in RECEIPT_FIELDS}


@pytest.fixture(scope="module")
def short_timer_servers(session_env):
    """A second pair of api processes whose walks lose signal after 3 s and wait 2 s for a check-in."""
    with servers({**session_env, **{k: str(v) for k, v in SHORT_TIMERS.items()}}, count=2) as pair:
        yield pair


def test_silence_alerts_once_and_an_unanswered_prompt_reaches_the_operators_once(short_timer_servers, live_env, db,
                                                                                   spawn_worker):
    first, second = short_timer_servers
    env = {**live_env, **{k: str(v) for k, v in SHORT_TIMERS.items()}}
    workers = [spawn_worker(env) for _ in range(2)]
    walker = create_user(db.session, name="박침묵")
    chosen = guardian_of(db, walker)
    operator = Listener(second.url, "/control", token_for(create_user(db.session, role="operator")),
                        ["walk.escalated", "incident.created", "positions"])
    guardian = Listener(first.url, "/mobile", token_for(chosen), WATCHER_EVENTS)
    try:
        walk = start_walk(first, walker, [chosen])
        assert watch(guardian.client, walk["id"])["ok"] is True
        fix = {"lat": HOME_FROM["lat"], "lon": HOME_FROM["lon"], "accuracy_m": 9, "t": iso(now())}
        posted = api(second, walker, "POST", f"/walks/{walk['id']}/fixes", json={"fixes": [fix]}).json()
        assert posted["accepted"] == 1, posted
        assert guardian.arrived["walk.alert"].wait(30), "signal_lost never came"  # workers may start slowly
        assert guardian.received["walk.alert"][0]["alert"] == "signal_lost"
        assert operator.arrived["walk.escalated"].wait(15), "no escalation"
        escalated = operator.received["walk.escalated"][0]
        assert escalated["walk_id"] == walk["id"] and escalated["route"]["geometry"]["coordinates"]
        assert [f["t"] for f in escalated["trail"]] == [datetime.fromisoformat(fix["t"]).isoformat()]
        assert operator.arrived["incident.created"].wait(10)
        assert operator.received["incident.created"][0]["trigger"] == "walk_escalation"
        assert guardian.arrived["walk.escalated"].wait(10)

        later = {**fix, "lat": HOME_FROM["lat"] + 1e-4, "t": iso(now())}  # operators now follow the walker
        assert api(first, walker, "POST", f"/walks/{walk['id']}/fixes", json={"fixes": [later]}).json()["accepted"] == 1
        incident_id = escalated["incident_id"]
        assert wait_for(lambda: any(i["id"] == incident_id and i["kind"] == "sos"
                                    for b in operator.received["positions"] for i in b["items"]), 3)
        time.sleep(4)  # long enough for a second signal_lost or escalation, were there to be one
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Incident)) == 1
        assert db.session.scalars(select(WalkAlert.kind)).all() == ["signal_lost"]
        assert db.session.scalar(select(Incident.walk_id)) == uuid.UUID(walk["id"])
        failed = db.session.scalar(select(func.count()).select_from(Job).where(Job.status == "failed"))
        assert failed == 0
        claimed_twice = db.session.execute(text(
            "SELECT count(*) FROM jobs WHERE kind LIKE 'walk.%' AND attempts > 1")).scalar()
        assert claimed_twice == 0
    finally:
        operator.close()
        guardian.close()
        for worker in workers:
            assert worker.stop() == 0


def test_a_guardian_whose_link_is_removed_stops_receiving_the_walk_at_once(two_servers, db):
    """The right to watch is the link's, not the socket's: once the walker ends the link, the guardian's socket
    gets no more positions, alerts, escalation or end, on whichever process it is connected to."""
    first, second = two_servers
    walker = create_user(db.session, name="정해지")
    removed, kept = guardian_of(db, walker), guardian_of(db, walker)
    walk = start_walk(first, walker, [removed, kept])
    gone = Listener(second.url, "/mobile", token_for(removed), WATCHER_EVENTS)  # another process than the DELETE
    stays = Listener(first.url, "/mobile", token_for(kept), WATCHER_EVENTS)
    walker_phone = Listener(second.url, "/mobile", token_for(walker), WATCHER_EVENTS)  # not watching
    try:
        assert watch(gone.client, walk["id"])["ok"] is True and watch(stays.client, walk["id"])["ok"] is True
        first_fix = {"lat": HOME_FROM["lat"], "lon": HOME_FROM["lon"], "accuracy_m": 8, "t": iso(now())}
        assert api(second, walker, "POST", f"/walks/{walk['id']}/fixes", json={"fixes": [first_fix]}).json()[
            "accepted"] == 1
        assert wait_for(lambda: _positions(gone) and _positions(stays), 10)

        link = db.session.scalar(select(GuardianLink.id).where(GuardianLink.guardian_id == removed.id))
        assert api(first, walker, "DELETE", f"/guardians/{link}").status_code == 204
        before = {e: len(gone.received[e]) for e in WATCHER_EVENTS}
        later = {**first_fix, "lat": HOME_FROM["lat"] + 1e-4, "t": iso(now())}
        assert api(second, walker, "POST", f"/walks/{walk['id']}/fixes", json={"fixes": [later]}).json()[
            "accepted"] == 1
        assert wait_for(lambda: _positions(stays)[-1:] == [later["t"]], 10)
        assert api(first, walker, "POST", f"/walks/{walk['id']}/checkin", json={"ok": False}).json()[
            "status"] == "escalated"
        assert api(first, walker, "POST", f"/walks/{walk['id']}/finish").json() == {"status": "finished"}
        assert stays.arrived["walk.escalated"].wait(10) and stays.arrived["walk.ended"].wait(10)
        # The walker's own phone hears about the walk through its person's room (on the other process); positions
        # only if it watches.
        assert wait_for(lambda: walker_phone.received["walk.escalated"] and walker_phone.received["walk.ended"], 10)
        time.sleep(1)  # a batch or an event still in flight to the removed guardian would have arrived by now
        assert {e: len(gone.received[e]) for e in WATCHER_EVENTS} == before
        assert watch(gone.client, walk["id"])["error"]["status"] == 404
        assert walker_phone.received["walk.position"] == []
    finally:
        for listener in (gone, stays, walker_phone):
            listener.close()


def test_unwatch_stops_the_positions_of_that_socket_only(two_servers, db):
    first, second = two_servers
    walker = create_user(db.session, name="한그만")
    guardian = guardian_of(db, walker)
    walk = start_walk(first, walker, [guardian])
    leaving = Listener(second.url, "/mobile", token_for(guardian), WATCHER_EVENTS)
    watching = Listener(first.url, "/mobile", token_for(walker), WATCHER_EVENTS)  # the walker's other device
    try:
        assert watch(leaving.client, walk["id"])["ok"] is True and watch(watching.client, walk["id"])["ok"] is True
        assert leaving.client.call("unwatch", {"walk_id": walk["id"]}, namespace="/mobile", timeout=5) == {"ok": True}
        fix = {"lat": HOME_FROM["lat"], "lon": HOME_FROM["lon"], "accuracy_m": 8, "t": iso(now())}
        assert api(second, walker, "POST", f"/walks/{walk['id']}/fixes", json={"fixes": [fix]}).json()["accepted"] == 1
        assert wait_for(lambda: _positions(watching) == [fix["t"]], 10)
        time.sleep(0.7)
        assert leaving.received["walk.position"] == []
    finally:
        leaving.close()
        watching.close()
