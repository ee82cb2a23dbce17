"""The operators' view of incidents on the real database: its revision."""
from sqlalchemy import func, select, text

from safety_api.models import IncidentEvent
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
