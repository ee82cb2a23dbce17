"""A walk that becomes an SOS: the incident, its audit event and the walk's trail as evidence commit together;
once the SOS is over for the walker, the walk is watched again (whichever PIN closed it)."""
import json
import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from safety_api.clock import utcnow
from safety_api.models import Incident, IncidentEvent, Job, LocationFix, Walk
from safety_api.realtime import events, rooms
from safety_api.services import accounts, walks
from tests.factories import auth_header, create_user
from tests.integration.test_walks import HOME_FROM, HOME_TO, fix, guardian_of, post_fixes, route_points, start


def test_a_crash_after_the_incident_commits_leaves_its_event_and_its_evidence_in_place(client, db, monkeypatch):
    walker = create_user(db.session)
    walk = start(client, walker).json
    now = utcnow()
    trail = [fix(HOME_FROM["lat"], HOME_FROM["lon"], now - timedelta(seconds=s)) for s in (20, 10)]
    assert post_fixes(client, walker, walk["id"], trail).json["accepted"] == 2

    def crash(*_args, **_kwargs):
        raise RuntimeError("the api process died here")
    monkeypatch.setattr(walks, "_escalated_notices", crash)
    with pytest.raises(RuntimeError):
        walks.answer_checkin(db.session, user=walker, walk_id=walk["id"], ok=False, now=utcnow())
    db.session.rollback()
    incident_id = db.session.scalar(text("SELECT id FROM incidents WHERE walk_id = :w"), {"w": walk["id"]})
    kinds = db.session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident_id)
                               .order_by(IncidentEvent.id)).all()
    assert kinds == ["created", "walk_escalated"]
    linked = db.session.scalar(text("SELECT count(*) FROM location_fixes WHERE subject_id = :w "
                                    "AND incident_id = :i"), {"w": walk["id"], "i": incident_id})
    assert linked == 2  # evidence: never purged with the walk's other fixes
    assert client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(walker)).json["walk"]["status"] == "escalated"


UUID_OR_TIME = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                          r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")


def as_the_phone_reads_it(seen) -> str:
    """Ids and times vary from run to run: each becomes its order of first appearance."""
    order = {}
    return UUID_OR_TIME.sub(lambda m: f"<{order.setdefault(m.group(0), len(order))}>",
                            json.dumps(seen, sort_keys=True))


def walk_sos_closed_with(client, db, emitted, pin) -> dict:
    """A walk escalates; the walker enters `pin`; then walks on, checks in, and escalates again. Returns all the
    walker's phone got (answers and socket events), with the ids."""
    walker = create_user(db.session, name="한결")
    accounts.set_pins(db.session, user=walker, cancel_pin="1111", duress_pin="2222")
    guardian = guardian_of(client, db, walker)
    walk = start(client, walker, [guardian]).json
    points, me = route_points(walk), auth_header(walker)
    post_fixes(client, walker, walk["id"], [fix(*points[0], utcnow() - timedelta(seconds=5))])
    first = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False}, headers=me).json
    emitted.clear()
    seen = [client.post(f"/api/v1/sos/{first['incident_id']}/cancel", json={"pin": pin}, headers=me).json,
            post_fixes(client, walker, walk["id"], [fix(*points[1], utcnow())]).json,
            client.get(f"/api/v1/walks/{walk['id']}", headers=me).json,
            client.get(f"/api/v1/sos/{first['incident_id']}", headers=me).json,
            client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": True}, headers=me).json]
    second = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False}, headers=me).json
    seen += [second, client.get(f"/api/v1/walks/{walk['id']}", headers=me).json]
    seen += [(event, payload) for ns, room, event, payload in emitted
             if ns == events.MOBILE and room == rooms.user(walker.id)]
    return {"seen": seen, "walk": walk, "walker": walker, "guardian": guardian, "first": first["incident_id"],
            "second": second["incident_id"]}


def test_once_its_sos_is_cancelled_the_walk_is_watched_again_and_may_escalate_again(client, db, emitted):
    run = walk_sos_closed_with(client, db, emitted, "1111")
    walk_id, seen = run["walk"]["id"], run["seen"]
    assert seen[0] == {"status": "cancelled"}
    after_pin = seen[2]["walk"]
    assert after_pin["status"] == "active" and after_pin["incident_id"] == run["first"]
    assert seen[4] == {"status": "active", "answered": 0}  # no longer 409 "already became an SOS"
    assert seen[5]["status"] == "escalated" and run["second"] != run["first"]
    assert seen[6]["walk"]["status"] == "escalated" and seen[6]["walk"]["incident_id"] == run["second"]
    resumed = [p for event, p in seen[7:] if event == events.WALK_ALERT and p["alert"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["walk_id"] == walk_id
    guardian_room = rooms.walk_watcher(walk_id, run["guardian"].id)
    assert [p["alert"] for _, room, e, p in emitted if room == guardian_room and e == events.WALK_ALERT] == [
        "resumed"]
    second = db.session.get(Incident, run["second"])
    assert (second.trigger, str(second.walk_id), second.status) == ("walk_escalation", walk_id, "open")
    assert second.idempotency_key == f"walk:{walk_id}:2"
    # The fix taken between the two is the second SOS's evidence; the first keeps its own.
    filed = db.session.execute(select(LocationFix.incident_id).order_by(LocationFix.t)).scalars().all()
    assert [str(i) for i in filed] == [run["first"], run["second"]]


def test_a_resumed_walk_is_monitored_again_and_ends_on_arrival(app, client, db, emitted):
    walker = create_user(db.session)
    accounts.set_pins(db.session, user=walker, cancel_pin="1111", duress_pin="2222")
    operator = create_user(db.session, role="operator")
    walk = start(client, walker).json
    incident_id = client.post(f"/api/v1/walks/{walk['id']}/checkin", json={"ok": False},
                              headers=auth_header(walker)).json["incident_id"]
    assert client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"outcome": "false_alarm"},
                       headers=auth_header(operator)).status_code == 200  # an operator closing it counts too
    db.session.expire_all()
    resumed = db.session.get(Walk, walk["id"])
    assert resumed.status == "active" and resumed.timer_due is not None
    links = db.session.scalars(select(Job.payload).where(Job.kind == "walk.timers", Job.status == "pending")).all()
    assert {"walk_id": walk["id"], "seq": resumed.timer_seq} in links  # the chain goes on
    home = [fix(HOME_TO["lat"], HOME_TO["lon"], utcnow() - timedelta(seconds=10 - 5 * i)) for i in range(3)]
    assert post_fixes(client, walker, walk["id"], home).json["accepted"] == 3
    db.session.expire_all()
    assert db.session.get(Walk, walk["id"]).status == "arrived"
    assert [p["status"] for _, _, e, p in emitted if e == events.WALK_ENDED] == ["arrived"]


def test_after_the_duress_pin_the_walk_does_for_the_phone_exactly_what_it_does_after_the_cancel_pin(client, db,
                                                                                                   emitted):
    cancelled = walk_sos_closed_with(client, db, emitted, "1111")
    emitted.clear()
    duress = walk_sos_closed_with(client, db, emitted, "2222")
    assert as_the_phone_reads_it(duress["seen"]) == as_the_phone_reads_it(cancelled["seen"])
    # ... while the operators go on: the incident is open and critical, and follows the walker.
    first = db.session.get(Incident, duress["first"])
    assert (first.status, first.priority, first.duress) == ("open", "critical", True)
    filed = db.session.execute(select(LocationFix.incident_id).where(
        LocationFix.subject_id == uuid.UUID(duress["walk"]["id"])).order_by(LocationFix.t)).scalars().all()
    assert [str(i) for i in filed] == [duress["first"]] * 2


def test_a_walk_whose_walker_started_another_during_its_sos_is_finished_when_the_sos_closes(client, db, emitted):
    walker = create_user(db.session)
    accounts.set_pins(db.session, user=walker, cancel_pin="1111", duress_pin="2222")
    first = start(client, walker).json
    incident_id = client.post(f"/api/v1/walks/{first['id']}/checkin", json={"ok": False},
                              headers=auth_header(walker)).json["incident_id"]
    second = start(client, walker)
    assert second.status_code == 201
    assert client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": "1111"},
                       headers=auth_header(walker)).json == {"status": "cancelled"}
    db.session.expire_all()
    assert [db.session.get(Walk, w).status for w in (first["id"], second.json["id"])] == ["finished", "active"]
    assert [p["walk_id"] for _, _, e, p in emitted if e == events.WALK_ENDED] == [first["id"]]
