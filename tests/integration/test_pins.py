"""The cancel and duress PINs at their edges, on the real database and Redis: a duress PIN is never lost to the
attempt limit or a Redis outage, and no race with an operator lets the phone tell it from the cancel PIN."""
import pytest
from sqlalchemy import select

from safety_api.models import Delivery, Incident, IncidentEvent
from safety_api.ratelimit import AttemptLimiter
from safety_api.services import incidents
from tests.factories import auth_header, create_user
from tests.integration.test_sos import on_duty_operator, set_pins, sos  # noqa: F401 - a fixture

CANCEL, DURESS, WRONG = "1111", "2222", "9999"


def enter(client, citizen, incident_id, pin):
    return client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": pin}, headers=auth_header(citizen))


def alarm(client, db, key=None):
    citizen = create_user(db.session)
    set_pins(client, citizen)
    return citizen, sos(client, citizen, key=key).json["incident"]["id"]


def test_a_duress_pin_past_a_full_attempt_limit_is_refused_like_any_pin_and_still_alerts(client, db,
                                                                                       on_duty_operator):  # noqa: F811
    """Whoever holds the phone fills the limit with wrong PINs; the victim's duress PIN then gets the same 429
    as the cancel PIN would, and the operators are alerted all the same."""
    citizen, incident_id = alarm(client, db)
    assert [enter(client, citizen, incident_id, WRONG).status_code for _ in range(5)] == [403] * 5
    cancel, duress = enter(client, citizen, incident_id, CANCEL), enter(client, citizen, incident_id, DURESS)
    assert cancel.status_code == duress.status_code == 429
    assert cancel.json["detail"] == duress.json["detail"] and cancel.content_type == duress.content_type
    db.session.expire_all()
    incident = db.session.get(Incident, incident_id)
    assert (incident.status, incident.duress, incident.priority) == ("open", True, "critical")
    assert client.get(f"/api/v1/sos/{incident_id}", headers=auth_header(citizen)).json["incident"]["status"] == \
        "open"  # as the phone sees it: unchanged, as after the cancel PIN refused past the limit
    reasons = db.session.scalars(select(Delivery.reason).where(Delivery.subject == f"incident:{incident_id}")).all()
    assert "staff.duress" in reasons


@pytest.mark.parametrize("then", [CANCEL, DURESS])
def test_after_a_duress_heeded_past_the_limit_a_pin_accepted_later_closes_the_phones_view_only(app, client, db,
                                                                                            then):
    """Whichever PIN the phone enters once the limit lets it, the phone sees what a cancel shows; the operators go
    on with the duress alarm."""
    citizen, incident_id = alarm(client, db)
    for _ in range(5):
        enter(client, citizen, incident_id, WRONG)
    assert enter(client, citizen, incident_id, DURESS).status_code == 429
    app.extensions["attempt_limiter"].clear(app.config["PIN_LIMIT"], "pin", str(citizen.id))  # the window passed
    assert enter(client, citizen, incident_id, then).json == {"status": "cancelled"}
    mine = client.get(f"/api/v1/sos/{incident_id}", headers=auth_header(citizen)).json["incident"]
    assert mine["status"] == "cancelled"
    db.session.expire_all()
    incident = db.session.get(Incident, incident_id)
    assert (incident.status, incident.duress, incident.priority) == ("open", True, "critical")


def test_a_cancel_pin_past_the_limit_cancels_nothing(client, db):
    citizen, incident_id = alarm(client, db)
    for _ in range(5):
        enter(client, citizen, incident_id, WRONG)
    assert enter(client, citizen, incident_id, CANCEL).status_code == 429
    db.session.expire_all()
    assert (db.session.get(Incident, incident_id).status, db.session.get(Incident, incident_id).duress) == (
        "open", False)


def test_a_duress_pin_while_the_limiter_cannot_reach_redis_still_alerts(app, client, db, monkeypatch):
    citizen, incident_id = alarm(client, db)
    monkeypatch.setitem(app.extensions, "attempt_limiter", AttemptLimiter("redis://127.0.0.1:1/0"))
    refused = enter(client, citizen, incident_id, DURESS)
    assert refused.status_code == 503 and refused.content_type == "application/problem+json"
    db.session.expire_all()
    assert db.session.get(Incident, incident_id).duress is True
    assert enter(client, citizen, incident_id, CANCEL).status_code == 503  # the cancel PIN: the same refusal


def test_an_acknowledgement_that_began_before_a_duress_pin_does_not_show_on_the_phone(app, client, db):
    """The operator's request read the incident before the PIN, and writes after it: the phone must read
    "not acknowledged", as the cancel PIN would have left it (that acknowledgement is then refused)."""
    from sqlalchemy.orm import Session
    operator = create_user(db.session, role="operator")
    citizen, incident_id = alarm(client, db)
    acking = Session(db.engine)  # the acknowledgement's own transaction, begun before the PIN
    try:
        acking.execute(select(1))
        assert enter(client, citizen, incident_id, DURESS).status_code == 200
        taken = incidents.acknowledge(acking, user=acking.merge(operator), incident_id=incident_id)
        assert taken.status == "acknowledged"
    finally:
        acking.close()
    mine = client.get(f"/api/v1/sos/{incident_id}", headers=auth_header(citizen)).json["incident"]
    assert (mine["status"], mine["acknowledged"]) == ("cancelled", False)


def test_a_duress_pin_checked_once_past_the_limit_is_recorded_once(client, db):
    citizen, incident_id = alarm(client, db)
    for _ in range(5):
        enter(client, citizen, incident_id, WRONG)
    for _ in range(3):
        assert enter(client, citizen, incident_id, DURESS).status_code == 429
    kinds = db.session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident_id)).all()
    assert kinds.count("duress") == 1


def test_an_act_naming_the_revision_seen_is_refused_once_a_duress_pin_changed_the_incident(client, db):
    operator = create_user(db.session, role="operator")
    citizen, incident_id = alarm(client, db)
    seen = client.get(f"/api/v1/incidents/{incident_id}", headers=auth_header(operator)).json["incident"]["revision"]
    assert enter(client, citizen, incident_id, DURESS).status_code == 200
    url = f"/api/v1/incidents/{incident_id}"
    stale = client.post(f"{url}/resolve", json={"outcome": "false_alarm", "note": None, "revision": seen},
                        headers=auth_header(operator))
    assert stale.status_code == 409 and "changed since" in stale.json["detail"]
    db.session.expire_all()
    assert db.session.get(Incident, incident_id).status == "open"
    now = client.get(url, headers=auth_header(operator)).json["incident"]["revision"]
    assert now > seen
    current = client.post(f"{url}/dispatch", json={"agency": "경찰", "note": None, "revision": now},
                          headers=auth_header(operator))
    assert current.status_code == 200 and current.json["incident"]["status"] == "dispatched"
    assert client.post(f"{url}/resolve", json={"outcome": "resolved", "note": None},
                       headers=auth_header(operator)).status_code == 200  # naming none: as before


def test_an_api_host_whose_clock_is_behind_the_databases_keeps_the_order_of_an_incidents_changes(
        client, db, monkeypatch):
    """Acknowledged, then resolved: the phone must read "acknowledged", whatever the api host's clock says. Every
    time of an incident comes from the database's clock, taken once its row is locked."""
    from datetime import timedelta

    from safety_api.clock import utcnow
    monkeypatch.setattr(incidents, "utcnow", lambda: utcnow() - timedelta(minutes=5))  # this host is 5 min slow
    operator = create_user(db.session, role="operator")
    citizen, incident_id = alarm(client, db)
    url = f"/api/v1/incidents/{incident_id}"
    assert client.post(f"{url}/ack", headers=auth_header(operator)).status_code == 200
    assert client.post(f"{url}/resolve", json={"outcome": "resolved", "note": None},
                       headers=auth_header(operator)).status_code == 200
    mine = client.get(f"/api/v1/sos/{incident_id}", headers=auth_header(citizen)).json["incident"]
    assert (mine["status"], mine["acknowledged"]) == ("resolved", True)
    incident = db.session.get(Incident, incident_id)
    assert incident.created_at <= incident.acknowledged_at <= incident.closed_at
