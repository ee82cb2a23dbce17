"""SOS on the real database: raise, idempotency, fan-out rows, workflow, PINs, protection, bells, escalation."""
import threading
import uuid

import pytest
from sqlalchemy import select, text

from safety_api.models import Delivery, Incident, IncidentEvent, Job, ProtectedPerson, PushDevice, User
from safety_api.services import incidents
from safety_api.worker import Worker
from tests.factories import PASSWORD, auth_header, create_user

IN_GWANAK = {"lat": 37.4705, "lon": 126.9190, "accuracy_m": 12}
IN_GANGNAM = {"lat": 37.4979, "lon": 127.0276}
OUTSIDE_SEOUL = {"lat": 35.1796, "lon": 129.0756}  # Busan


def sos(client, user, body=IN_GWANAK, key=None):
    headers = auth_header(user)
    if key:
        headers["Idempotency-Key"] = key
    return client.post("/api/v1/sos", json=body, headers=headers)


def with_device(db, user, token=None):
    db.session.add(PushDevice(user_id=user.id, token=token or f"tok-{uuid.uuid4().hex}", platform="android"))
    db.session.commit()
    return user


@pytest.fixture
def on_duty_operator(db):
    operator = create_user(db.session, role="operator", name="관악 관제")
    operator.on_duty = True
    db.session.commit()
    return with_device(db, operator, "operator-token")


def test_sos_in_gwanak_goes_to_its_district_with_the_nearest_cameras(client, db, on_duty_operator):
    citizen = create_user(db.session)
    answer = sos(client, citizen)
    assert answer.status_code == 201
    incident = db.session.get(Incident, answer.json["incident"]["id"])
    assert incident.district_code == "11620"
    cams = incident.nearest_cctvs
    assert 1 <= len(cams) <= 5 and all(c["distance_m"] <= 300 for c in cams)
    assert [c["distance_m"] for c in cams] == sorted(c["distance_m"] for c in cams)
    kinds = db.session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident.id)).all()
    assert kinds == ["created"]
    pushes = db.session.scalars(select(Delivery).where(Delivery.subject == f"incident:{incident.id}")).all()
    assert [(p.token, p.reason, p.status) for p in pushes] == [("operator-token", "staff.created", "pending")]
    assert db.session.scalar(select(Job).where(Job.dedupe_key == f"escalate:{incident.id}")) is not None


def test_the_nearest_cameras_match_a_brute_force_geography_ranking(client, db):
    citizen = create_user(db.session)
    incident = sos(client, citizen).json["incident"]
    truth = db.session.execute(text(
        "SELECT id FROM facilities WHERE kind='cctv' AND ST_DWithin(geom, ST_MakePoint(:lon,:lat)::geography, 300)"
        " AND (attributes->>'working_cameras')::int > 0"
        " ORDER BY ST_Distance(geom, ST_MakePoint(:lon,:lat)::geography), id LIMIT 5"), IN_GWANAK).scalars().all()
    got = db.session.get(Incident, incident["id"]).nearest_cctvs
    assert {c["id"] for c in got} == {str(t) for t in truth}


def test_the_nearest_cameras_are_working_ones(client, db):
    """At 난곡동 646-191 the two nearest camera sites (646-191 and 646-169) were removed ([철거]): an operator is
    offered the cameras still there, not those."""
    citizen = create_user(db.session)
    removed = set(db.session.execute(text(
        "SELECT id::text FROM facilities WHERE source_id IN ('cctv:37.4689,126.924', 'cctv:37.4688,126.9242')"))
        .scalars())
    incident = sos(client, citizen, body={"lat": 37.4689, "lon": 126.9240, "accuracy_m": 10}).json["incident"]
    got = db.session.get(Incident, incident["id"]).nearest_cctvs
    assert len(removed) == 2 and got and not removed & {c["id"] for c in got}


def test_a_replayed_idempotency_key_returns_the_same_incident(client, db):
    citizen = create_user(db.session)
    first = sos(client, citizen, key="phone-retry-1")
    again = sos(client, citizen, key="phone-retry-1")
    other = sos(client, citizen, key="phone-retry-2")
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert first.json["incident"]["id"] == again.json["incident"]["id"] != other.json["incident"]["id"]
    assert db.session.scalar(select(Job.id).where(Job.kind == "incident.escalate").limit(5)) is not None
    assert db.session.execute(text("SELECT count(*) FROM incidents")).scalar() == 2


def test_a_replayed_alarm_keeps_where_the_caller_is_now_in_the_trail(client, db):
    """The phone did not hear the answer and sent the alarm again from 600 m further on (a caller being driven
    away): the same incident comes back, and the new point is its newest fix and in its trail."""
    from safety_api.models import LocationFix
    citizen = create_user(db.session)
    first = sos(client, citizen, key="moving-retry")
    further = {"lat": IN_GWANAK["lat"] + 0.0054, "lon": IN_GWANAK["lon"], "accuracy_m": 20}
    again = sos(client, citizen, body=further, key="moving-retry")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["incident"]["id"] == first.json["incident"]["id"]
    incident = db.session.get(Incident, first.json["incident"]["id"])
    assert (incident.last_fix["lat"], incident.last_fix["lon"]) == (further["lat"], further["lon"])
    trail = db.session.execute(select(LocationFix.lat, LocationFix.lon, LocationFix.incident_id)
                               .where(LocationFix.subject_id == incident.id)).all()
    assert trail == [(further["lat"], further["lon"], incident.id)]
    assert db.session.execute(text("SELECT count(*) FROM incidents")).scalar() == 1

    # Once the caller has cancelled, a replay still answers with the incident and stores nothing more.
    db.session.execute(text("UPDATE incidents SET status = 'cancelled', caller_status = 'cancelled' WHERE id = :id"),
                       {"id": incident.id})
    db.session.commit()
    late = sos(client, citizen, body={**further, "lat": further["lat"] + 0.001}, key="moving-retry")
    assert late.status_code == 200 and late.json["incident"]["status"] == "cancelled"
    assert db.session.scalar(select(text("count(*)")).select_from(LocationFix)) == 1


def test_a_replayed_alarm_is_answered_while_redis_is_away(app, client, db, monkeypatch):
    """The replay's point is a bonus: with Redis unreachable (a real client to a port nothing listens on) the
    replay still gets its incident back, and the point is stored all the same."""
    import redis

    from safety_api.models import LocationFix
    citizen = create_user(db.session)
    first = sos(client, citizen, key="replay-without-redis")
    monkeypatch.setitem(app.extensions, "redis", redis.Redis(port=1, socket_connect_timeout=0.2))
    again = sos(client, citizen, body={**IN_GWANAK, "lat": IN_GWANAK["lat"] + 0.001}, key="replay-without-redis")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["incident"]["id"] == first.json["incident"]["id"]
    assert db.session.scalar(select(text("count(*)")).select_from(LocationFix)) == 1


def test_parallel_retries_with_one_key_make_one_incident(app, db):
    citizen = create_user(db.session)
    headers = {**auth_header(citizen), "Idempotency-Key": "burst"}
    answers = []

    def post():
        answers.append(app.test_client().post("/api/v1/sos", json=IN_GWANAK, headers=headers))

    threads = [threading.Thread(target=post) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(a.status_code for a in answers).count(201) == 1
    assert len({a.json["incident"]["id"] for a in answers}) == 1
    assert db.session.execute(text("SELECT count(*) FROM incidents")).scalar() == 1


def test_an_sos_outside_every_district_is_accepted_and_goes_to_the_central_centre(client, db):
    admin = with_device(db, create_user(db.session, role="admin"), "admin-token")
    answer = sos(client, create_user(db.session), OUTSIDE_SEOUL)
    assert answer.status_code == 201
    incident = db.session.get(Incident, answer.json["incident"]["id"])
    assert incident.district_code is None
    assert [d.token for d in db.session.scalars(select(Delivery))] == ["admin-token"]
    listed = client.get("/api/v1/incidents", headers=auth_header(admin)).json["items"]
    assert [i["id"] for i in listed] == [str(incident.id)]


def test_accepted_guardians_are_told_and_pending_ones_are_not(client, db):
    citizen = create_user(db.session, name="김보호")
    accepted = with_device(db, create_user(db.session), "guardian-ok")
    pending = with_device(db, create_user(db.session), "guardian-pending")
    link = client.post("/api/v1/guardians", json={"phone": accepted.phone}, headers=auth_header(citizen)).json
    client.post(f"/api/v1/guardians/{link['id']}/accept", headers=auth_header(accepted))
    client.post("/api/v1/guardians", json={"phone": pending.phone}, headers=auth_header(citizen))
    sos(client, citizen)
    tokens = [d.token for d in db.session.scalars(select(Delivery).where(Delivery.reason == "guardian.created"))]
    assert tokens == ["guardian-ok"]


def test_two_operators_ack_at_once_one_wins_the_other_gets_409(app, db):
    citizen = create_user(db.session)
    operators = [create_user(db.session, role="operator") for _ in range(2)]
    incident_id = app.test_client().post("/api/v1/sos", json=IN_GWANAK,
                                         headers=auth_header(citizen)).json["incident"]["id"]
    barrier, codes = threading.Barrier(2), []

    def ack(headers):
        barrier.wait()
        codes.append(app.test_client().post(f"/api/v1/incidents/{incident_id}/ack", headers=headers).status_code)

    threads = [threading.Thread(target=ack, args=(auth_header(op),)) for op in operators]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(codes) == [200, 409]
    kinds = db.session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident_id)).all()
    assert kinds.count("acknowledged") == 1


def test_workflow_ack_dispatch_resolve_is_audited_and_closed_incidents_refuse_changes(client, db):
    operator = create_user(db.session, role="operator")
    incident_id = sos(client, create_user(db.session)).json["incident"]["id"]
    url = f"/api/v1/incidents/{incident_id}"
    assert client.post(url + "/ack", headers=auth_header(operator)).json["incident"]["status"] == "acknowledged"
    assert client.post(url + "/ack", headers=auth_header(operator)).status_code == 200  # same operator: idempotent
    dispatched = client.post(url + "/dispatch", json={"agency": "관악경찰서", "note": "순찰차 2대"},
                             headers=auth_header(operator))
    assert dispatched.json["incident"]["status"] == "dispatched"
    resolved = client.post(url + "/resolve", json={"outcome": "resolved", "note": "귀가 확인"},
                           headers=auth_header(operator))
    assert resolved.json["incident"]["status"] == "resolved"
    assert client.post(url + "/dispatch", json={"agency": "x"}, headers=auth_header(operator)).status_code == 409
    detail = client.get(url, headers=auth_header(operator)).json["incident"]
    assert [e["kind"] for e in detail["events"]] == ["created", "acknowledged", "dispatched", "resolved"]
    assert detail["events"][2]["data"]["agency"] == "관악경찰서"


@pytest.mark.parametrize("role, district, status", [
    ("citizen", None, 403), ("scout", None, 403), ("operator", "11680", 403), ("admin", None, 200)])
def test_who_may_act_on_a_gwanak_incident(client, db, role, district, status):
    actor = create_user(db.session, role=role, district=district)
    incident_id = sos(client, create_user(db.session)).json["incident"]["id"]
    assert client.post(f"/api/v1/incidents/{incident_id}/ack", headers=auth_header(actor)).status_code == status
    assert client.get(f"/api/v1/incidents/{incident_id}", headers=auth_header(actor)).status_code == status


def test_operators_list_only_their_district(client, db):
    gangnam = create_user(db.session, role="operator", district="11680")
    gwanak = create_user(db.session, role="operator")
    sos(client, create_user(db.session))
    assert client.get("/api/v1/incidents", headers=auth_header(gangnam)).json["items"] == []
    assert len(client.get("/api/v1/incidents", headers=auth_header(gwanak)).json["items"]) == 1


def set_pins(client, citizen):
    assert client.put("/api/v1/me/pins", json={"cancel_pin": "1111", "duress_pin": "2222", "password": PASSWORD},
                      headers=auth_header(citizen)).status_code == 204


def test_cancel_pin_cancels_and_operators_see_it(client, db):
    citizen = create_user(db.session)
    set_pins(client, citizen)
    incident_id = sos(client, citizen).json["incident"]["id"]
    answer = client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": "1111"}, headers=auth_header(citizen))
    assert answer.status_code == 200 and answer.json == {"status": "cancelled"}
    incident = db.session.get(Incident, incident_id)
    assert (incident.status, incident.duress, incident.outcome) == ("cancelled", False, "cancelled_by_user")


def test_duress_pin_answers_like_a_cancel_but_raises_a_critical_alert(client, db, on_duty_operator):
    citizen = create_user(db.session)
    set_pins(client, citizen)
    cancel_id = sos(client, citizen, key="a").json["incident"]["id"]
    duress_id = sos(client, citizen, key="b").json["incident"]["id"]
    cancelled = client.post(f"/api/v1/sos/{cancel_id}/cancel", json={"pin": "1111"}, headers=auth_header(citizen))
    duressed = client.post(f"/api/v1/sos/{duress_id}/cancel", json={"pin": "2222"}, headers=auth_header(citizen))
    assert (cancelled.status_code, cancelled.json) == (duressed.status_code, duressed.json)
    mine = client.get(f"/api/v1/sos/{duress_id}", headers=auth_header(citizen)).json["incident"]
    assert mine["status"] == "cancelled"
    incident = db.session.get(Incident, duress_id)
    assert (incident.status, incident.duress, incident.priority) == ("open", True, "critical")
    reasons = db.session.scalars(select(Delivery.reason).where(Delivery.subject == f"incident:{duress_id}")).all()
    assert "staff.duress" in reasons


def test_wrong_pins_are_refused_alike_and_rate_limited(client, db):
    citizen = create_user(db.session)
    set_pins(client, citizen)
    incident_id = sos(client, citizen).json["incident"]["id"]
    codes = [client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": "9999"},
                         headers=auth_header(citizen)).status_code for _ in range(6)]
    assert codes == [403] * 5 + [429]
    assert db.session.get(Incident, incident_id).status == "open"


def test_another_citizen_cannot_cancel_or_follow_my_incident(client, db):
    mine = sos(client, create_user(db.session)).json["incident"]["id"]
    stranger = create_user(db.session)
    set_pins(client, stranger)
    assert client.post(f"/api/v1/sos/{mine}/cancel", json={"pin": "1111"},
                       headers=auth_header(stranger)).status_code == 404
    assert client.post(f"/api/v1/sos/{mine}/fixes", json={"fixes": [IN_GWANAK]},
                       headers=auth_header(stranger)).status_code == 404


def test_fixes_keep_the_trail_and_last_fix_and_drop_duplicates(client, db):
    citizen = create_user(db.session)
    incident_id = sos(client, citizen).json["incident"]["id"]
    fixes = [{"lat": 37.4706, "lon": 126.9191, "accuracy_m": 8, "t": "2026-01-01T00:00:00+09:00"}]
    url = f"/api/v1/sos/{incident_id}/fixes"
    from safety_api.clock import utcnow
    now = utcnow().isoformat()
    batch = [{"lat": 37.4707, "lon": 126.9192, "accuracy_m": 8, "t": now},
             {"lat": 37.4708, "lon": 126.9193, "accuracy_m": 500000, "t": now},
             {"lat": 37.4709, "lon": 126.9194, "t": "2999-01-01T00:00:00+00:00"}]
    assert client.post(url, json={"fixes": fixes}, headers=auth_header(citizen)).json["rejected"] == 1  # too old
    first = client.post(url, json={"fixes": batch}, headers=auth_header(citizen)).json
    assert (first["accepted"], first["rejected"]) == (1, 2)
    again = client.post(url, json={"fixes": batch[:1]}, headers=auth_header(citizen)).json
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert db.session.get(Incident, incident_id).last_fix["lat"] == 37.4707


def test_late_fixes_fill_the_trail_but_never_move_last_fix_back_and_closed_incidents_refuse(app, client, db):
    from datetime import timedelta

    from safety_api.clock import utcnow
    citizen = create_user(db.session)
    incident_id = sos(client, citizen).json["incident"]["id"]
    url, now = f"/api/v1/sos/{incident_id}/fixes", utcnow()
    newer = {"lat": 37.4710, "lon": 126.9190, "accuracy_m": 8, "t": now.isoformat()}  # after the SOS's own
    older = {"lat": 37.4720, "lon": 126.9190, "accuracy_m": 8, "t": (now - timedelta(seconds=30)).isoformat()}
    assert client.post(url, json={"fixes": [newer]}, headers=auth_header(citizen)).json["accepted"] == 1
    assert client.post(url, json={"fixes": [older]}, headers=auth_header(citizen)).json["accepted"] == 1
    db.session.expire_all()
    assert db.session.get(Incident, uuid.UUID(incident_id)).last_fix["lat"] == 37.4710  # the late one did not win
    trail = db.session.scalar(text("SELECT count(*) FROM location_fixes WHERE incident_id = :i"), {"i": incident_id})
    assert trail == 2  # both, the late one in its place
    assert app.extensions["redis"].get(f"live:sos:{incident_id}") is not None
    db.session.execute(text("UPDATE incidents SET status = 'resolved' WHERE id = :i"), {"i": incident_id})
    db.session.commit()
    later = {**newer, "t": (now + timedelta(seconds=1)).isoformat()}
    closed = client.post(url, json={"fixes": [later]}, headers=auth_header(citizen))
    assert closed.status_code == 409 and closed.content_type == "application/problem+json"


def test_fixes_from_many_callers_at_once_are_each_answered_and_each_stored_once(app, db):
    """Twenty phones at once share group commits; each gets its own counts, nothing is lost or doubled."""
    from safety_api.clock import utcnow
    people = [create_user(db.session) for _ in range(20)]
    ids = [sos(app.test_client(), p).json["incident"]["id"] for p in people]
    answers, stamp, headers = {}, utcnow().isoformat(), [auth_header(p) for p in people]

    def send(k):
        fix = {"lat": 37.4705 + k * 1e-5, "lon": 126.9190, "accuracy_m": 8, "t": stamp}
        answers[k] = app.test_client().post(f"/api/v1/sos/{ids[k]}/fixes", json={"fixes": [fix, fix]},
                                            headers=headers[k]).json
    threads = [threading.Thread(target=send, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(answers[k]["accepted"] == 1 for k in range(20)), answers
    stored = db.session.scalar(text("SELECT count(*) FROM location_fixes WHERE subject_kind = 'sos' AND t = :t"),
                               {"t": stamp})
    assert stored == 20


def test_protected_persons_get_priority_their_agency_is_told_and_history_is_shown(client, db):
    operator = create_user(db.session, role="operator")
    officer = with_device(db, create_user(db.session, name="담당 경찰관"), "officer-token")
    citizen = create_user(db.session)
    first = sos(client, citizen, key="1").json["incident"]["id"]
    marked = client.put(f"/api/v1/protected-persons/{citizen.id}", headers=auth_header(operator), json={
        "agency": "관악경찰서 여성청소년과", "case_reference": "2026-스토킹-0042", "contact_phones": [officer.phone]})
    assert marked.status_code == 200
    second = sos(client, citizen, key="2").json["incident"]["id"]
    incident = db.session.get(Incident, second)
    assert incident.priority == "high"
    assert "officer-token" in db.session.scalars(select(Delivery.token).where(
        Delivery.subject == f"incident:{second}")).all()
    detail = client.get(f"/api/v1/incidents/{second}", headers=auth_header(operator)).json["incident"]
    assert [e["id"] for e in detail["earlier_incidents"]] == [first]
    assert detail["caller"]["protection"]["case_reference"] == "2026-스토킹-0042"
    assert client.put(f"/api/v1/protected-persons/{citizen.id}", headers=auth_header(citizen), json={
        "agency": "x", "case_reference": "y"}).status_code == 403


def test_bell_devices_raise_sos_at_their_place_and_revoked_keys_are_refused(client, db):
    admin = create_user(db.session, role="admin")
    made = client.post("/api/v1/admin/bell-devices", headers=auth_header(admin),
                       json={"name": "신림동 편의점 비상벨", **{k: IN_GWANAK[k] for k in ("lat", "lon")}})
    assert made.status_code == 201
    key = made.json["api_key"]
    raised = client.post("/api/v1/bells/sos", json={}, headers={"X-Device-Key": key, "Idempotency-Key": "press-1"})
    assert raised.status_code == 201
    replay = client.post("/api/v1/bells/sos", json={}, headers={"X-Device-Key": key, "Idempotency-Key": "press-1"})
    assert replay.status_code == 200 and replay.json["incident"]["id"] == raised.json["incident"]["id"]
    incident = db.session.get(Incident, raised.json["incident"]["id"])
    assert (incident.trigger, incident.district_code, incident.priority) == ("device", "11620", "high")
    assert client.post("/api/v1/bells/sos", json={}, headers={"X-Device-Key": "bell_wrong"}).status_code == 401
    assert client.delete(f"/api/v1/admin/bell-devices/{made.json['id']}",
                         headers=auth_header(admin)).status_code == 204
    assert client.post("/api/v1/bells/sos", json={}, headers={"X-Device-Key": key}).status_code == 401


def make_due(db, kind):
    db.session.execute(text("UPDATE jobs SET run_at = now() - interval '1 second' WHERE kind = :k"), {"k": kind})
    db.session.commit()


def test_escalation_fires_once_even_with_several_workers(app, client, db, on_duty_operator):
    with_device(db, create_user(db.session, role="admin"), "central-token")
    incident_id = sos(client, create_user(db.session)).json["incident"]["id"]
    db.session.execute(text("DELETE FROM jobs WHERE kind = 'push.deliver'"))
    db.session.commit()
    make_due(db, "incident.escalate")
    workers = [Worker(app, name=f"w{i}") for i in range(3)]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    db.session.expire_all()
    incident = db.session.get(Incident, incident_id)
    assert incident.escalated_at is not None and incident.priority == "high"
    kinds = db.session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident_id)).all()
    assert kinds.count("escalated") == 1
    reasons = sorted(db.session.execute(select(Delivery.token, Delivery.reason).where(
        Delivery.reason == "staff.escalated")).all())
    assert reasons == [("central-token", "staff.escalated"), ("operator-token", "staff.escalated")]


def test_an_acknowledged_incident_does_not_escalate(app, client, db):
    operator = create_user(db.session, role="operator")
    incident_id = sos(client, create_user(db.session)).json["incident"]["id"]
    client.post(f"/api/v1/incidents/{incident_id}/ack", headers=auth_header(operator))
    assert incidents.escalate(db.session, incident_id=incident_id) is False


def test_after_a_duress_pin_the_phone_sees_exactly_what_a_cancel_shows(client, db, emitted):
    """Every way the phone can look at its incident after the PIN: the view, its fixes' answer, pushes of
    operator actions, the privacy export. Operators meanwhile go on: they get the fixes and can act."""
    from safety_api.clock import utcnow
    operator = create_user(db.session, role="operator")
    views = {}
    for pin in ("1111", "2222"):
        citizen = create_user(db.session)
        set_pins(client, citizen)
        incident_id = sos(client, citizen).json["incident"]["id"]
        assert client.post(f"/api/v1/incidents/{incident_id}/ack", headers=auth_header(operator)).status_code == 200
        assert client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": pin},
                           headers=auth_header(citizen)).json == {"status": "cancelled"}
        fix = {"lat": 37.4800, "lon": 126.9300, "accuracy_m": 9, "t": utcnow().isoformat()}
        late = client.post(f"/api/v1/sos/{incident_id}/fixes", json={"fixes": [fix]}, headers=auth_header(citizen))
        emitted.clear()
        acted = client.post(f"/api/v1/incidents/{incident_id}/dispatch", json={"agency": "police"},
                            headers=auth_header(operator))
        to_phone = [e for e in emitted if e[1] == f"user:{citizen.id}"]
        view = client.get(f"/api/v1/sos/{incident_id}", headers=auth_header(citizen)).json["incident"]
        exported = client.get("/api/v1/me/export", headers=auth_header(citizen)).json
        views[pin] = {"view": {k: view[k] for k in ("status", "acknowledged", "trigger")},
                      "fixes": (late.status_code, late.json["detail"]), "told": to_phone,
                      "export": ([(i["status"], i["closed_at"] is not None) for i in exported["incidents"]],
                                 exported["location_fixes"], [r["purpose"] for r in exported["location_reads"]])}
        views[pin]["stored"] = db.session.scalar(
            text("SELECT count(*) FROM location_fixes WHERE incident_id = :i"), {"i": incident_id})
        views[pin]["acted"] = acted.status_code
    cancel, duress = views["1111"], views["2222"]
    assert cancel["view"] == duress["view"] == {"status": "cancelled", "acknowledged": True, "trigger": "button"}
    assert cancel["fixes"] == duress["fixes"] == (409, "The incident is already cancelled.")
    assert cancel["told"] == duress["told"] == []
    assert cancel["export"] == duress["export"]
    # ...while the operators keep the duress incident: its fix is stored, and it can be dispatched.
    assert (cancel["stored"], cancel["acted"]) == (0, 409)
    assert (duress["stored"], duress["acted"]) == (1, 200)


def test_a_duress_pin_on_a_resolved_incident_reopens_it_and_the_phone_sees_no_change(client, db, on_duty_operator):
    citizen = create_user(db.session)
    set_pins(client, citizen)
    incident_id = sos(client, citizen).json["incident"]["id"]
    assert client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"outcome": "false_alarm"},
                       headers=auth_header(on_duty_operator)).status_code == 200
    before = client.get(f"/api/v1/sos/{incident_id}", headers=auth_header(citizen)).json["incident"]
    assert client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": "2222"},
                       headers=auth_header(citizen)).json == {"status": "cancelled"}
    after = client.get(f"/api/v1/sos/{incident_id}", headers=auth_header(citizen)).json["incident"]
    assert after == before and after["status"] == "resolved"
    listed = client.get("/api/v1/incidents?status=open", headers=auth_header(on_duty_operator)).json["items"]
    assert [(i["id"], i["status"], i["priority"], i["duress"]) for i in listed] == [
        (incident_id, "open", "critical", True)]
    assert client.post(f"/api/v1/incidents/{incident_id}/ack",
                       headers=auth_header(on_duty_operator)).status_code == 200


def test_a_duress_reopening_escalates_again_if_nobody_takes_it(app, client, db, on_duty_operator):
    """Its first timer ran while the incident was closed and did nothing: the reopening brings a new one."""
    with_device(db, create_user(db.session, role="admin"), "central-token")
    citizen = create_user(db.session)
    set_pins(client, citizen)
    incident_id = sos(client, citizen).json["incident"]["id"]
    client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"outcome": "false_alarm"},
                headers=auth_header(on_duty_operator))
    make_due(db, "incident.escalate")
    Worker(app, name="w").run_once()
    assert db.session.get(Incident, incident_id).escalated_at is None
    client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": "2222"}, headers=auth_header(citizen))
    pending = db.session.scalars(select(Job.dedupe_key).where(Job.kind == "incident.escalate",
                                                              Job.status == "pending")).all()
    assert [key.split(":")[2] for key in pending] == ["duress"]
    make_due(db, "incident.escalate")
    Worker(app, name="w").run_once()
    db.session.expire_all()
    incident = db.session.get(Incident, incident_id)
    assert (incident.status, incident.priority) == ("open", "critical") and incident.escalated_at is not None
    central = db.session.scalars(select(Delivery.reason).where(Delivery.token == "central-token")).all()
    assert central == ["staff.escalated"]


def test_a_duress_on_an_incident_escalated_before_reaches_the_central_centre_again(app, client, db):
    """Escalated because its district had nobody on shift, closed by an admin: the duress is pushed to the
    central centre as well, since pushing the district alone would reach no one."""
    admin = create_user(db.session, role="admin")
    with_device(db, admin, "central-token")
    citizen = create_user(db.session)
    set_pins(client, citizen)
    incident_id = sos(client, citizen).json["incident"]["id"]
    make_due(db, "incident.escalate")
    Worker(app, name="w").run_once()
    client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"outcome": "false_alarm"},
                headers=auth_header(admin))
    client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": "2222"}, headers=auth_header(citizen))
    pushed = db.session.scalars(select(Delivery).where(Delivery.token == "central-token",
                                                       Delivery.reason == "staff.duress")).all()
    assert len(pushed) == 1
    assert (pushed[0].message["data"]["event"], pushed[0].message["data"]["duress"]) == ("duress", "true")


def test_a_batch_resent_late_does_not_move_the_operators_pin_back(app, client, db, emitted):
    """Its fixes are stored, in their place in the trail; the consoles hear only of a newer position."""
    from datetime import timedelta

    from safety_api.clock import utcnow
    from safety_api.realtime.positions import batcher
    citizen = create_user(db.session)
    incident_id = sos(client, citizen).json["incident"]["id"]
    now, url = utcnow(), f"/api/v1/sos/{incident_id}/fixes"
    newer = {"lat": 37.4712, "lon": 126.9199, "accuracy_m": 9, "t": now.isoformat()}
    older = {"lat": 37.4700, "lon": 126.9180, "accuracy_m": 9, "t": (now - timedelta(seconds=30)).isoformat()}
    assert client.post(url, json={"fixes": [newer]}, headers=auth_header(citizen)).json["accepted"] == 1
    batcher.flush()
    emitted.clear()
    assert client.post(url, json={"fixes": [older]}, headers=auth_header(citizen)).json["accepted"] == 1
    batcher.flush()
    assert [p for _ns, _room, name, p in emitted if name == "positions"] == []
    db.session.expire_all()
    assert db.session.get(Incident, incident_id).last_fix["lat"] == 37.4712


def test_an_escalated_incidents_positions_and_updates_reach_the_central_centre_too(app, client, db, emitted):
    """The central centre took it over because nobody in the district did: its map must follow the caller."""
    from safety_api.clock import utcnow
    from safety_api.realtime.positions import batcher
    citizen = create_user(db.session)
    incident_id = sos(client, citizen).json["incident"]["id"]
    fix = {"lat": 37.4710, "lon": 126.9195, "accuracy_m": 9}

    def rooms_of(event):
        return [room for ns, room, name, _ in emitted if name == event and ns == "/control"]

    client.post(f"/api/v1/sos/{incident_id}/fixes", json={"fixes": [{**fix, "t": utcnow().isoformat()}]},
                headers=auth_header(citizen))
    batcher.flush()
    assert rooms_of("positions") == [("district:11620", "districts")]
    make_due(db, "incident.escalate")
    Worker(app, name="w").run_once()
    assert rooms_of("incident.updated")[-1] == ("district:11620", "districts", "central")
    emitted.clear()
    client.post(f"/api/v1/sos/{incident_id}/fixes", json={"fixes": [{**fix, "t": utcnow().isoformat()}]},
                headers=auth_header(citizen))
    batcher.flush()
    assert rooms_of("positions") == [("district:11620", "districts", "central")]
    client.post(f"/api/v1/incidents/{incident_id}/ack", headers=auth_header(create_user(db.session, role="admin")))
    assert rooms_of("incident.updated") == [("district:11620", "districts", "central")]


def test_a_bells_key_is_its_own_and_ends_with_its_incident(client, db):
    """Two bells of one owner, the owner's phone and a bell whose press counter restarted: each press that is
    not a retry of an open alarm raises its own."""
    admin, owner = create_user(db.session, role="admin"), create_user(db.session)
    keys = [client.post("/api/v1/admin/bell-devices", headers=auth_header(admin),
                        json={"name": f"bell {n}", **{k: IN_GWANAK[k] for k in ("lat", "lon")},
                              "owner_phone": owner.phone}).json["api_key"] for n in (1, 2)]

    def press(key, idempotency_key, body=None):
        return client.post("/api/v1/bells/sos", json=body or {},
                           headers={"X-Device-Key": key, "Idempotency-Key": idempotency_key})
    first, second = press(keys[0], "1"), press(keys[1], "1", {"lat": 37.4780, "lon": 126.9520})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json["incident"]["id"] != second.json["incident"]["id"]
    assert press(keys[1], "1").json["incident"]["id"] == second.json["incident"]["id"]  # a retry: the same
    phone = sos(client, owner, key="press-7")
    from_bell = press(keys[0], "press-7")
    assert (phone.status_code, from_bell.status_code) == (201, 201)
    operator = create_user(db.session, role="operator")
    assert client.post(f"/api/v1/incidents/{first.json['incident']['id']}/resolve", json={"outcome": "resolved"},
                       headers=auth_header(operator)).status_code == 200
    again = press(keys[0], "1")  # the counter restarted: a new alarm, not the closed one
    assert again.status_code == 201 and again.json["incident"]["id"] != first.json["incident"]["id"]
    assert sos(client, owner, key="press-7").json["incident"]["id"] == phone.json["incident"]["id"]


def test_an_operators_list_is_a_logged_read_of_each_callers_position_once_an_hour(client, db):
    operator = create_user(db.session, role="operator")
    callers = [create_user(db.session) for _ in range(3)]
    ids = {sos(client, c).json["incident"]["id"] for c in callers}
    for _ in range(3):
        assert len(client.get("/api/v1/incidents", headers=auth_header(operator)).json["items"]) == 3
    rows = db.session.execute(text("SELECT subject_id::text, purpose FROM location_access_log "
                                   "WHERE viewer_id = :v"), {"v": operator.id}).all()
    assert sorted(rows) == sorted((i, "incident.list") for i in ids)
    one = next(iter(ids))
    client.post(f"/api/v1/incidents/{one}/ack", headers=auth_header(operator))
    assert db.session.scalar(text("SELECT count(*) FROM location_access_log WHERE viewer_id = :v "
                                  "AND purpose = 'incident.act'"), {"v": operator.id}) == 1


def test_the_phones_first_fix_replaces_the_raising_point_even_from_a_clock_behind_the_servers(client, db):
    from datetime import timedelta

    from safety_api.clock import utcnow
    citizen = create_user(db.session)
    incident_id = sos(client, citizen).json["incident"]["id"]
    slow = utcnow() - timedelta(seconds=20)  # this phone's clock is 20 s behind
    url = f"/api/v1/sos/{incident_id}/fixes"
    moved = {"lat": 37.4712, "lon": 126.9201, "accuracy_m": 8, "t": slow.isoformat()}
    assert client.post(url, json={"fixes": [moved]}, headers=auth_header(citizen)).json["accepted"] == 1
    db.session.expire_all()
    assert db.session.get(Incident, incident_id).last_fix["lat"] == 37.4712
    older = {**moved, "lat": 37.4700, "t": (slow - timedelta(seconds=5)).isoformat()}
    assert client.post(url, json={"fixes": [older]}, headers=auth_header(citizen)).json["accepted"] == 1
    db.session.expire_all()
    assert db.session.get(Incident, incident_id).last_fix["lat"] == 37.4712  # from then on, forward only


def test_a_phone_cannot_send_the_key_a_walks_escalation_uses(client, db):
    """Else a later escalation of that walk would take the phone's unrelated SOS for its own."""
    answer = sos(client, create_user(db.session), key=f"walk:{uuid.uuid4()}")
    assert answer.status_code == 422 and answer.json["errors"][0]["field"] == "Idempotency-Key"


def test_a_bells_replay_after_a_duress_pin_is_answered_as_after_a_cancel(client, db):
    """Whoever watches the bell (a doorbell display, a person standing by it) sees the same after either PIN:
    the bell's key ended with the incident as its owner sees it, so the replay is a new alarm either way."""
    admin = create_user(db.session, role="admin")
    answers = {}
    for pin in ("1111", "2222"):  # set_pins: cancel 1111, duress 2222
        owner = create_user(db.session)
        set_pins(client, owner)
        key = client.post("/api/v1/admin/bell-devices", headers=auth_header(admin),
                          json={"name": "현관 비상벨", **{k: IN_GWANAK[k] for k in ("lat", "lon")},
                                "owner_phone": owner.phone}).json["api_key"]
        headers = {"X-Device-Key": key, "Idempotency-Key": "press-1"}
        incident_id = client.post("/api/v1/bells/sos", json={}, headers=headers).json["incident"]["id"]
        assert client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": pin},
                           headers=auth_header(owner)).json == {"status": "cancelled"}
        replay = client.post("/api/v1/bells/sos", json={}, headers=headers)
        assert replay.json["incident"]["id"] != incident_id
        answers[pin] = (replay.status_code, replay.json["incident"]["status"], set(replay.json["incident"]))
    assert answers["1111"] == answers["2222"] == (201, "open", {"id", "status"})


def test_an_sos_in_a_district_with_nobody_on_shift_goes_to_the_central_centre_at_once(app, client, db):
    from datetime import timedelta

    from safety_api.clock import utcnow
    with_device(db, create_user(db.session, role="admin"), "central-token")
    create_user(db.session, role="operator")  # of the district, but off shift
    incident_id = sos(client, create_user(db.session)).json["incident"]["id"]
    timer = db.session.scalar(select(Job).where(Job.kind == "incident.escalate"))
    assert timer.run_at <= utcnow() + timedelta(seconds=1)
    db.session.execute(text("DELETE FROM jobs WHERE kind = 'push.deliver'"))
    db.session.commit()
    Worker(app, name="w").run_once()
    db.session.expire_all()
    assert db.session.get(Incident, incident_id).escalated_at is not None
    event = db.session.scalar(select(IncidentEvent).where(IncidentEvent.incident_id == incident_id,
                                                          IncidentEvent.kind == "escalated"))
    assert event.data["reason"] == incidents.NOBODY_ON_SHIFT
    assert db.session.scalars(select(Delivery.token).where(Delivery.reason == "staff.escalated")).all() == [
        "central-token"]


def test_an_operator_on_shift_without_a_push_device_still_has_the_full_time_to_take_it(client, db):
    from datetime import timedelta

    from safety_api.clock import utcnow
    console_only = create_user(db.session, role="operator")
    console_only.on_duty = True
    db.session.commit()
    sos(client, create_user(db.session))
    timer = db.session.scalar(select(Job).where(Job.kind == "incident.escalate"))
    assert timer.run_at > utcnow() + timedelta(seconds=30)


def test_the_escalation_timer_runs_on_the_databases_clock_whatever_the_api_hosts_says(app, client, db, monkeypatch):
    """The worker claims a timer when the database's now() passes it; an api host 5 minutes fast must not push
    the escalation 5 minutes late (nor a slow one escalate at once)."""
    from datetime import datetime, timedelta, timezone

    from safety_api.services import deliveries, sos_raise
    for module in (sos_raise, deliveries):
        monkeypatch.setattr(module, "utcnow", lambda: datetime.now(timezone.utc) + timedelta(minutes=5))
    on_shift = create_user(db.session, role="operator")
    on_shift.on_duty = True
    db.session.commit()
    incident_id = sos(client, create_user(db.session)).json["incident"]["id"]
    timer = db.session.scalar(select(Job).where(Job.kind == "incident.escalate"))
    created_at = db.session.get(Incident, incident_id).created_at
    assert abs((timer.run_at - created_at).total_seconds() - app.config["SOS_ESCALATE_AFTER_S"]) < 1
    assert all(abs((push.run_at - created_at).total_seconds()) < 1
               for push in db.session.scalars(select(Job).where(Job.kind == "push.deliver")))


def test_a_replayed_alarm_gives_way_to_the_phones_next_fix_even_from_a_clock_behind_the_servers(client, db):
    """The replay's point is stamped by the server's clock; a phone 60 s slow must still move `last_fix` and the
    live position on from it, as from the raising point."""
    import json
    from datetime import timedelta

    from safety_api.clock import utcnow
    citizen = create_user(db.session)
    incident_id = sos(client, citizen, key="replayed").json["incident"]["id"]
    assert sos(client, citizen, body={**IN_GWANAK, "lat": 37.4720}, key="replayed").status_code == 200
    db.session.expire_all()
    assert db.session.get(Incident, incident_id).last_fix["source"] == "retry"
    slow = utcnow() - timedelta(seconds=60)
    moved = {"lat": 37.4731, "lon": 126.9201, "accuracy_m": 8, "t": slow.isoformat()}
    assert client.post(f"/api/v1/sos/{incident_id}/fixes", json={"fixes": [moved]},
                       headers=auth_header(citizen)).json["accepted"] == 1
    db.session.expire_all()
    assert db.session.get(Incident, incident_id).last_fix["lat"] == 37.4731
    live = json.loads(client.application.extensions["redis"].get(f"live:sos:{incident_id}"))
    assert live["lat"] == 37.4731


@pytest.mark.parametrize("path, body, field", [
    ("/api/v1/sos/{id}/cancel", {"pin": "\ud800"}, "pin"),
    ("/api/v1/me/pins", {"cancel_pin": "1234", "duress_pin": "5678", "password": "\ud800"}, "password"),
    ("/api/v1/incidents/{id}/dispatch", {"agency": "경\ud800찰", "note": None}, "agency"),
    ("/api/v1/incidents/{id}/resolve", {"outcome": "resolved", "note": "\udfff"}, "note"),
    ("/api/v1/sos/{id}/fixes", {"fixes": [{"lat": 37.47, "lon": 126.92, "t": "\ud800"}]}, "fixes"),
])
def test_text_no_utf_8_can_hold_is_a_422_naming_the_field(client, db, path, body, field):
    """A lone surrogate is valid JSON ("\\ud800") but no UTF-8 encodes it: argon2 and PostgreSQL cannot take it."""
    import json
    citizen, operator = create_user(db.session), create_user(db.session, role="operator")
    incident_id = sos(client, citizen).json["incident"]["id"]
    caller = operator if path.startswith("/api/v1/incidents") else citizen
    method = client.put if path.endswith("/pins") else client.post
    answer = method(path.format(id=incident_id), data=json.dumps(body, ensure_ascii=True),
                    content_type="application/json", headers=auth_header(caller))
    assert answer.status_code == 422 and answer.content_type == "application/problem+json", answer.get_data()
    assert [e["field"] for e in answer.json["errors"]] == [field]


def test_two_operators_setting_up_one_protection_at_once_both_succeed(app, db):
    citizen = create_user(db.session)
    operators = [create_user(db.session, role="operator") for _ in range(10)]
    answers, start, url = [], threading.Barrier(len(operators)), f"/api/v1/protected-persons/{citizen.id}"

    def put(headers):
        start.wait()
        answers.append(app.test_client().put(url, headers=headers,
                                             json={"agency": "관악경찰서", "case_reference": "2026-1",
                                                   "contact_phones": [], "note": None}).status_code)

    threads = [threading.Thread(target=put, args=(auth_header(operator),)) for operator in operators]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(answers) == [200] * len(operators)


def test_a_refused_acknowledgement_says_who_has_the_incident(client, db):
    operator, other = create_user(db.session, role="operator"), create_user(db.session, role="operator")
    incident_id = sos(client, create_user(db.session)).json["incident"]["id"]
    url = f"/api/v1/incidents/{incident_id}"
    assert client.post(f"{url}/dispatch", json={"agency": "경찰", "note": None},
                       headers=auth_header(operator)).status_code == 200
    mine = client.post(f"{url}/ack", headers=auth_header(operator))
    theirs = client.post(f"{url}/ack", headers=auth_header(other))
    assert (mine.status_code, mine.json["detail"]) == (409, "Already dispatched by you.")
    assert (theirs.status_code, theirs.json["detail"]) == (409, "Already dispatched by another operator.")
    assert client.post(f"{url}/resolve", json={"outcome": "resolved", "note": None},
                       headers=auth_header(operator)).status_code == 200
    closed = client.post(f"{url}/ack", headers=auth_header(other))
    assert (closed.status_code, closed.json["detail"]) == (409, "The incident is already resolved.")


def test_an_account_made_for_an_officers_phone_after_the_protection_was_set_receives_nothing(client, db):
    """Phones are not verified at registration: whoever knows the officer's number (the stalker included) could
    register it. Only accounts that held a contact phone when staff set the list are pushed; the operator is
    shown which phones reach someone."""
    operator = create_user(db.session, role="operator")
    officer = with_device(db, create_user(db.session, name="담당 경찰관"), "officer-token")
    citizen = create_user(db.session)
    squatted = "010-5555-0199"
    marked = client.put(f"/api/v1/protected-persons/{citizen.id}", headers=auth_header(operator), json={
        "agency": "관악경찰서", "case_reference": "2026-1", "contact_phones": [officer.phone, squatted]})
    assert marked.status_code == 200 and marked.json["reached_contacts"] == [officer.phone]
    registered = client.post("/api/v1/auth/register", json={"phone": squatted, "password": "squatter-pass-1",
                                                            "name": "경찰관 사칭"})
    assert registered.status_code == 201
    squatter = db.session.get(User, registered.json["user"]["id"])
    with_device(db, squatter, "squatter-token")

    incident_id = sos(client, citizen).json["incident"]["id"]
    tokens = db.session.scalars(select(Delivery.token).where(Delivery.subject == f"incident:{incident_id}")).all()
    assert "officer-token" in tokens and "squatter-token" not in tokens

    again = client.put(f"/api/v1/protected-persons/{citizen.id}", headers=auth_header(operator), json={
        "agency": "관악경찰서", "case_reference": "2026-1", "contact_phones": [officer.phone, squatted]})
    assert again.json["reached_contacts"] == [officer.phone]  # the same list kept: still not reached


def test_a_protection_update_that_read_the_record_before_its_removal_committed_is_no_500(app, db, monkeypatch):
    """An operator's PUT read the protection, then an admin's DELETE committed before the PUT wrote: the PUT
    updated no row (a 500). Both lock the person's row first now, so the removal waits for the update."""
    from safety_api.services import protection
    operator, admin = create_user(db.session, role="operator"), create_user(db.session, role="admin")
    citizen = create_user(db.session)
    protection.protect(db.session, actor=operator, user_id=citizen.id, agency="관악경찰서", case_reference="2026-1",
                       contact_phones=[], note=None)
    url, answers, read, go = f"/api/v1/protected-persons/{citizen.id}", {}, threading.Event(), threading.Event()
    real_check, calls = protection.check_change_protection, []

    def check_then_hold_the_first(actor, record):  # the PUT's, between its read and its write
        real_check(actor, record)
        calls.append(actor.id)
        if len(calls) == 1:
            read.set()
            go.wait(timeout=10)
    monkeypatch.setattr(protection, "check_change_protection", check_then_hold_the_first)

    as_operator, as_admin = auth_header(operator), auth_header(admin)

    def put():
        answers["put"] = app.test_client().put(url, headers=as_operator, json={
            "agency": "관악경찰서", "case_reference": "2026-1-정정"}).status_code

    def delete():
        answers["delete"] = app.test_client().delete(url, headers=as_admin).status_code

    updating = threading.Thread(target=put)
    updating.start()
    assert read.wait(timeout=10)
    removing = threading.Thread(target=delete)
    removing.start()
    waiting_for_a_lock = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND wait_event_type = 'Lock'")
    for _ in range(200):  # the removal either went through (the bug) or waits for the update's lock
        removing.join(timeout=0.02)
        if not removing.is_alive() or db.session.execute(waiting_for_a_lock).scalar():
            break
        db.session.rollback()
    go.set()
    updating.join(timeout=30)
    removing.join(timeout=30)
    assert answers == {"put": 200, "delete": 204}
    assert db.session.get(ProtectedPerson, citizen.id) is None


def test_a_bells_owner_is_a_citizen(client, db):
    """A bell raises its alarm as its owner's (their guardians and protecting agency are told, it joins their
    earlier incidents): the owner is the person it protects, never a staff account."""
    admin, operator, citizen = (create_user(db.session, role=role) for role in ("admin", "operator", "citizen"))
    place = {k: IN_GWANAK[k] for k in ("lat", "lon")}
    for staff in (operator, admin):
        refused = client.post("/api/v1/admin/bell-devices", headers=auth_header(admin),
                              json={"name": "관제실 벨", **place, "owner_phone": staff.phone})
        assert refused.status_code == 422 and refused.content_type == "application/problem+json"
        assert refused.json["errors"] == [{"field": "owner_phone", "message": "Not a citizen."}]
    made = client.post("/api/v1/admin/bell-devices", headers=auth_header(admin),
                       json={"name": "집 비상벨", **place, "owner_phone": citizen.phone})
    assert made.status_code == 201
    assert db.session.scalar(text("SELECT count(*) FROM bell_devices")) == 1


def test_correcting_a_protections_case_reference_keeps_its_contacts_and_note(client, db):
    """PUT replaced the whole record: an operator who only corrected the case reference emptied the contact list,
    and the victim's next SOS reached no officer. Fields left out now keep their values; [] and null clear."""
    operator = create_user(db.session, role="operator")
    officer = with_device(db, create_user(db.session, name="담당 경찰관"), "officer-token")
    citizen = create_user(db.session)
    url, headers = f"/api/v1/protected-persons/{citizen.id}", auth_header(operator)
    assert client.put(url, headers=headers, json={"agency": "관악경찰서", "case_reference": "2026-1",
                                                  "contact_phones": [officer.phone], "note": "야간 순찰"}
                      ).status_code == 200
    corrected = client.put(url, headers=headers, json={"agency": "관악경찰서", "case_reference": "2026-11"})
    assert corrected.status_code == 200
    assert {k: corrected.json[k] for k in ("case_reference", "contact_phones", "reached_contacts", "note")} == {
        "case_reference": "2026-11", "contact_phones": [officer.phone], "reached_contacts": [officer.phone],
        "note": "야간 순찰"}
    incident_id = sos(client, citizen).json["incident"]["id"]
    assert "officer-token" in db.session.scalars(select(Delivery.token).where(
        Delivery.subject == f"incident:{incident_id}")).all()

    shown = client.get(url, headers=headers)
    assert shown.status_code == 200
    assert {k: shown.json[k] for k in ("user_id", "agency", "case_reference", "contact_phones", "reached_contacts",
                                       "note", "district")} == {
        "user_id": str(citizen.id), "agency": "관악경찰서", "case_reference": "2026-11",
        "contact_phones": [officer.phone], "reached_contacts": [officer.phone], "note": "야간 순찰",
        "district": "11620"}

    cleared = client.put(url, headers=headers, json={"agency": "관악경찰서", "case_reference": "2026-11",
                                                     "contact_phones": [], "note": None})
    assert (cleared.json["contact_phones"], cleared.json["reached_contacts"], cleared.json["note"]) == ([], [], None)


def test_a_new_protection_without_contacts_or_note_has_none_and_reading_one_needs_its_district(client, db):
    operator, far = create_user(db.session, role="operator"), create_user(db.session, role="operator",
                                                                           district="11680")
    citizen = create_user(db.session)
    url = f"/api/v1/protected-persons/{citizen.id}"
    missing = client.get(url, headers=auth_header(operator))
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    made = client.put(url, headers=auth_header(operator), json={"agency": "관악경찰서", "case_reference": "2026-2"})
    assert (made.status_code, made.json["contact_phones"], made.json["note"]) == (200, [], None)
    assert client.get(url, headers=auth_header(far)).status_code == 403
    assert client.get(url, headers=auth_header(citizen)).status_code == 403
    assert client.get(f"/api/v1/protected-persons/{operator.id}", headers=auth_header(operator)).status_code == 404


def test_setting_up_changing_and_ending_a_protection_leave_a_trail_that_outlives_it(client, db):
    """Who set up a victim's protection, who changed the officers' phones and who ended it: DELETE erased the
    record with its setter, and no change was written anywhere."""
    operator, admin = create_user(db.session, role="operator"), create_user(db.session, role="admin")
    far = create_user(db.session, role="operator", district="11680")
    officer, citizen = create_user(db.session, name="담당 경찰관"), create_user(db.session)
    url = f"/api/v1/protected-persons/{citizen.id}"
    set_up = {"agency": "관악경찰서", "case_reference": "2026-1"}
    assert client.put(url, headers=auth_header(operator), json=set_up).status_code == 200
    assert client.put(url, headers=auth_header(operator), json=set_up).status_code == 200  # no change: no event
    assert client.put(url, headers=auth_header(far), json={**set_up, "contact_phones": [far.phone]}
                      ).status_code == 403  # refused: no event
    assert client.put(url, headers=auth_header(admin), json={**set_up, "contact_phones": [officer.phone]}
                      ).status_code == 200
    trail = client.get(url, headers=auth_header(operator)).json["history"]
    assert [(e["kind"], e["actor"]) for e in trail] == [("changed", str(admin.id)), ("created", str(operator.id))]
    assert trail[0]["data"] == {"contact_phones": {"old": [], "new": [officer.phone]}}
    assert trail[1]["data"] == {"agency": {"old": None, "new": "관악경찰서"},
                                "case_reference": {"old": None, "new": "2026-1"},
                                "contact_phones": {"old": None, "new": []}, "note": {"old": None, "new": None},
                                "district": {"old": None, "new": "11620"}}

    assert client.delete(url, headers=auth_header(operator)).status_code == 204
    assert client.get(url, headers=auth_header(admin)).status_code == 404
    assert client.put(url, headers=auth_header(admin), json={"agency": "관악경찰서", "case_reference": "2026-9"}
                      ).status_code == 200  # set up again: the earlier one's trail is shown with it
    trail = client.get(url, headers=auth_header(admin)).json["history"]
    assert [(e["kind"], e["actor"]) for e in trail] == [
        ("created", str(admin.id)), ("ended", str(operator.id)), ("changed", str(admin.id)),
        ("created", str(operator.id))]
    assert trail[1]["data"]["contact_phones"] == {"old": [officer.phone], "new": None}
    assert trail[1]["data"]["case_reference"] == {"old": "2026-1", "new": None}

    # Not in the person's own export: whoever holds the phone may be the one it protects against.
    export = client.get("/api/v1/me/export", headers=auth_header(citizen)).get_data(as_text=True)
    assert "관악경찰서" not in export and "2026-9" not in export


def statements_of(db, request) -> int:
    """How many SQL statements a request sends."""
    from sqlalchemy import event
    seen = []

    def count(*_args):
        seen.append(1)
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        request()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return len(seen)


def test_operators_see_which_bell_raised_an_incident_without_a_statement_more_for_the_sos(client, db, emitted):
    """A lost or abused bell is found by its name on the alarm; the name comes with the bell the request
    authenticated, so the bell's SOS still sends its five statements (the bell, its owner, the scene, the
    incident with its event, the pushes)."""
    admin, operator, owner = (create_user(db.session, role=role) for role in ("admin", "operator", "citizen"))
    made = client.post("/api/v1/admin/bell-devices", headers=auth_header(admin), json={
        "name": "신림동 편의점 비상벨", **{k: IN_GWANAK[k] for k in ("lat", "lon")}, "owner_phone": owner.phone}).json
    answers = []
    assert statements_of(db, lambda: answers.append(client.post(
        "/api/v1/bells/sos", json={}, headers={"X-Device-Key": made["api_key"]}))) == 5
    assert answers[0].status_code == 201
    bell = {"id": made["id"], "name": "신림동 편의점 비상벨"}
    created = [payload for _ns, _room, event, payload in emitted if event == "incident.created"]
    assert [view["bell"] for view in created] == [bell]

    incident_id = answers[0].json["incident"]["id"]
    phone_sos = sos(client, owner).json["incident"]["id"]
    listed = client.get("/api/v1/incidents", headers=auth_header(operator)).json["items"]
    assert {item["id"]: item["bell"] for item in listed} == {incident_id: bell, phone_sos: None}
    detail = client.get(f"/api/v1/incidents/{incident_id}", headers=auth_header(operator)).json["incident"]
    assert detail["bell"] == bell
    acknowledged = client.post(f"/api/v1/incidents/{incident_id}/ack", headers=auth_header(operator)).json
    assert acknowledged["incident"]["bell"] == bell


def test_admins_list_the_bells_to_find_and_revoke_a_lost_one(client, db):
    admin, owner = create_user(db.session, role="admin"), create_user(db.session, name="김안심")
    place = {k: IN_GWANAK[k] for k in ("lat", "lon")}
    home = client.post("/api/v1/admin/bell-devices", headers=auth_header(admin),
                       json={"name": "집 비상벨", **place, "owner_phone": owner.phone}).json
    shop = client.post("/api/v1/admin/bell-devices", headers=auth_header(admin),
                       json={"name": "편의점 비상벨", "lat": 37.4650, "lon": 126.9260}).json
    assert client.delete(f"/api/v1/admin/bell-devices/{shop['id']}", headers=auth_header(admin)).status_code == 204

    listed = client.get("/api/v1/admin/bell-devices", headers=auth_header(admin))
    assert listed.status_code == 200
    items = {item["id"]: item for item in listed.json["items"]}
    assert set(items) == {home["id"], shop["id"]}
    assert {k: items[home["id"]][k] for k in ("name", "key_prefix", "owner", "location", "revoked_at")} == {
        "name": "집 비상벨", "key_prefix": home["api_key"][:12], "owner": {"id": str(owner.id), "name": "김안심"},
        "location": {"type": "Point", "coordinates": [place["lon"], place["lat"]]}, "revoked_at": None}
    assert items[shop["id"]]["owner"] is None and items[shop["id"]]["revoked_at"] is not None
    assert items[home["id"]]["created_at"]
    assert [i["id"] for i in client.get("/api/v1/admin/bell-devices?revoked=false",
                                        headers=auth_header(admin)).json["items"]] == [home["id"]]
    assert [i["id"] for i in client.get("/api/v1/admin/bell-devices?revoked=true",
                                        headers=auth_header(admin)).json["items"]] == [shop["id"]]
    assert "api_key" not in listed.get_data(as_text=True) and home["api_key"] not in listed.get_data(as_text=True)
