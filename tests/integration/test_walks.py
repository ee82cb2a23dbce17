"""Walk-home monitoring on the real database: start, fixes, alerts, check-in, escalation, timers, reads, retention."""
import json
import threading
import uuid
from datetime import datetime, timedelta

import pytest
from flask import current_app
from sqlalchemy import func, select, text

from notifications.push import PushOutcome
from safety_api.api.geodata import route_settings
from safety_api.api.walks import walk_settings
from safety_api.clock import utcnow
from safety_api.models import (
    Delivery,
    GuardianLink,
    Incident,
    IncidentEvent,
    Job,
    LocationAccess,
    LocationFix,
    PushDevice,
    Walk,
    WalkAlert,
)
from safety_api.realtime import broadcast, events, rooms
from safety_api.realtime.positions import batcher
from safety_api.services import retention, walk_ingest, walk_monitor, walks
from safety_api.worker import Worker
from tests.factories import auth_header, create_user

HOME_FROM = {"lat": 37.4705, "lon": 126.9190}
HOME_TO = {"lat": 37.4650, "lon": 126.9260}
FAR_AWAY = {"lat": 37.5665, "lon": 126.9780}  # 시청, outside the loaded street network


def device(db, user, token=None):
    db.session.add(PushDevice(user_id=user.id, token=token or f"tok-{uuid.uuid4().hex}", platform="android"))
    db.session.commit()
    return user


def guardian_of(client, db, walker, *, accept=True, token=None):
    guardian = device(db, create_user(db.session, name="보호자"), token)
    link = client.post("/api/v1/guardians", json={"phone": guardian.phone}, headers=auth_header(walker)).json
    if accept:
        client.post(f"/api/v1/guardians/{link['id']}/accept", headers=auth_header(guardian))
    return guardian


def start(client, walker, guardians=(), **body):
    payload = {"from": HOME_FROM, "to": HOME_TO, "guardian_ids": [str(g.id) for g in guardians], **body}
    return client.post("/api/v1/walks", json=payload, headers=auth_header(walker))


def route_points(walk_json) -> list:
    """(lat, lon) of the planned route's vertices."""
    return [(lat, lon) for lon, lat in walk_json["route"]["geometry"]["coordinates"]]


def fix(lat, lon, t, accuracy_m=8.0) -> dict:
    return {"lat": lat, "lon": lon, "accuracy_m": accuracy_m, "t": t.isoformat()}


def off_route(lat, lon, metres=150.0):
    """A point about `metres` west of (lat, lon)."""
    return lat, lon - metres / 88_200.0


def post_fixes(client, walker, walk_id, fixes):
    return client.post(f"/api/v1/walks/{walk_id}/fixes", json={"fixes": fixes}, headers=auth_header(walker))


def make_due(db, kind):
    db.session.execute(text("UPDATE jobs SET run_at = now() - interval '1 second' "
                            "WHERE kind = :k AND status = 'pending'"), {"k": kind})
    db.session.commit()


def test_a_walk_starts_on_a_safe_route_and_the_chosen_guardians_are_told(client, db, emitted):
    walker = create_user(db.session, name="김안심")
    chosen = guardian_of(client, db, walker, token="chosen-phone")
    guardian_of(client, db, walker, token="other-guardian-phone")
    before = utcnow()
    answer = start(client, walker, [chosen])
    assert answer.status_code == 201, answer.json
    body = answer.json
    assert body["status"] == "active" and body["route"]["geometry"]["type"] == "LineString"
    props = body["route"]["properties"]
    assert props["profile"] == "safe" and props["distance_m"] > 500
    eta = (datetime.fromisoformat(body["expected_arrival"]) - before).total_seconds()
    assert props["duration_s"] < eta < props["duration_s"] * 1.2 + 180 + 5
    pushes = db.session.execute(select(Delivery.token, Delivery.reason)).all()
    assert pushes == [("chosen-phone", "walk.started")]
    started = [(room, payload) for _, room, event, payload in emitted if event == events.WALK_STARTED]
    assert [room for room, _ in started] == [rooms.user(chosen.id)]
    assert started[0][1]["walker"]["name"] == "김안심" and started[0][1]["route"]["type"] == "Feature"
    timer = db.session.scalar(select(Job).where(Job.kind == "walk.timers"))
    assert timer.payload == {"walk_id": body["id"], "seq": 1}
    # The route they were sent starts where the walker stands and ends at (usually) home: a read of location.
    reads = client.get("/api/v1/me/export", headers=auth_header(walker)).json["location_reads"]
    assert [(r["viewer_id"], r["subject_id"], r["purpose"]) for r in reads] == [
        (str(chosen.id), body["id"], "walk.started")]


@pytest.mark.parametrize("case, body, status", [
    ("pending guardian", "pending", 422),
    ("stranger as guardian", "stranger", 422),
    ("destination off the network", {"to": FAR_AWAY}, 422),
    ("already there", {"to": {"lat": 37.4705, "lon": 126.9191}}, 422),
    ("unknown profile", {"profile": "scenic"}, 422),
])
def test_a_walk_that_cannot_start_says_why(client, db, case, body, status):
    walker = create_user(db.session)
    guardians = []
    if body == "pending":
        guardians, body = [guardian_of(client, db, walker, accept=False)], {}
    elif body == "stranger":
        guardians, body = [create_user(db.session)], {}
    answer = start(client, walker, guardians, **body)
    assert answer.status_code == status, case
    assert answer.headers["Content-Type"] == "application/problem+json"


def test_one_walk_at_a_time_and_staff_do_not_start_walks(client, db):
    walker = create_user(db.session)
    assert start(client, walker).status_code == 201
    assert start(client, walker).status_code == 409
    assert start(client, create_user(db.session, role="operator")).status_code == 403


def test_fixes_are_validated_deduplicated_kept_in_time_order_and_live(client, db, redis_client, emitted):
    walker = create_user(db.session)
    walk = start(client, walker)
    points, now = route_points(walk.json), utcnow()
    first = [fix(*points[0], now - timedelta(seconds=20)), fix(*points[1], now - timedelta(seconds=10))]
    bad = [{"lat": float("nan"), "lon": 126.9}, {"lat": 91, "lon": 126.9}, fix(*points[1], now + timedelta(minutes=5)),
           {"lat": 37.47, "lon": 126.92, "accuracy_m": -1}, {"lat": "x", "lon": 126.9}]
    answer = post_fixes(client, walker, walk.json["id"], first + bad)
    assert answer.status_code == 200, answer.json
    assert answer.json["accepted"] == 2 and answer.json["rejected"] == 5
    late = [fix(*points[0], now - timedelta(seconds=15)), first[0]]  # one late, one resent
    again = post_fixes(client, walker, walk.json["id"], late).json
    assert (again["accepted"], again["duplicates"]) == (1, 1)
    got = client.get(f"/api/v1/walks/{walk.json['id']}", headers=auth_header(walker))
    assert got.status_code == 200, got.json
    trail = got.json["walk"]["trail"]
    assert [f["t"] for f in trail] == sorted(f["t"] for f in trail) and len(trail) == 3
    live = redis_client.get(f"live:walk:{walk.json['id']}")
    assert live is not None and datetime.fromisoformat(json.loads(live)["t"]) == now - timedelta(seconds=10)
    batcher.flush()
    positions = [p for _, room, event, p in emitted if event == events.WALK_POSITION]
    assert positions and positions[-1]["items"][-1]["t"] == first[1]["t"]  # the late fix never moves the pin
    to = [room for _, room, event, _ in emitted if event == events.WALK_POSITION]
    assert to[-1] == (rooms.walk_watcher(walk.json["id"], walker.id),)  # the walker's own devices, if they watch


def test_only_the_walker_sends_fixes(client, db):
    walker = create_user(db.session)
    walk = start(client, walker)
    intruder = create_user(db.session)
    answer = post_fixes(client, intruder, walk.json["id"], [fix(37.47, 126.92, utcnow())])
    assert answer.status_code == 404


def test_a_deviation_prompts_the_walker_and_watchers_then_a_checkin_answers_it(client, db, emitted):
    walker = device(db, create_user(db.session, name="박보행"), "walker-phone")
    walk = start(client, walker).json
    points, now = route_points(walk), utcnow()
    on_route = [fix(*points[0], now - timedelta(seconds=50 - 5 * i)) for i in range(3)]
    away = [fix(*off_route(*points[1]), now - timedelta(seconds=30 - 5 * i)) for i in range(7)]
    assert post_fixes(client, walker, walk["id"], on_route + away).json["accepted"] == 10
    alerts = db.session.scalars(select(WalkAlert)).all()
    assert [(a.kind, a.status) for a in alerts] == [("deviated", "open")]
    assert 120 - 2 < (alerts[0].checkin_by - alerts[0].raised_at).total_seconds() < 120 + 2
    assert db.session.execute(select(Delivery.token, Delivery.reason)).all() == [("walker-phone", "walk.deviated")]
    told = [(room, p) for _, room, event, p in emitted if event == events.WALK_ALERT]
    assert {room for room, _ in told} == {rooms.user(walker.id)}  # no guardian chosen: no watch room addressed
    assert told[0][1]["alert"] == "deviated" and told[0][1]["checkin_by"]
    answer = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": True}, headers=auth_header(walker))
    assert answer.json == {"status": "active", "answered": 1}
    db.session.expire_all()
    assert db.session.get(WalkAlert, alerts[0].id).status == "answered"
    assert "deviated" not in db.session.get(Walk, walk["id"]).monitor_state["raised"]
    make_due(db, "walk.checkin_expired")
    Worker(client.application).run_once()
    assert db.session.scalar(select(func.count()).select_from(Incident)) == 0


def test_late_fixes_fill_the_trail_but_never_raise_an_alert(client, db):
    walker = create_user(db.session)
    walk = start(client, walker).json
    points, now = route_points(walk), utcnow()
    assert post_fixes(client, walker, walk["id"], [fix(*points[0], now)]).json["accepted"] == 1
    old_and_away = [fix(*off_route(*points[1]), now - timedelta(seconds=200 - 5 * i)) for i in range(10)]
    assert post_fixes(client, walker, walk["id"], old_and_away).json["accepted"] == 10
    assert db.session.scalar(select(func.count()).select_from(WalkAlert)) == 0
    assert db.session.scalar(select(func.count()).select_from(LocationFix)) == 11


def test_an_unanswered_prompt_escalates_once_to_an_sos_that_operators_can_follow(app, client, db, emitted):
    walker = create_user(db.session, name="이귀가")
    guardian = guardian_of(client, db, walker, token="guardian-phone")
    operator = create_user(db.session, role="operator")
    walk = start(client, walker, [guardian]).json
    points, now = route_points(walk), utcnow()
    away = [fix(*off_route(*points[1]), now - timedelta(seconds=30 - 5 * i)) for i in range(7)]
    post_fixes(client, walker, walk["id"], away)
    make_due(db, "walk.checkin_expired")
    workers = [Worker(app, name=f"w{i}") for i in range(3)]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    db.session.expire_all()
    incident = db.session.scalar(select(Incident))
    assert db.session.scalar(select(func.count()).select_from(Incident)) == 1
    assert (incident.trigger, incident.walk_id) == ("walk_escalation", uuid.UUID(walk["id"]))
    assert incident.caller_id == walker.id
    assert db.session.get(Walk, walk["id"]).status == "escalated"
    assert db.session.scalar(select(WalkAlert.status)) == "escalated"
    kinds = db.session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident.id)
                               .order_by(IncidentEvent.id)).all()
    assert kinds == ["created", "walk_escalated"]
    assert db.session.scalar(select(func.count()).select_from(LocationFix).where(
        LocationFix.incident_id == incident.id)) == 7  # the trail is now the incident's evidence
    assert ("guardian-phone", "guardian.created") in db.session.execute(select(Delivery.token, Delivery.reason)).all()
    control = [p for ns, room, event, p in emitted if event == events.WALK_ESCALATED and ns == events.CONTROL]
    assert len(control) == 1 and len(control[0]["trail"]) == 7 and control[0]["route"]["geometry"]["coordinates"]
    seen = client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(operator))
    assert seen.status_code == 200 and seen.json["walk"]["incident_id"] == str(incident.id)
    assert len(seen.json["walk"]["trail"]) == 7
    opened = client.get(f"/api/v1/incidents/{incident.id}", headers=auth_header(operator)).json["incident"]
    assert opened["walk_id"] == walk["id"] and len(opened["trail"]) == 7
    assert client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": True},
                       headers=auth_header(walker)).status_code == 409
    # The walker goes on (driven away): the SOS follows, so an operator opening it later sees where they are
    # now, not where the walk escalated.
    onward = fix(37.4600, 126.9350, utcnow())
    assert post_fixes(client, walker, walk["id"], [onward]).json["accepted"] == 1
    opened = client.get(f"/api/v1/incidents/{incident.id}", headers=auth_header(operator)).json["incident"]
    assert (opened["last_fix"]["lat"], opened["last_fix"]["lon"]) == (37.4600, 126.9350)
    assert len(opened["trail"]) == 8


def test_a_second_open_prompt_expiring_after_the_escalation_tells_no_one_again(app, client, db, emitted):
    """Two prompts were open when the first one's window closed: the walk escalated once and settled both. The
    second one's timer then finds nothing to do: no second walk.escalated; a rerun of the first one's (a crash
    after the commit) still tells."""
    walker = create_user(db.session)
    walk = start(client, walker).json
    points, now = route_points(walk), utcnow()
    away = [fix(*off_route(*points[1]), now - timedelta(seconds=30 - 5 * i)) for i in range(7)]
    post_fixes(client, walker, walk["id"], away)
    first = db.session.scalar(select(WalkAlert))
    second = WalkAlert(walk_id=first.walk_id, kind="stalled", status="open", t=now, raised_at=now,
                       checkin_by=now + timedelta(seconds=1))
    db.session.add(second)
    db.session.commit()
    first_id, second_id = first.id, second.id

    def told():
        return len([p for ns, _room, event, p in emitted if event == events.WALK_ESCALATED and ns == events.CONTROL])

    assert walks.expire_checkin(db.session, walk_id=walk["id"], alert_id=first_id, now=utcnow()) is True
    assert told() == 1
    assert walks.expire_checkin(db.session, walk_id=walk["id"], alert_id=second_id, now=utcnow()) is False
    assert told() == 1
    assert walks.expire_checkin(db.session, walk_id=walk["id"], alert_id=first_id, now=utcnow()) is True
    assert told() == 2
    assert db.session.scalar(select(func.count()).select_from(Incident)) == 1


def test_a_walker_who_answers_not_fine_raises_the_sos_at_once(client, db):
    walker = create_user(db.session)
    walk = start(client, walker).json
    answer = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False}, headers=auth_header(walker))
    assert answer.status_code == 200 and answer.json["status"] == "escalated"
    incident = db.session.get(Incident, answer.json["incident_id"])
    assert incident.trigger == "walk_escalation" and str(incident.walk_id) == walk["id"]


def test_arrival_finishes_the_walk_tells_guardians_and_closes_the_trail(client, db, emitted):
    walker = create_user(db.session, name="최도착")
    guardian = guardian_of(client, db, walker, token="guardian-phone")
    walk = start(client, walker, [guardian]).json
    points, now = route_points(walk), utcnow()
    end = (HOME_TO["lat"], HOME_TO["lon"])
    home = [fix(*end, now - timedelta(seconds=10 - 5 * i)) for i in range(3)]
    assert post_fixes(client, walker, walk["id"], home).json["accepted"] == 3
    db.session.expire_all()
    assert db.session.get(Walk, walk["id"]).status == "arrived"
    assert ("guardian-phone", "walk.arrived") in db.session.execute(select(Delivery.token, Delivery.reason)).all()
    ended = [(room, p) for _, room, event, p in emitted if event == events.WALK_ENDED]
    assert {room for room, _ in ended} == {rooms.user(walker.id), rooms.walk_watcher(walk["id"], guardian.id)}
    heard = [event for _, _, event, _ in emitted if event in (events.WALK_POSITION, events.WALK_ENDED)]
    assert heard.index(events.WALK_POSITION) < heard.index(events.WALK_ENDED)  # the arriving fix, then the news
    late_and_after = [fix(*points[0], now - timedelta(seconds=60)), fix(*end, now + timedelta(seconds=5))]
    answer = post_fixes(client, walker, walk["id"], late_and_after).json
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    assert client.post(f"/api/v1/walks/{walk['id']}/finish", headers=auth_header(walker)).json == {"status": "arrived"}


def test_the_walker_finishes_and_watchers_are_told(client, db, emitted):
    walker = create_user(db.session)
    walk = start(client, walker).json
    answer = client.post(f"/api/v1/walks/{walk['id']}/finish", headers=auth_header(walker))
    assert answer.json == {"status": "finished"}
    assert [room for _, room, event, _ in emitted if event == events.WALK_ENDED] == [rooms.user(walker.id)]
    assert start(client, walker).status_code == 201  # a new walk may start


def started_in_the_past(db, walker, minutes, **settings):
    """A walk whose clock started `minutes` ago (services take `now`, so no clock is faked)."""
    cfg = {**walk_settings(current_app.config), **settings}
    walk, _ = walks.start(db.session, walker=walker, origin=(HOME_FROM["lat"], HOME_FROM["lon"]),
                          destination=(HOME_TO["lat"], HOME_TO["lon"]), profile="safe", guardian_ids=[],
                          route_settings=route_settings(current_app.config), settings=cfg,
                          now=utcnow() - timedelta(minutes=minutes), night=True)
    return walk.id


def test_signal_lost_fires_once_from_the_timer_chain_and_stale_links_do_nothing(app, db, emitted):
    walker = create_user(db.session)
    walk_id = started_in_the_past(db, walker, minutes=3)
    first_link = db.session.scalar(select(Job).where(Job.kind == "walk.timers"))
    assert first_link.run_at < utcnow()  # due: nothing heard for three minutes
    workers = [Worker(app, name=f"w{i}") for i in range(3)]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    db.session.expire_all()
    assert db.session.scalars(select(WalkAlert.kind)).all() == ["signal_lost"]
    walk = db.session.get(Walk, walk_id)
    assert walk.timer_seq == 2 and walk.timer_due > utcnow()
    assert walk_monitor.run_timers(db.session, walk_id=walk_id, seq=1, now=utcnow()) is False  # a stale link
    assert walk_monitor.run_timers(db.session, walk_id=walk_id, seq=2, now=utcnow()) is True
    assert db.session.scalar(select(func.count()).select_from(WalkAlert)) == 1  # raised once
    assert [e for _, _, e, _ in emitted].count(events.WALK_ALERT) == 1  # to the walker; no guardian chosen


def test_overdue_fires_after_the_expected_arrival_and_its_grace(app, db):
    walker = create_user(db.session)
    walk_id = started_in_the_past(db, walker, minutes=1)
    walk = db.session.get(Walk, walk_id)
    overdue_at = walk.expected_arrival + timedelta(seconds=walk.settings["monitor"]["overdue_grace_s"])
    seq = walk.timer_seq
    db.session.commit()
    assert walk_monitor.run_timers(db.session, walk_id=walk_id, seq=seq, now=overdue_at - timedelta(seconds=5))
    assert "overdue" not in db.session.scalars(select(WalkAlert.kind)).all()
    seq = db.session.get(Walk, walk_id).timer_seq
    db.session.commit()
    assert walk_monitor.run_timers(db.session, walk_id=walk_id, seq=seq, now=overdue_at + timedelta(seconds=1))
    assert "overdue" in db.session.scalars(select(WalkAlert.kind)).all()


def test_a_fix_after_silence_rearms_the_chain_sooner(client, db):
    walker = create_user(db.session)
    walk_id = started_in_the_past(db, walker, minutes=0)
    walk = db.session.get(Walk, walk_id)
    walk.timer_due = utcnow() + timedelta(hours=1)  # as if parked after a signal_lost
    db.session.commit()
    post_fixes(client, walker, walk_id, [fix(HOME_FROM["lat"], HOME_FROM["lon"], utcnow())])
    db.session.expire_all()
    walk = db.session.get(Walk, walk_id)
    assert walk.timer_seq == 2 and walk.timer_due < utcnow() + timedelta(seconds=125)


@pytest.mark.parametrize("who, status", [("walker", 200), ("chosen", 200), ("unchosen guardian", 404),
                                         ("stranger", 404), ("operator before escalation", 404)])
def test_who_may_read_a_walk_and_third_party_reads_are_logged(client, db, who, status):
    walker = create_user(db.session)
    chosen = guardian_of(client, db, walker)
    unchosen = guardian_of(client, db, walker)
    walk = start(client, walker, [chosen]).json
    post_fixes(client, walker, walk["id"], [fix(HOME_FROM["lat"], HOME_FROM["lon"], utcnow())])
    reader = {"walker": walker, "chosen": chosen, "unchosen guardian": unchosen,
              "stranger": create_user(db.session),
              "operator before escalation": create_user(db.session, role="operator")}[who]
    answer = client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(reader))
    assert answer.status_code == status
    logged = db.session.execute(select(LocationAccess.viewer_id, LocationAccess.subject_user_id,
                                       LocationAccess.purpose).where(LocationAccess.purpose != "walk.started")).all()
    expected = [(chosen.id, walker.id, "walk.read")] if who == "chosen" else []
    assert logged == expected
    if status == 200:
        assert answer.json["walk"]["last_fix"]["lat"] == HOME_FROM["lat"]


def test_a_guardian_whose_link_ended_can_no_longer_read_the_walk(client, db):
    walker = create_user(db.session)
    chosen = guardian_of(client, db, walker)
    walk = start(client, walker, [chosen]).json
    link = client.get("/api/v1/guardians", headers=auth_header(walker)).json["guarded_by"][0]
    assert client.delete(f"/api/v1/guardians/{link['id']}", headers=auth_header(walker)).status_code == 204
    assert client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(chosen)).status_code == 404


def test_watch_is_for_chosen_guardians_and_is_logged(client, db):
    walker = create_user(db.session)
    chosen = guardian_of(client, db, walker)
    walk = start(client, walker, [chosen]).json
    answer = walks.watch(db.session, viewer_id=chosen.id, walk_id=walk["id"])
    assert answer["ok"] is True and answer["walk"]["route"]["type"] == "Feature"
    assert db.session.scalars(select(LocationAccess.purpose).order_by(LocationAccess.id)).all() == [
        "walk.started", "walk.watch"]
    with pytest.raises(walks.NotFound):
        walks.watch(db.session, viewer_id=create_user(db.session).id, walk_id=walk["id"])


def test_parallel_fixes_for_one_walk_are_serialised_by_the_walk_lock(app, db):
    walker = create_user(db.session)
    walk_id = started_in_the_past(db, walker, minutes=0)
    now = utcnow()
    batches = [[fix(HOME_FROM["lat"] + i * 1e-5, HOME_FROM["lon"], now - timedelta(seconds=40 - i))]
               for i in range(16)]
    results = []

    def send(batch):
        with app.app_context():
            from safety_api.extensions import db as _db
            from safety_api.extensions import redis_store
            results.append(walk_ingest.record_fixes(_db.session, redis_store.client, user=_db.session.get(
                type(walker), walker.id), walk_id=walk_id, raw_fixes=batch, now=now))
            _db.session.remove()

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(r["accepted"] for r in results) == 16
    db.session.expire_all()
    walk = db.session.get(Walk, walk_id)
    assert walk.last_fix["t"] == batches[-1][0]["t"]
    assert walk.monitor_state["last_t"] == datetime.fromisoformat(batches[-1][0]["t"]).timestamp()


def test_retention_purges_old_fixes_that_are_no_incidents_evidence(app, db):
    walker = create_user(db.session)
    old = utcnow() - timedelta(days=40)
    keep_incident = uuid.uuid4()
    rows = [LocationFix(subject_kind="walk", subject_id=uuid.uuid4(), user_id=walker.id, lat=37.47, lon=126.92,
                        t=old + timedelta(seconds=i), incident_id=keep_incident if i < 3 else None) for i in range(10)]
    rows.append(LocationFix(subject_kind="escort", subject_id=uuid.uuid4(), user_id=walker.id, lat=37.47,
                            lon=126.92, t=utcnow()))
    db.session.add_all(rows)
    db.session.commit()
    assert retention.purge_fixes(db.session, now=utcnow(), retention_days=30, batch=4) == 7
    left = db.session.execute(select(LocationFix.subject_kind, LocationFix.incident_id)).all()
    assert sorted(str(i) for _, i in left) == sorted([str(keep_incident)] * 3 + ["None"])
    retention.schedule_purge(db.session, now=utcnow(), every_s=3600)
    retention.schedule_purge(db.session, now=utcnow(), every_s=3600)
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Job).where(Job.kind == "fixes.purge")) == 1
    make_due(db, "fixes.purge")
    Worker(app).run_once()
    assert db.session.scalar(select(func.count()).select_from(Job).where(
        Job.kind == "fixes.purge", Job.status == "pending")) == 1  # the next slot is queued


def test_a_guardian_whose_link_ended_is_no_longer_addressed_and_its_watch_rooms_close(client, db, emitted,
                                                                                       monkeypatch):
    walker = create_user(db.session, name="정해지")
    removed, kept = guardian_of(client, db, walker), guardian_of(client, db, walker)
    walk = start(client, walker, [removed, kept]).json
    closed = []
    monkeypatch.setattr(broadcast, "close_room", lambda namespace, room: closed.append((namespace, room)))
    link = db.session.scalar(select(GuardianLink.id).where(GuardianLink.guardian_id == removed.id))
    assert client.delete(f"/api/v1/guardians/{link}", headers=auth_header(walker)).status_code == 204
    assert closed == [(events.MOBILE, rooms.walk_watcher(walk["id"], removed.id))]

    points, now = route_points(walk), utcnow()
    away = [fix(*off_route(*points[1]), now - timedelta(seconds=30 - 5 * i)) for i in range(7)]
    post_fixes(client, walker, walk["id"], away)
    batcher.flush()
    client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False}, headers=auth_header(walker))
    client.post(f"/api/v1/walks/{walk['id']}/finish", headers=auth_header(walker))
    kept_room, removed_room = rooms.walk_watcher(walk["id"], kept.id), rooms.walk_watcher(walk["id"], removed.id)
    mobile = [(event, room if isinstance(room, tuple) else (room,)) for ns, room, event, _ in emitted
              if ns == events.MOBILE]
    got = {event for event, to in mobile if kept_room in to}
    assert got == {events.WALK_POSITION, events.WALK_ALERT, events.WALK_ESCALATED, events.WALK_ENDED}
    assert [event for event, to in mobile if removed_room in to] == []
    # Its pushes planned before the link ended (the start's notice) are not sent either; the others go.
    from safety_api.services import deliveries

    class Sender:
        def __init__(self):
            self.to = []

        def send(self, messages):
            self.to += [m.token for m in messages]
            return [PushOutcome(m.token, "delivered") for m in messages]

    sender = Sender()
    walk_pushes = db.session.scalars(select(Delivery).where(Delivery.subject == f"walk:{walk['id']}")).all()
    for planned in walk_pushes:
        deliveries.deliver(db.session, delivery_id=planned.id, sender=sender)
        db.session.commit()
    removed_tokens = set(db.session.scalars(select(PushDevice.token).where(PushDevice.user_id == removed.id)))
    assert sender.to and not removed_tokens & set(sender.to)
    assert {d.status for d in walk_pushes if d.recipient_id == removed.id} == {"withdrawn"}


def test_late_fixes_of_a_walk_finished_after_its_sos_are_kept_as_evidence(app, client, db):
    walker = create_user(db.session)
    walk = start(client, walker).json
    points, now = route_points(walk), utcnow()
    assert post_fixes(client, walker, walk["id"], [fix(*points[0], now - timedelta(seconds=20))]).json[
        "accepted"] == 1
    incident_id = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False},
                              headers=auth_header(walker)).json["incident_id"]
    assert client.post(f"/api/v1/walks/{walk['id']}/finish", headers=auth_header(walker)).json == {
        "status": "finished"}
    # Uploaded after the finish, taken before it: one from before the SOS, one between the SOS and the finish.
    late = [fix(*points[1], now - timedelta(seconds=10)), fix(*points[2], utcnow() - timedelta(seconds=1))]
    assert post_fixes(client, walker, walk["id"], late).json["accepted"] == 2
    db.session.expire_all()
    filed = db.session.execute(select(LocationFix.t, LocationFix.incident_id).order_by(LocationFix.t)).all()
    assert [str(i) for _, i in filed] == [incident_id] * 3
    assert retention.purge_fixes(db.session, now=utcnow() + timedelta(days=60), retention_days=30) == 0


def test_fixes_after_the_end_are_rejected_naming_their_index(client, db):
    walker = create_user(db.session)
    walk = start(client, walker).json
    points, now = route_points(walk), utcnow()
    assert client.post(f"/api/v1/walks/{walk['id']}/finish", headers=auth_header(walker)).json == {
        "status": "finished"}
    batch = [fix(*points[0], utcnow() + timedelta(seconds=5)), {"lat": 91, "lon": 126.9},
             fix(*points[1], now - timedelta(seconds=30)), {"lat": 37.47, "lon": 126.92, "t": utcnow().timestamp() + 9}]
    answer = post_fixes(client, walker, walk["id"], batch).json
    assert (answer["accepted"], answer["rejected"]) == (1, 3)
    assert answer["errors"] == [{"index": 0, "reason": "after the walk ended"},
                                {"index": 1, "reason": "lat missing or out of range"},
                                {"index": 3, "reason": "after the walk ended"}]


def test_a_phone_clock_90_s_slow_neither_loses_the_signal_nor_misses_the_arrival(app, db, redis_client):
    walker = create_user(db.session)
    start_at = utcnow() - timedelta(seconds=150)
    walk_id = started_in_the_past(db, walker, minutes=2.5)
    route = [(lat, lon) for lon, lat in walks.route_feature(db.session.get(Walk, walk_id))["geometry"]["coordinates"]]
    db.session.commit()

    def upload(after_s, point):  # received `after_s` into the walk, dated by a clock 90 s slow
        received = start_at + timedelta(seconds=after_s)
        raw = [fix(*point, received - timedelta(seconds=90.5))]
        answer = walk_ingest.record_fixes(db.session, redis_client, user=walker, walk_id=walk_id, raw_fixes=raw,
                                          now=received)
        assert answer["accepted"] == 1, answer

    for k in range(9):  # 80 s of uploads near the start: every one of them is older than stale_s
        upload(10 + 10 * k, route[0])
    walk = db.session.get(Walk, walk_id)
    db.session.refresh(walk)
    seq = walk.timer_seq
    db.session.commit()
    assert walk_monitor.run_timers(db.session, walk_id=walk_id, seq=seq, now=start_at + timedelta(seconds=125))
    assert db.session.scalars(select(WalkAlert.kind)).all() == []  # heard 35 s ago: no signal_lost
    upload(130, (HOME_TO["lat"], HOME_TO["lon"]))
    upload(135, (HOME_TO["lat"], HOME_TO["lon"]))
    db.session.expire_all()
    walk = db.session.get(Walk, walk_id)
    assert walk.status == "arrived"
    assert db.session.scalars(select(WalkAlert.kind)).all() == ["arrived"]
    arrived_t = db.session.scalar(select(WalkAlert.t))
    assert abs((arrived_t - (start_at + timedelta(seconds=135))).total_seconds()) < 1  # on the server's clock
    trail = db.session.scalars(select(LocationFix.t).order_by(LocationFix.t)).all()
    assert trail[-1] == start_at + timedelta(seconds=135 - 90.5)  # the trail keeps the phone's own times


def test_a_phone_clock_10_minutes_slow_is_heard_from_the_start_and_its_fixes_taken_once_that_is_known(
        app, db, redis_client):
    """Its first fixes look older than the walk and are refused, but the phone is alive: no signal_lost; once
    its lag is confirmed, its fixes are the walk's."""
    walker = create_user(db.session)
    start_at = utcnow() - timedelta(seconds=150)
    walk_id = started_in_the_past(db, walker, minutes=2.5)
    route = [(lat, lon) for lon, lat in walks.route_feature(db.session.get(Walk, walk_id))["geometry"]["coordinates"]]
    db.session.commit()

    def upload(after_s, point=route[0]):  # received `after_s` into the walk, dated by a clock 10 minutes slow
        received = start_at + timedelta(seconds=after_s)
        raw = [fix(*point, received - timedelta(minutes=10))]
        return walk_ingest.record_fixes(db.session, redis_client, user=walker, walk_id=walk_id, raw_fixes=raw,
                                        now=received)

    answers = [upload(10 + 10 * k) for k in range(9)]
    assert answers[0]["errors"] == [{"index": 0, "reason": "before the walk started"}]
    assert answers[-1]["accepted"] == 1  # its lag known after clock_confirm_s of uploads
    walk = db.session.get(Walk, walk_id)
    db.session.refresh(walk)
    seq = walk.timer_seq
    db.session.commit()
    assert walk_monitor.run_timers(db.session, walk_id=walk_id, seq=seq, now=start_at + timedelta(seconds=125))
    assert db.session.scalars(select(WalkAlert.kind)).all() == []  # heard all along: no signal_lost
    assert upload(130, route[3])["accepted"] == 1
    answer = walks.answer_checkin(db.session, user=walker, walk_id=walk_id, ok=False,
                                  now=start_at + timedelta(seconds=135))
    location = db.session.scalar(text("SELECT ST_Y(location::geometry) || ',' || ST_X(location::geometry) "
                                      "FROM incidents WHERE id = :id"), {"id": answer["incident_id"]})
    assert location == f"{route[3][0]},{route[3][1]}"  # where the phone is, not the walk's start


def test_once_a_walks_sos_is_closed_the_walker_is_no_longer_the_operators_to_follow(client, db, emitted):
    """The caller said they are safe (or an operator resolved it): fixes taken after that are an ordinary
    walk's, not shown to the control room and not kept as evidence beyond retention. Earlier ones stay."""
    walker = create_user(db.session)
    operator = create_user(db.session, role="operator")
    walk = start(client, walker).json
    points, now = route_points(walk), utcnow()
    post_fixes(client, walker, walk["id"], [fix(*points[0], now - timedelta(seconds=20))])
    incident_id = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False},
                              headers=auth_header(walker)).json["incident_id"]
    during = fix(*points[1], utcnow())
    post_fixes(client, walker, walk["id"], [during])
    batcher.flush()
    assert [name for ns, _, name, _ in emitted if ns == events.CONTROL].count(events.POSITIONS) == 1
    assert client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"outcome": "false_alarm"},
                       headers=auth_header(operator)).status_code == 200
    emitted.clear()
    after = fix(*points[2], utcnow() + timedelta(seconds=1))
    assert post_fixes(client, walker, walk["id"], [after]).json["accepted"] == 1
    batcher.flush()
    assert [name for ns, _, name, _ in emitted if ns == events.CONTROL] == []
    assert [name for ns, _, name, _ in emitted if ns == events.MOBILE] == [events.WALK_POSITION]
    filed = dict(db.session.execute(select(LocationFix.t, LocationFix.incident_id)
                                    .where(LocationFix.subject_id == uuid.UUID(walk["id"]))).all())
    assert sorted(filed.values(), key=str) == sorted([uuid.UUID(incident_id)] * 2 + [None], key=str)


def test_a_fix_that_cannot_be_projected_is_stored_and_proves_the_phone_alive_without_failing_its_batch(client, db):
    """(-7.5, -144.5) is a valid coordinate that EPSG:5179 sends to infinity: its NaN offset used to reach the
    monitor state, PostgreSQL refused the JSON and the whole batch (and its write group) failed."""
    walker = create_user(db.session)
    walk = start(client, walker).json
    points, now = route_points(walk), utcnow()
    batch = [fix(*points[0], now - timedelta(seconds=10)), fix(-7.5, -144.5, now - timedelta(seconds=5)),
             fix(-7.0, 38.0, now)]
    answer = post_fixes(client, walker, walk["id"], batch)
    assert answer.status_code == 200, answer.json
    assert (answer.json["accepted"], answer.json["rejected"]) == (3, 0)
    db.session.expire_all()
    state = db.session.get(Walk, walk["id"]).monitor_state
    assert state["last_t"] == now.timestamp() and state["last_lat"] == points[0][0]
    assert db.session.scalar(select(func.count()).select_from(WalkAlert)) == 0


def test_a_fix_from_before_the_walk_started_is_refused_and_the_sos_is_raised_where_the_walk_began(client, db):
    """A fix dated hours before the start says where the phone was then: it must not become the walk's live
    position, its trail, or the place an SOS sends help to. A phone clock a minute or two slow is still fine."""
    walker = create_user(db.session)
    walk = start(client, walker).json
    started = datetime.fromisoformat(walk["started_at"])
    batch = [fix(37.48, 126.95, utcnow() - timedelta(hours=5)),
             fix(HOME_FROM["lat"], HOME_FROM["lon"], started - timedelta(minutes=2))]
    answer = post_fixes(client, walker, walk["id"], batch).json
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    assert answer["errors"] == [{"index": 0, "reason": "before the walk started"}]
    seen = client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(walker)).json["walk"]
    assert [(f["lat"], f["lon"]) for f in seen["trail"]] == [(HOME_FROM["lat"], HOME_FROM["lon"])]
    # A last fix from before the start (stored before such fixes were refused) is not where help is sent.
    db.session.execute(text("UPDATE walks SET last_fix = :fix WHERE id = :id"), {"id": walk["id"], "fix": json.dumps(
        {"lat": 37.48, "lon": 126.95, "accuracy_m": 8.0, "t": (started - timedelta(hours=5)).isoformat()})})
    db.session.commit()
    incident_id = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False},
                              headers=auth_header(walker)).json["incident_id"]
    location = db.session.scalar(text("SELECT ST_AsText(location) FROM incidents WHERE id = :id"),
                                 {"id": incident_id})
    assert location == f"POINT({HOME_FROM['lon']} {HOME_FROM['lat']})"


def test_a_signal_lost_prompt_is_settled_when_the_phone_is_heard_again_and_never_becomes_an_sos(app, client, db,
                                                                                                 emitted):
    walker = create_user(db.session)
    guardian = guardian_of(client, db, walker)
    walk_id = started_in_the_past(db, walker, minutes=3)
    db.session.execute(text("INSERT INTO walk_guardians (walk_id, guardian_id) VALUES (:w, :g)"),
                       {"w": walk_id, "g": guardian.id})
    db.session.commit()
    make_due(db, "walk.timers")
    Worker(app).run_once()
    prompt = db.session.scalar(select(WalkAlert))
    assert (prompt.kind, prompt.status) == ("signal_lost", "open")
    emitted.clear()
    assert post_fixes(client, walker, walk_id, [fix(HOME_FROM["lat"], HOME_FROM["lon"], utcnow())]).json[
        "accepted"] == 1
    db.session.expire_all()
    assert db.session.get(WalkAlert, prompt.id).status == "closed"
    told = [(room, p) for _, room, event, p in emitted if event == events.WALK_ALERT]
    assert {(p["alert"], tuple(p["settled"])) for _, p in told} == {("signal_restored", (prompt.id,))}
    assert {room for room, _ in told} == {rooms.user(walker.id), rooms.walk_watcher(walk_id, guardian.id)}
    make_due(db, "walk.checkin_expired")
    Worker(app).run_once()
    assert db.session.scalar(select(func.count()).select_from(Incident)) == 0
    assert db.session.get(Walk, walk_id).status == "active"


def test_a_second_signal_lost_prompt_does_not_open_while_one_is_pending(db):
    """(A prompt left open with its flag already cleared, as the phone's return left them before such prompts
    were settled.)"""
    walker = create_user(db.session)
    walk_id = started_in_the_past(db, walker, minutes=3)
    walk = db.session.get(Walk, walk_id)
    seq = walk.timer_seq
    db.session.commit()
    assert walk_monitor.run_timers(db.session, walk_id=walk_id, seq=seq, now=utcnow())
    walk = db.session.get(Walk, walk_id)
    walk.monitor_state = {**walk.monitor_state, "raised": []}
    seq = walk.timer_seq
    db.session.commit()
    assert walk_monitor.run_timers(db.session, walk_id=walk_id, seq=seq, now=utcnow())
    assert db.session.execute(select(WalkAlert.kind, WalkAlert.status)).all() == [("signal_lost", "open")]


def test_operators_see_a_walk_only_as_far_as_its_sos_was_theirs(client, db):
    """Once the SOS is closed the walker is the operators' no longer: what the walk brings after that is not
    shown to them, until a new escalation of the walk makes it theirs again."""
    walker, operator = create_user(db.session), create_user(db.session, role="operator")
    admin = create_user(db.session, role="admin", district=None)
    walk = start(client, walker).json
    points, now = route_points(walk), utcnow()
    post_fixes(client, walker, walk["id"], [fix(*points[0], now - timedelta(seconds=20))])
    incident_id = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False},
                              headers=auth_header(walker)).json["incident_id"]
    post_fixes(client, walker, walk["id"], [fix(*points[1], utcnow())])
    assert client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"outcome": "false_alarm"},
                       headers=auth_header(operator)).status_code == 200
    after = fix(*points[2], utcnow() + timedelta(seconds=1))
    assert post_fixes(client, walker, walk["id"], [after]).json["accepted"] == 1

    def seen_by(user):
        answer = client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(user))
        assert answer.status_code == 200, answer.json
        body = answer.json["walk"]
        return ([(f["lat"], f["lon"]) for f in body["trail"]], (body["last_fix"]["lat"], body["last_fix"]["lon"]),
                [a["kind"] for a in body["alerts"]])

    seq = db.session.get(Walk, walk["id"]).timer_seq
    db.session.commit()
    assert walk_monitor.run_timers(db.session, walk_id=walk["id"], seq=seq, now=utcnow() + timedelta(minutes=5))
    for staff in (operator, admin):
        assert seen_by(staff) == ([points[0], points[1]], points[1], [])
    assert seen_by(walker) == ([points[0], points[1], points[2]], points[2], ["signal_lost"])
    # A new escalation: the walk since the close is the new SOS's evidence, and theirs again.
    client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False}, headers=auth_header(walker))
    for staff in (operator, admin):
        assert seen_by(staff) == ([points[0], points[1], points[2]], points[2], ["signal_lost"])


def test_operators_do_not_learn_how_a_walk_went_on_after_its_sos_closed(client, db):
    """Whether and when the walker got home, or a later SOS of the walk (maybe another district's), is not
    theirs: the walk reads as it stood at the close."""
    walker, operator = create_user(db.session), create_user(db.session, role="operator")
    walk = start(client, walker).json
    incident_id = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False},
                              headers=auth_header(walker)).json["incident_id"]
    escalated_at = client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(operator)).json["walk"][
        "escalated_at"]
    assert client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"outcome": "false_alarm"},
                       headers=auth_header(operator)).status_code == 200
    assert client.post(f"/api/v1/walks/{walk['id']}/finish", headers=auth_header(walker)).status_code == 200
    as_staff = client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(operator)).json["walk"]
    assert (as_staff["status"], as_staff["ended_at"], as_staff["incident_id"], as_staff["escalated_at"]) == (
        "escalated", None, incident_id, escalated_at)
    assert client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(walker)).json["walk"]["status"] == "finished"


def test_retention_deletes_walks_that_ended_long_ago_without_an_sos_and_keeps_those_with_one(app, client, db):
    """A walk's row holds positions too (its start and destination, usually home; its last fix; the monitors'
    last position; its alerts' places): once the retention period is over it goes with its fixes."""
    walker = create_user(db.session)
    ids = {}
    for name in ("old", "old with sos", "recent"):
        ids[name] = start(client, walker).json["id"]
        post_fixes(client, walker, ids[name], [fix(HOME_FROM["lat"], HOME_FROM["lon"], utcnow())])
        if name == "old with sos":
            client.post(f"/api/v1/walks/{ids[name]}/checkin", json={"ok": False}, headers=auth_header(walker))
        client.post(f"/api/v1/walks/{ids[name]}/finish", headers=auth_header(walker))
    ids["active"] = start(client, walker).json["id"]
    db.session.add(WalkAlert(walk_id=ids["old"], kind="deviated", status="answered", t=utcnow(), raised_at=utcnow(),
                             detail={"lat": 37.47, "lon": 126.92}))
    db.session.execute(text("UPDATE walks SET ended_at = now() - interval '40 days' WHERE id IN (:a, :b)"),
                       {"a": ids["old"], "b": ids["old with sos"]})
    db.session.execute(text("UPDATE walks SET started_at = now() - interval '40 days' WHERE id = :a"),
                       {"a": ids["active"]})
    db.session.commit()
    retention.schedule_purge(db.session, now=utcnow(), every_s=3600)
    db.session.commit()
    make_due(db, "fixes.purge")
    Worker(app).run_once()
    db.session.expire_all()
    left = set(map(str, db.session.scalars(select(Walk.id))))
    assert left == {ids["old with sos"], ids["recent"], ids["active"]}
    assert db.session.scalar(select(func.count()).select_from(WalkAlert)) == 0
    kept = db.session.get(Walk, ids["old with sos"])
    assert kept.last_fix["lat"] == HOME_FROM["lat"]  # an incident's walk stays as it was
    assert client.get(f"/api/v1/walks/{ids['old']}", headers=auth_header(walker)).status_code == 404
