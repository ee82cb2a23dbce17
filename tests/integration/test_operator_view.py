"""The operators' view of incidents on the real database: its revision, the lists and the detail's trail."""
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from safety_api.clock import utcnow
from safety_api.models import IncidentEvent
from safety_api.services import incident_views
from safety_api.worker import Worker
from tests.factories import PASSWORD, auth_header, create_user

IN_GWANAK = {"lat": 37.4705, "lon": 126.9190, "accuracy_m": 12}


def sos(client, user):
    answer = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(user))
    assert answer.status_code == 201, answer.json
    return answer.json["incident"]["id"]


def detail(client, operator, incident_id) -> dict:
    return client.get(f"/api/v1/incidents/{incident_id}", headers=auth_header(operator)).json["incident"]


def events_of(db, incident_id) -> int:
    return db.session.scalar(select(func.count()).select_from(IncidentEvent)
                             .where(IncidentEvent.incident_id == incident_id))


def post(client, user, path, body=None):
    answer = client.post(f"/api/v1/{path}", json=body or {}, headers=auth_header(user))
    assert answer.status_code == 200, answer.json
    return answer.json


def test_every_recorded_change_adds_to_the_revision_also_when_the_status_goes_back(app, client, db, emitted):
    """A console orders what it hears by the revision: a release and a duress PIN move the status back to
    open, and each must read as newer than everything before it."""
    admin, citizen = create_user(db.session, role="admin"), create_user(db.session)
    first, second = (create_user(db.session, role="operator") for _ in range(2))
    assert client.put("/api/v1/me/pins", json={"cancel_pin": "1111", "duress_pin": "2222", "password": PASSWORD},
                      headers=auth_header(citizen)).status_code == 204
    incident_id = sos(client, citizen)
    seen = [(detail(client, second, incident_id)["revision"], "open")]
    post(client, first, f"incidents/{incident_id}/ack")
    seen.append((detail(client, second, incident_id)["revision"], "acknowledged"))
    post(client, admin, f"admin/users/{first.id}/suspend", {"reason": "퇴사"})  # released: open again
    seen.append((detail(client, second, incident_id)["revision"], "open"))
    db.session.execute(text("UPDATE jobs SET run_at = now() - interval '1 second' WHERE kind = 'incident.escalate'"))
    db.session.commit()
    Worker(app, name="w").run_once()  # nobody took it again in time: escalated
    seen.append((detail(client, second, incident_id)["revision"], "open"))
    post(client, second, f"incidents/{incident_id}/resolve", {"outcome": "false_alarm"})
    seen.append((detail(client, second, incident_id)["revision"], "resolved"))
    post(client, citizen, f"sos/{incident_id}/cancel", {"pin": "2222"})  # duress: reopened
    view = detail(client, second, incident_id)
    seen.append((view["revision"], view["status"]))

    assert [s for _, s in seen] == ["open", "acknowledged", "open", "open", "resolved", "open"]
    revisions = [r for r, _ in seen]
    assert revisions == sorted(set(revisions)) and revisions[0] == 1
    assert revisions[-1] == events_of(db, incident_id)  # one per change in the audit trail
    told = [p for ns, _room, name, p in emitted if ns == "/control" and p.get("id") == incident_id]
    assert [p["revision"] for p in told] == sorted(p["revision"] for p in told)
    assert told[-1]["revision"] == view["revision"] and told[-1]["duress"] is True
    listed = client.get("/api/v1/incidents", headers=auth_header(second)).json["items"]
    assert [(i["id"], i["revision"]) for i in listed] == [(incident_id, view["revision"])]


def test_the_callers_view_carries_no_revision(client, db):
    """After a duress PIN the phone's view is frozen; a growing revision would tell that work goes on."""
    citizen = create_user(db.session)
    incident_id = sos(client, citizen)
    mine = client.get(f"/api/v1/sos/{incident_id}", headers=auth_header(citizen)).json["incident"]
    assert "revision" not in mine


def add_incidents(db, count: int, *, status: str, minutes_ago: int):
    """`count` incidents of 관악구 raised one second apart, the newest `minutes_ago` minutes ago."""
    closed = status in ("resolved", "cancelled")
    db.session.execute(text("""
        INSERT INTO incidents (id, trigger, status, priority, district_code, location, created_at, closed_at)
        SELECT gen_random_uuid(), 'button', :status, 'normal', '11620',
               ST_SetSRID(ST_MakePoint(126.919, 37.4705), 4326)::geography, t, CASE WHEN :closed THEN t END
        FROM (SELECT now() - make_interval(mins => :ago) - make_interval(secs => n) AS t
              FROM generate_series(1, :count) n) s
    """), {"status": status, "closed": closed, "ago": minutes_ago, "count": count})
    db.session.commit()


def test_the_open_list_holds_every_active_incident_however_many_wait(client, db):
    """A console drops every open incident the list leaves out: with 600 older ones waiting, the newest SOS
    (normal priority, last in the order) must be in it all the same."""
    operator = create_user(db.session, role="operator")
    add_incidents(db, 600, status="open", minutes_ago=30)
    add_incidents(db, 10, status="dispatched", minutes_ago=20)
    newest = sos(client, create_user(db.session))
    listed = client.get("/api/v1/incidents?status=open", headers=auth_header(operator)).json["items"]
    assert len(listed) == 611 and listed[-1]["id"] == newest
    assert len(client.get("/api/v1/incidents?status=dispatched", headers=auth_header(operator)).json["items"]) == 10


@pytest.mark.parametrize("status", ["all", "resolved"])
def test_all_and_closed_lists_are_the_newest_first(client, db, status):
    operator = create_user(db.session, role="operator")
    add_incidents(db, 600, status="resolved", minutes_ago=60)
    newest = sos(client, create_user(db.session))
    post(client, operator, f"incidents/{newest}/resolve", {"outcome": "resolved"})
    listed = client.get(f"/api/v1/incidents?status={status}", headers=auth_header(operator)).json["items"]
    assert len(listed) == 500 and listed[0]["id"] == newest
    times = [i["created_at"] for i in listed]
    assert times == sorted(times, reverse=True)


def test_the_detail_trail_is_the_newest_fixes_and_says_when_older_ones_were_left_out(client, db, monkeypatch):
    monkeypatch.setattr(incident_views, "TRAIL_LIMIT", 3)
    operator, citizen = create_user(db.session, role="operator"), create_user(db.session)
    incident_id = sos(client, citizen)
    start = utcnow() - timedelta(minutes=5)
    fixes = [{"lat": 37.4705 + i * 1e-4, "lon": 126.9190, "accuracy_m": 9,
              "t": (start + timedelta(seconds=i)).isoformat()}
             for i in range(3)]
    assert client.post(f"/api/v1/sos/{incident_id}/fixes", json={"fixes": fixes},
                       headers=auth_header(citizen)).json["accepted"] == 3
    whole = detail(client, operator, incident_id)
    assert len(whole["trail"]) == 3 and whole["trail_truncated"] is False
    later = [{**f, "lat": f["lat"] + 1e-3, "t": (start + timedelta(seconds=10 + i)).isoformat()}
             for i, f in enumerate(fixes[:2])]
    client.post(f"/api/v1/sos/{incident_id}/fixes", json={"fixes": later}, headers=auth_header(citizen))
    cut = detail(client, operator, incident_id)
    assert cut["trail_truncated"] is True
    got = [datetime.fromisoformat(p["t"]) for p in cut["trail"]]
    assert got == [datetime.fromisoformat(f["t"]) for f in (fixes[2], *later)]  # the newest, oldest first
