"""Staff accounts kept by admins, on the real database and Redis: suspend, reinstate, move, find, and the trail."""
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from safety_api.clock import utcnow
from safety_api.errors import Unauthorized
from safety_api.models import (
    AccountEvent,
    Delivery,
    EscortAssignment,
    EscortBooking,
    Incident,
    IncidentEvent,
    Job,
    PushDevice,
    User,
)
from safety_api.services import accounts, escort, escort_live, incidents, staff
from tests.factories import GWANAK, PASSWORD, auth_header, create_user, next_phone
from tests.integration.test_escort import event_kinds, make_booking, post, run_job, scout, timer_jobs

PROBLEM = "application/problem+json"
IN_GWANAK = {"lat": 37.4705, "lon": 126.9190}
IN_GANGNAM = {"lat": 37.5172, "lon": 127.0473}  # 강남구청


def sign_in(client, user) -> dict:
    tokens = client.post("/api/v1/auth/login", json={"phone": user.phone, "password": PASSWORD}).json
    return {"access": {"Authorization": f"Bearer {tokens['access_token']}"},
            "refresh": {"Authorization": f"Bearer {tokens['refresh_token']}"}}


def admin_post(client, admin, path, body):
    return client.post(f"/api/v1/admin/users/{path}", headers=auth_header(admin), json=body)


def on_duty(db, user):
    user.on_duty = True
    db.session.commit()
    return user


def test_a_suspended_operator_loses_every_sign_in_device_and_shift_and_cannot_log_in(client, db):
    admin = create_user(db.session, role="admin", name="관리자")
    operator = on_duty(db, create_user(db.session, role="operator", name="떠나는 관제요원"))
    console, phone = sign_in(client, operator), sign_in(client, operator)
    assert client.post("/api/v1/devices", headers=phone["access"],
                       json={"token": "leaving-operator-phone", "platform": "android"}).status_code == 201
    before_sign_ins = auth_header(operator)  # a token that names no sign-in ends too

    answer = admin_post(client, admin, f"{operator.id}/suspend", {"reason": "퇴사"})
    assert answer.status_code == 200, answer.json
    assert answer.json["user"]["suspended_at"] and answer.json["user"]["on_duty"] is False

    for headers in (console["access"], phone["access"], before_sign_ins):
        refused = client.get("/api/v1/incidents", headers=headers)
        assert refused.status_code == 401 and refused.content_type == PROBLEM
    for tokens in (console, phone):
        assert client.post("/api/v1/auth/refresh", headers=tokens["refresh"]).status_code == 401
    login = client.post("/api/v1/auth/login", json={"phone": operator.phone, "password": PASSWORD})
    assert login.status_code == 403 and login.content_type == PROBLEM and "suspended" in login.json["detail"]
    wrong = client.post("/api/v1/auth/login", json={"phone": operator.phone, "password": "not-the-password"})
    assert wrong.status_code == 401  # a stranger without the password does not learn of the suspension
    assert db.session.scalars(select(PushDevice)).all() == []

    citizen = create_user(db.session)
    assert client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(citizen)).status_code == 201
    assert db.session.scalars(select(Delivery)).all() == []  # no one on shift: nothing planned to them


def test_reinstating_lets_the_person_log_in_again_and_the_trail_says_who_did_what(client, db):
    admin = create_user(db.session, role="admin", name="관리자")
    made = client.post("/api/v1/admin/users", headers=auth_header(admin), json={
        "phone": "010-3333-4444", "password": PASSWORD, "name": "스카우트", "role": "scout", "district": "11620"})
    scout_id = made.json["user"]["id"]
    assert admin_post(client, admin, f"{scout_id}/suspend", {"reason": "민원 조사"}).status_code == 200
    again = admin_post(client, admin, f"{scout_id}/suspend", {"reason": "두 번째"})
    assert again.status_code == 200  # already suspended: no change, no second entry
    back = admin_post(client, admin, f"{scout_id}/reinstate", {"reason": "조사 종결"})
    assert back.status_code == 200 and back.json["user"]["suspended_at"] is None
    assert client.post("/api/v1/auth/login", json={"phone": "01033334444", "password": PASSWORD}).status_code == 200

    detail = client.get(f"/api/v1/admin/users/{scout_id}", headers=auth_header(admin))
    assert detail.status_code == 200
    trail = [(e["kind"], e["actor"], e["data"].get("reason")) for e in detail.json["history"]]
    assert trail == [("reinstated", str(admin.id), "조사 종결"), ("suspended", str(admin.id), "민원 조사"),
                     ("created", str(admin.id), None)]


def test_an_admin_cannot_suspend_themself_and_citizens_and_strangers_are_not_staff(client, db):
    admin = create_user(db.session, role="admin")
    own = admin_post(client, admin, f"{admin.id}/suspend", {"reason": "실수"})
    assert own.status_code == 409 and own.content_type == PROBLEM
    citizen = create_user(db.session)
    for path in (f"{citizen.id}/suspend", "00000000-0000-0000-0000-000000000000/suspend"):
        answer = admin_post(client, admin, path, {"reason": "x"})
        assert answer.status_code == 404 and answer.content_type == PROBLEM
    assert client.get(f"/api/v1/admin/users/{citizen.id}", headers=auth_header(admin)).status_code == 404
    assert db.session.get(User, admin.id).suspended_at is None
    assert db.session.get(User, citizen.id).suspended_at is None
    assert client.get("/api/v1/me", headers=auth_header(citizen)).status_code == 200


@pytest.mark.parametrize("path, body, field", [
    ("suspend", {}, "reason"),
    ("suspend", {"reason": ""}, "reason"),
    ("suspend", {"reason": "x" * 501}, "reason"),
    ("suspend", {"reason": "x", "until": "tomorrow"}, "until"),
    ("reinstate", {"reason": None}, "reason"),
])
def test_a_suspension_needs_a_reason(client, db, path, body, field):
    admin = create_user(db.session, role="admin")
    operator = create_user(db.session, role="operator")
    answer = admin_post(client, admin, f"{operator.id}/{path}", body)
    assert answer.status_code == 422 and answer.content_type == PROBLEM
    assert field in [e["field"] for e in answer.json["errors"]]
    assert db.session.get(User, operator.id).suspended_at is None


def test_a_shift_switched_on_by_a_request_that_passed_its_gate_before_the_suspension_counts_for_nothing(client, db):
    admin = create_user(db.session, role="admin")
    operator = create_user(db.session, role="operator")
    stale = db.session.get(User, operator.id)  # as the duty request's gate loaded it, before the suspension
    assert admin_post(client, admin, f"{operator.id}/suspend", {"reason": "퇴사"}).status_code == 200
    with pytest.raises(Unauthorized):
        staff.set_duty(db.session, user=stale, on_duty=True, escalate_after_s=60)
    assert db.session.get(User, operator.id).on_duty is False
    # Even a flag set behind the service's back does not put a suspended person on shift.
    db.session.execute(text("UPDATE users SET on_duty = true WHERE id = :id"), {"id": operator.id})
    db.session.add(PushDevice(user_id=operator.id, token="forced-token", platform="android"))
    db.session.commit()
    assert client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(create_user(db.session))).status_code == 201
    assert db.session.scalars(select(Delivery)).all() == []
    assert escort.staff_on_duty(db.session, "operator", "11620") == []


def test_a_suspended_scout_leaves_the_escorts_not_yet_under_way_and_another_takes_the_slot(app, client, db):
    admin = create_user(db.session, role="admin")
    operator = on_duty(db, create_user(db.session, role="operator"))
    leaving, partner, newcomer = scout(db, name="떠나는"), scout(db, name="남는"), scout(db, name="새로 온")
    later = make_booking(app, db, meet_at=utcnow() + timedelta(hours=2))
    walking = make_booking(app, db, meet_at=utcnow() + timedelta(minutes=20))  # near enough to start now
    for booking in (later, walking):
        for person in (leaving, partner):
            assert post(client, person, booking.id, "accept").status_code == 200
    assert post(client, operator, walking.id, "start").status_code == 200
    jobs_before = db.session.scalar(select(Job.id).order_by(Job.id.desc()).limit(1))

    assert admin_post(client, admin, f"{leaving.id}/suspend", {"reason": "조사"}).status_code == 200

    db.session.expire_all()
    reopened = db.session.get(EscortBooking, later.id)
    assert reopened.status == "requested"
    assert [a.scout_id for a in reopened.assignments] == [partner.id]
    assert event_kinds(db, later.id)[-1] == "scout_withdrawn"
    told = [(j.payload["data"]["event"], set(j.payload["user_ids"])) for j in db.session.scalars(
        select(Job).where(Job.kind == "push.user", Job.id > jobs_before).order_by(Job.id))]
    assert told == [("reopened", {str(later.citizen_id), str(partner.id)}), ("reopened", {str(operator.id)}),
                    ("offered", {str(newcomer.id)})]
    under_way = db.session.get(EscortBooking, walking.id)
    assert under_way.status == "in_progress" and {a.scout_id for a in under_way.assignments} == {leaving.id, partner.id}

    taken = post(client, newcomer, later.id, "accept")
    assert taken.status_code == 200 and taken.json["status"] == "confirmed"
    slots = db.session.execute(select(EscortAssignment.scout_id, EscortAssignment.slot)
                               .where(EscortAssignment.booking_id == later.id)).all()
    assert sorted(slot for _scout, slot in slots) == [1, 2] and {s for s, _ in slots} == {partner.id, newcomer.id}
    third = post(client, scout(db, name="셋째"), later.id, "accept")
    assert third.status_code == 409  # the pair is whole again


def test_a_booking_reopened_after_its_unconfirmed_flag_came_is_flagged_again_if_nobody_takes_it(app, client, db):
    admin = create_user(db.session, role="admin")
    operator = on_duty(db, create_user(db.session, role="operator"))
    soon = utcnow() + timedelta(minutes=10)  # the flag's time (15 minutes before) has passed
    flagged = make_booking(app, db, meet_at=soon, ahead=timedelta(minutes=30))
    quiet = make_booking(app, db, meet_at=soon, ahead=timedelta(minutes=30))
    leaving, partner = [scout(db, name="떠나는"), scout(db, name="떠나는 둘")], [scout(db), scout(db)]
    assert post(client, leaving[0], flagged.id, "accept").status_code == 200
    for person in (leaving[1], partner[1]):
        assert post(client, person, quiet.id, "accept").status_code == 200
    for booking in (flagged, quiet):  # one scout short: flagged; confirmed: the flag does nothing
        run_job(db, "escort.unconfirmed", booking)
    assert post(client, partner[0], flagged.id, "accept").json["status"] == "confirmed"
    assert db.session.get(EscortBooking, flagged.id).flagged_at is not None

    before = utcnow()
    for person in leaving:
        assert admin_post(client, admin, f"{person.id}/suspend", {"reason": "조사"}).status_code == 200

    db.session.expire_all()
    jobs_before = db.session.scalar(select(Job.id).order_by(Job.id.desc()).limit(1))
    for booking in (flagged, quiet):
        reopened = db.session.get(EscortBooking, booking.id)
        assert reopened.status == "requested" and reopened.flagged_at is None
        first, fresh = timer_jobs(db, "escort.unconfirmed", booking)
        assert fresh.dedupe_key != first.dedupe_key and fresh.status == "pending"
        assert before + escort.OFFER_GRACE <= fresh.run_at <= utcnow() + escort.OFFER_GRACE < reopened.meet_at
        assert escort_live.flag_unconfirmed(db.session, booking_id=booking.id, now=fresh.run_at)
        db.session.commit()
    flagged_again = [(j.payload["data"]["id"], j.payload["user_ids"]) for j in db.session.scalars(
        select(Job).where(Job.kind == "push.user", Job.id > jobs_before).order_by(Job.id))]
    assert flagged_again == [(str(b.id), who) for b in (flagged, quiet)
                             for who in ([str(b.citizen_id)], [str(operator.id)])]


def test_moving_an_operator_changes_whose_alarms_they_get_and_keeps_their_sign_in(client, db):
    admin = create_user(db.session, role="admin")
    operator = on_duty(db, create_user(db.session, role="operator", name="전보 관제요원"))
    db.session.add(PushDevice(user_id=operator.id, token="moving-operator", platform="android"))
    db.session.commit()
    console = sign_in(client, operator)

    moved = client.patch(f"/api/v1/admin/users/{operator.id}", headers=auth_header(admin),
                         json={"district": "11680", "reason": "인사 발령"})
    assert moved.status_code == 200, moved.json
    assert moved.json["user"]["district"] == "11680" and moved.json["user"]["on_duty"] is False
    assert client.get("/api/v1/me", headers=console["access"]).json["district"] == "11680"
    assert client.put("/api/v1/me/duty", headers=console["access"], json={"on_duty": True}).status_code == 200

    citizen = create_user(db.session)
    gwanak = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(citizen)).json["incident"]
    gangnam = client.post("/api/v1/sos", json=IN_GANGNAM, headers=auth_header(create_user(db.session))).json
    planned = {d.subject for d in db.session.scalars(select(Delivery).where(Delivery.token == "moving-operator"))}
    assert planned == {f"incident:{gangnam['incident']['id']}"}
    assert client.get(f"/api/v1/incidents/{gwanak['id']}", headers=console["access"]).status_code == 403
    trail = client.get(f"/api/v1/admin/users/{operator.id}", headers=auth_header(admin)).json["history"][0]
    assert (trail["kind"], trail["data"]) == ("moved", {"reason": "인사 발령", "from": "11620", "to": "11680"})


@pytest.mark.parametrize("role, body, status, field", [
    ("admin", {"district": "11680", "reason": "x"}, 422, "district"),
    ("operator", {"district": "99999", "reason": "x"}, 422, "district"),
    ("operator", {"district": "gwanak", "reason": "x"}, 422, "district"),
    ("operator", {"district": "11680"}, 422, "reason"),
    ("operator", {"district": "11680", "reason": "   "}, 422, "reason"),
    ("operator", {"district": "11680", "reason": "x", "role": "admin"}, 422, "role"),
])
def test_a_move_names_what_is_wrong(client, db, role, body, status, field):
    admin = create_user(db.session, role="admin")
    person = create_user(db.session, role=role)
    answer = client.patch(f"/api/v1/admin/users/{person.id}", headers=auth_header(admin), json=body)
    assert answer.status_code == status and answer.content_type == PROBLEM
    assert field in [e["field"] for e in answer.json["errors"]]
    assert db.session.get(User, person.id).district_code == person.district_code


def test_admins_find_staff_by_role_district_and_suspension_and_never_citizens(client, db):
    admin = create_user(db.session, role="admin", name="관리자")
    gwanak = create_user(db.session, role="operator", name="관악")
    gangnam = create_user(db.session, role="operator", district="11680", name="강남")
    scout_ = create_user(db.session, role="scout", name="스카우트")
    create_user(db.session, name="시민")
    admin_post(client, admin, f"{gangnam.id}/suspend", {"reason": "휴직"})

    def ids(query=""):
        answer = client.get(f"/api/v1/admin/users{query}", headers=auth_header(admin))
        assert answer.status_code == 200
        return [item["id"] for item in answer.json["items"]]

    assert ids() == [str(admin.id), str(gwanak.id), str(scout_.id), str(gangnam.id)]
    assert ids("?role=operator") == [str(gwanak.id), str(gangnam.id)]
    assert ids("?district=11680") == [str(gangnam.id)]
    assert ids("?suspended=true") == [str(gangnam.id)]
    assert ids("?suspended=false&role=scout") == [str(scout_.id)]
    for bad in ("?role=citizen", "?district=x", "?suspended=maybe"):
        answer = client.get(f"/api/v1/admin/users{bad}", headers=auth_header(admin))
        assert answer.status_code == 422 and answer.content_type == PROBLEM


def test_a_protection_stays_in_the_charge_of_the_district_that_set_it_up_when_its_operator_moves(client, db):
    admin = create_user(db.session, role="admin")
    setter = create_user(db.session, role="operator", name="관악 담당")
    colleague = create_user(db.session, role="operator", name="관악 동료")
    victim = create_user(db.session, name="보호 대상")
    protection = {"agency": "관악경찰서", "case_reference": "2026-77", "contact_phones": [], "note": None}
    assert client.put(f"/api/v1/protected-persons/{victim.id}", headers=auth_header(setter),
                      json=protection).status_code == 200
    assert client.patch(f"/api/v1/admin/users/{setter.id}", headers=auth_header(admin),
                        json={"district": "11680", "reason": "인사 발령"}).status_code == 200

    diverted = client.put(f"/api/v1/protected-persons/{victim.id}", headers=auth_header(setter),
                          json={**protection, "contact_phones": ["010-9999-0000"]})
    assert diverted.status_code == 403 and diverted.content_type == PROBLEM
    assert client.delete(f"/api/v1/protected-persons/{victim.id}", headers=auth_header(setter)).status_code == 403
    assert client.put(f"/api/v1/protected-persons/{victim.id}", headers=auth_header(colleague),
                      json={**protection, "note": "관악이 계속 맡음"}).status_code == 200


def test_a_suspended_operator_lets_go_of_the_incidents_they_took_and_the_district_is_alerted_again(client, db):
    admin = create_user(db.session, role="admin")
    leaving = on_duty(db, create_user(db.session, role="operator", name="떠나는"))
    staying = on_duty(db, create_user(db.session, role="operator", name="남는"))
    db.session.add(PushDevice(user_id=staying.id, token="staying-operator", platform="android"))
    db.session.commit()
    citizen = create_user(db.session)
    taken = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(citizen)).json["incident"]["id"]
    sent = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(create_user(db.session))).json
    for incident_id in (taken, sent["incident"]["id"]):
        assert client.post(f"/api/v1/incidents/{incident_id}/ack", headers=auth_header(leaving)).status_code == 200
    assert client.post(f"/api/v1/incidents/{sent['incident']['id']}/dispatch", headers=auth_header(leaving),
                       json={"agency": "police", "note": None}).status_code == 200

    assert admin_post(client, admin, f"{leaving.id}/suspend", {"reason": "퇴사"}).status_code == 200

    released = db.session.get(Incident, taken)
    assert (released.status, released.acknowledged_by) == ("open", None)
    kinds = db.session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == released.id)
                               .order_by(IncidentEvent.id)).all()
    assert kinds == ["created", "acknowledged", "released"]
    alerts = db.session.scalars(select(Delivery.reason).where(Delivery.subject == f"incident:{taken}",
                                                              Delivery.token == "staying-operator")).all()
    assert sorted(alerts) == ["staff.created", "staff.released"]
    timers = db.session.scalars(select(Job.dedupe_key).where(Job.kind == "incident.escalate",
                                                              Job.dedupe_key.like(f"escalate:{taken}%"))).all()
    assert len(timers) == 2  # the first one's and a new one from the release
    assert db.session.get(Incident, sent["incident"]["id"]).status == "dispatched"  # help is on its way: kept
    assert client.post(f"/api/v1/incidents/{taken}/ack", headers=auth_header(staying)).status_code == 200


def test_a_moved_operator_gets_no_push_planned_for_the_old_district(client, db):
    admin = create_user(db.session, role="admin")
    operator = on_duty(db, create_user(db.session, role="operator"))
    db.session.add(PushDevice(user_id=operator.id, token="moving-phone", platform="android"))
    db.session.commit()
    assert client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(create_user(db.session))).status_code == 201
    assert client.patch(f"/api/v1/admin/users/{operator.id}", headers=auth_header(admin),
                        json={"district": "11680", "reason": "발령"}).status_code == 200
    assert db.session.scalars(select(Delivery.status).where(Delivery.token == "moving-phone")).all() == ["withdrawn"]


def test_a_sign_in_or_a_device_begun_just_before_a_suspension_does_not_outlive_it(client, db):
    """A login or a device registration that passed its checks just before the suspension committed is refused
    when it writes (it holds the person's row FOR SHARE, which the suspension's lock excludes)."""
    from datetime import datetime, timezone

    from safety_api.errors import Forbidden
    from safety_api.services import devices
    admin = create_user(db.session, role="admin")
    operator = create_user(db.session, role="operator")
    stale = db.session.get(User, operator.id)
    assert admin_post(client, admin, f"{operator.id}/suspend", {"reason": "퇴사"}).status_code == 200
    with pytest.raises(Forbidden):
        accounts.remember_refresh_token(db.session, user=stale, jti="late-login",
                                        expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(Unauthorized):
        devices.register_device(db.session, user=stale, token="late-device", platform="android")
    db.session.rollback()
    assert admin_post(client, admin, f"{operator.id}/reinstate", {"reason": "복직"}).status_code == 200
    assert db.session.scalars(select(PushDevice)).all() == []
    assert db.session.execute(text("SELECT count(*) FROM refresh_tokens")).scalar() == 0


def test_a_scout_moved_mid_escort_still_walks_it_and_the_meeting_that_has_come_keeps_its_pair(app, client, db):
    admin = create_user(db.session, role="admin")
    moving, partner = scout(db, name="전보"), scout(db, name="남는")
    walking = make_booking(app, db, meet_at=utcnow() + timedelta(minutes=25))  # after meeting_now's walk, and near
    meeting_now = make_booking(app, db, meet_at=utcnow() - timedelta(minutes=1))  # the pair is there now
    for person in (moving, partner):
        assert post(client, person, walking.id, "accept").status_code == 200
        escort.accept(db.session, scout=person, booking_id=meeting_now.id,  # accepted before the meeting time
                      now=meeting_now.meet_at - timedelta(minutes=20))
    operator = create_user(db.session, role="operator")
    assert post(client, operator, walking.id, "start").status_code == 200
    stale = db.session.get(User, moving.id)

    assert client.patch(f"/api/v1/admin/users/{moving.id}", headers=auth_header(admin),
                        json={"district": "11680", "reason": "발령"}).status_code == 200

    assert client.get(f"/api/v1/escort/bookings/{walking.id}", headers=auth_header(moving)).status_code == 200
    assert post(client, moving, walking.id, "complete").status_code == 200
    db.session.expire_all()
    kept = db.session.get(EscortBooking, meeting_now.id)
    assert kept.status == "confirmed" and {a.scout_id for a in kept.assignments} == {moving.id, partner.id}
    later = make_booking(app, db, meet_at=utcnow() + timedelta(hours=9))
    from safety_api.errors import Forbidden
    with pytest.raises(Forbidden):  # an accept that loaded the scout before the move is judged as they are now
        escort.accept(db.session, scout=stale, booking_id=later.id)


def test_an_acknowledgement_that_passed_its_gate_before_a_suspension_or_move_is_refused(client, db):
    """The acknowledgement holds the operator's row FOR SHARE and reads them as they are now: an alarm is never
    left taken by someone suspended or moved away."""
    from safety_api.errors import Forbidden
    from safety_api.services import incidents
    admin = create_user(db.session, role="admin")
    suspended, moved = create_user(db.session, role="operator"), create_user(db.session, role="operator")
    stale = {person.id: db.session.get(User, person.id) for person in (suspended, moved)}
    alarm = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(create_user(db.session))).json
    assert admin_post(client, admin, f"{suspended.id}/suspend", {"reason": "퇴사"}).status_code == 200
    assert client.patch(f"/api/v1/admin/users/{moved.id}", headers=auth_header(admin),
                        json={"district": "11680", "reason": "발령"}).status_code == 200
    for person in (suspended, moved):
        with pytest.raises(Forbidden):
            incidents.acknowledge(db.session, user=stale[person.id], incident_id=alarm["incident"]["id"])
    assert db.session.get(Incident, alarm["incident"]["id"]).status == "open"


@pytest.mark.parametrize("role", ["operator", "scout", "admin"])
def test_staff_cannot_delete_their_own_account_and_its_record_stays(client, db, role):
    """Deleting would take the account's audit trail with it and leave its acts in others' trails by no one (read
    as the command line's): staff accounts are suspended by an admin instead."""
    admin = create_user(db.session, role="admin")
    person = accounts.create_staff(db.session, phone=next_phone(), password=PASSWORD, name="탈퇴 시도", role=role,
                                   district=None if role == "admin" else GWANAK, actor=admin)
    alarm = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(create_user(db.session))).json
    assert client.post(f"/api/v1/incidents/{alarm['incident']['id']}/ack",
                       headers=auth_header(admin)).status_code == 200

    for holder in (person, admin):
        refused = client.delete("/api/v1/me", headers=auth_header(holder), json={"password": PASSWORD})
        assert refused.status_code == 409 and refused.content_type == PROBLEM
        assert "administrator" in refused.json["detail"]

    db.session.expire_all()
    assert db.session.get(User, person.id) is not None
    assert [(e.kind, e.actor_id) for e in db.session.scalars(select(AccountEvent).where(
        AccountEvent.user_id == person.id))] == [("created", admin.id)]
    assert db.session.scalar(select(IncidentEvent.actor_id).where(IncidentEvent.kind == "acknowledged")) == admin.id
    assert client.get("/api/v1/me", headers=auth_header(person)).status_code == 200


def test_an_expired_sign_in_ends_its_access_tokens_too(client, db):
    operator = create_user(db.session, role="operator")
    console = sign_in(client, operator)
    db.session.execute(text("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'"))
    db.session.commit()
    refused = client.get("/api/v1/me", headers=console["access"])
    assert refused.status_code == 401 and refused.content_type == PROBLEM


def test_an_offer_queued_before_a_scout_left_the_shift_or_the_district_does_not_reach_them(app, client, db):
    """Where a citizen will wait at night goes only to the district's scouts on shift as the push is sent, not
    as it was planned."""
    from safety_api.worker_jobs import HANDLERS
    admin = create_user(db.session, role="admin")
    moved, off_duty, staying = scout(db, name="전보"), scout(db, name="퇴근"), scout(db, name="근무 중")
    for person in (moved, off_duty, staying):
        db.session.add(PushDevice(user_id=person.id, token=f"phone-of-{person.name}", platform="android"))
    db.session.commit()
    booking = make_booking(app, db)
    offer = db.session.scalars(select(Job).where(Job.kind == "push.user")).one()
    assert set(offer.payload["user_ids"]) == {str(moved.id), str(off_duty.id), str(staying.id)}

    assert client.patch(f"/api/v1/admin/users/{moved.id}", headers=auth_header(admin),
                        json={"district": "11680", "reason": "발령"}).status_code == 200
    assert client.put("/api/v1/me/duty", headers=auth_header(off_duty), json={"on_duty": False}).status_code == 200
    HANDLERS["push.user"](db.session, offer.payload, None)
    db.session.commit()
    sent_to = db.session.scalars(select(Delivery.token).where(Delivery.subject == f"escort:{booking.id}")).all()
    assert sent_to == ["phone-of-근무 중"]

    # Expanded but not yet sent (waiting, or for a retry): withdrawn when that scout, too, leaves the shift.
    assert client.put("/api/v1/me/duty", headers=auth_header(staying), json={"on_duty": False}).status_code == 200
    assert db.session.scalars(select(Delivery.status).where(Delivery.subject == f"escort:{booking.id}")).all() == [
        "withdrawn"]


def test_the_deployment_suspends_and_reinstates_an_admin_from_the_command_line(app, client, db):
    """The only admin's account is compromised: the people who run the service suspend it from the command line
    (no admin can suspend their own account through the API), and reinstate it once it is safe again."""
    admin = create_user(db.session, role="admin", phone="01077778888")
    console = sign_in(client, admin)
    runner = app.test_cli_runner()
    done = runner.invoke(args=["staff", "suspend", "--phone", "010-7777-8888", "--reason", "계정 탈취 의심"])
    assert done.exit_code == 0, done.output
    assert client.get("/api/v1/me", headers=console["access"]).status_code == 401
    trail = db.session.scalars(select(AccountEvent).where(AccountEvent.user_id == admin.id)
                               .order_by(AccountEvent.id)).all()
    assert [(e.kind, e.actor_id) for e in trail] == [("created", None), ("suspended", None)]
    again = runner.invoke(args=["staff", "suspend", "--phone", "01077778888", "--reason", "다시"])
    assert again.exit_code == 0 and "already" in again.output
    for arguments in (["--phone", "010-0000-0001", "--reason", "x"], ["--phone", "not-a-phone", "--reason", "x"],
                      ["--phone", "01077778888", "--reason", " "]):
        refused = runner.invoke(args=["staff", "reinstate", *arguments])
        assert refused.exit_code != 0 and "Error" in refused.output
    assert runner.invoke(args=["staff", "reinstate", "--phone", "01077778888", "--reason", "복구"]).exit_code == 0
    assert client.post("/api/v1/auth/login", json={"phone": "01077778888", "password": PASSWORD}).status_code == 200


def test_an_offer_expanded_just_before_its_scout_was_suspended_is_not_sent(app, db):
    """The suspension did not see the offer (expanded in a transaction not yet committed, or put back to
    `pending` by a retry after it): the worker asks again as it sends."""
    from safety_api.services import deliveries
    from safety_api.worker_jobs import HANDLERS
    suspended = scout(db, name="정지")
    db.session.add(PushDevice(user_id=suspended.id, token="phone-of-정지", platform="android"))
    db.session.commit()
    make_booking(app, db)
    offer = db.session.scalars(select(Job).where(Job.kind == "push.user")).one()
    HANDLERS["push.user"](db.session, offer.payload, None)
    db.session.commit()
    db.session.execute(text("UPDATE users SET suspended_at = now() WHERE id = :id"), {"id": suspended.id})
    db.session.commit()
    planned = db.session.scalars(select(Delivery).where(Delivery.token == "phone-of-정지")).one()

    class Refuse:
        def send(self, _messages):
            raise AssertionError("sent to a suspended scout")

    deliveries.deliver(db.session, delivery_id=planned.id, sender=Refuse())
    db.session.commit()
    assert db.session.get(Delivery, planned.id).status == "withdrawn"


def set_password(client, admin, user_id, body):
    return client.put(f"/api/v1/admin/users/{user_id}/password", headers=auth_header(admin), json=body)


def test_an_admin_sets_a_staff_password_and_every_sign_in_shift_and_taken_incident_is_let_go(client, db):
    """An operator forgot their password, or it is thought leaked: whoever holds the old one is out everywhere,
    and the incidents the operator took go back to the district, since no console of theirs is signed in."""
    admin = create_user(db.session, role="admin")
    operator = on_duty(db, create_user(db.session, role="operator", name="잊은 관제요원"))
    console = sign_in(client, operator)
    assert client.post("/api/v1/devices", headers=console["access"],
                       json={"token": "forgetful-console", "platform": "android"}).status_code == 201
    taken = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(create_user(db.session))).json
    assert client.post(f"/api/v1/incidents/{taken['incident']['id']}/ack",
                       headers=console["access"]).status_code == 200

    answer = set_password(client, admin, operator.id, {"password": "brand-new-pass-1", "reason": "비밀번호 분실"})
    assert answer.status_code == 200, answer.json
    assert answer.json["user"]["on_duty"] is False and answer.json["user"]["suspended_at"] is None

    assert client.get("/api/v1/me", headers=console["access"]).status_code == 401
    assert client.post("/api/v1/auth/refresh", headers=console["refresh"]).status_code == 401
    assert db.session.scalars(select(PushDevice)).all() == []
    assert db.session.get(Incident, taken["incident"]["id"]).status == "open"
    assert client.post("/api/v1/auth/login", json={"phone": operator.phone, "password": PASSWORD}).status_code == 401
    assert client.post("/api/v1/auth/login",
                       json={"phone": operator.phone, "password": "brand-new-pass-1"}).status_code == 200
    trail = db.session.scalars(select(AccountEvent).where(AccountEvent.user_id == operator.id)
                               .order_by(AccountEvent.id)).all()
    assert [(e.kind, e.actor_id, e.data) for e in trail][-1] == ("password_set", admin.id, {"reason": "비밀번호 분실"})


def test_a_staff_member_changing_their_own_password_is_in_their_trail(client, db):
    operator = create_user(db.session, role="operator")
    answer = client.put("/api/v1/me/password", headers=auth_header(operator),
                        json={"password": PASSWORD, "new_password": "brand-new-pass-1"})
    assert answer.status_code == 204
    trail = db.session.scalars(select(AccountEvent).where(AccountEvent.user_id == operator.id)
                               .order_by(AccountEvent.id)).all()
    assert [(e.kind, e.actor_id) for e in trail] == [("created", None), ("password_changed", operator.id)]


@pytest.mark.parametrize("target, body, status, field", [
    ("self", {"password": "brand-new-pass-1", "reason": "분실"}, 409, None),
    ("citizen", {"password": "brand-new-pass-1", "reason": "분실"}, 404, None),
    ("operator", {"password": "short", "reason": "분실"}, 422, "password"),
    ("operator", {"password": "brand-new-pass-1", "reason": "  "}, 422, "reason"),
    ("operator", {"password": "brand-new-pass-1"}, 422, "reason"),
])
def test_setting_a_password_names_what_is_wrong(client, db, target, body, status, field):
    admin = create_user(db.session, role="admin")
    people = {"self": admin, "citizen": create_user(db.session), "operator": create_user(db.session, role="operator")}
    answer = set_password(client, admin, people[target].id, body)
    assert answer.status_code == status and answer.content_type == PROBLEM
    if field:
        assert [e["field"] for e in answer.json["errors"]] == [field]
    assert client.post("/api/v1/auth/login", json={"phone": people[target].phone, "password": PASSWORD}
                       ).status_code == 200  # nothing changed


def test_the_first_admin_is_created_with_a_password_asked_for_and_checked_as_the_api_does(app, client, db):
    runner = app.test_cli_runner()
    short = runner.invoke(args=["create-admin", "--phone", "010-7777-8888", "--password", "a"])
    assert short.exit_code != 0 and "8 to 128" in short.output
    assert db.session.scalar(select(User).where(User.phone == "01077778888")) is None
    done = runner.invoke(args=["create-admin", "--phone", "010-7777-8888"],
                         input="first-admin-pass\nfirst-admin-pass\n")
    assert done.exit_code == 0, done.output
    assert "first-admin-pass" not in done.output
    assert client.post("/api/v1/auth/login",
                       json={"phone": "01077778888", "password": "first-admin-pass"}).json["user"]["role"] == "admin"


def test_the_deployment_sets_the_only_admins_forgotten_password_from_the_command_line(app, client, db):
    admin = create_user(db.session, role="admin", phone="01077779999")
    console = sign_in(client, admin)
    runner = app.test_cli_runner()
    short = runner.invoke(args=["staff", "set-password", "--phone", "01077779999", "--reason", "분실",
                                "--password", "short"])
    assert short.exit_code != 0 and "8 to 128" in short.output
    done = runner.invoke(args=["staff", "set-password", "--phone", "010-7777-9999", "--reason", "분실"],
                         input="brand-new-pass-1\nbrand-new-pass-1\n")
    assert done.exit_code == 0, done.output
    assert "brand-new-pass-1" not in done.output
    assert client.get("/api/v1/me", headers=console["access"]).status_code == 401
    assert client.post("/api/v1/auth/login",
                       json={"phone": "01077779999", "password": "brand-new-pass-1"}).status_code == 200
    trail = db.session.scalars(select(AccountEvent).where(AccountEvent.user_id == admin.id)
                               .order_by(AccountEvent.id)).all()
    assert [(e.kind, e.actor_id) for e in trail][-1] == ("password_set", None)


def test_an_operator_going_off_shift_lets_go_of_the_incidents_they_took(client, db):
    """Shown as taken, nobody else would take it: off shift, it is open again for the district, pushed to who is
    on shift, with a new escalation timer. What they dispatched keeps its state."""
    leaving = on_duty(db, create_user(db.session, role="operator", name="퇴근"))
    staying = on_duty(db, create_user(db.session, role="operator", name="근무"))
    db.session.add(PushDevice(user_id=staying.id, token="staying-operator", platform="android"))
    db.session.commit()
    taken = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(create_user(db.session))).json
    taken_id = taken["incident"]["id"]
    assert client.post(f"/api/v1/incidents/{taken_id}/ack", headers=auth_header(leaving)).status_code == 200

    assert client.put("/api/v1/me/duty", json={"on_duty": False}, headers=auth_header(leaving)).status_code == 200

    released = db.session.get(Incident, taken_id)
    assert (released.status, released.acknowledged_by) == ("open", None)
    alerts = db.session.scalars(select(Delivery.reason).where(Delivery.subject == f"incident:{taken_id}",
                                                              Delivery.token == "staying-operator")).all()
    assert sorted(alerts) == ["staff.created", "staff.released"]


def sos_taken_by(client, db, console) -> str:
    """A citizen's SOS, acknowledged with the console's access token; its id."""
    taken_id = client.post("/api/v1/sos", json=IN_GWANAK,
                           headers=auth_header(create_user(db.session))).json["incident"]["id"]
    assert client.post(f"/api/v1/incidents/{taken_id}/ack", headers=console["access"]).status_code == 200
    return taken_id


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_staff_signing_out_everywhere_leave_the_shift_and_what_they_took(client, db, role):
    """Admins acknowledge incidents too, and let go of theirs alike."""
    person = on_duty(db, create_user(db.session, role=role))
    console = sign_in(client, person)
    taken_id = sos_taken_by(client, db, console)
    assert client.post("/api/v1/auth/logout-all", headers=console["access"]).status_code == 204
    db.session.expire_all()
    assert db.session.get(User, person.id).on_duty is False
    assert (db.session.get(Incident, taken_id).status, db.session.get(Incident, taken_id).acknowledged_by) == (
        "open", None)


def test_staff_signing_out_of_their_last_sign_in_leave_the_shift_and_what_they_took(client, db):
    """The console's sign-out is `logout`: with no sign-in left the operator receives nothing, and must not count
    as on shift (an SOS in the district would wait its full escalation time) nor hold what they took."""
    operator = on_duty(db, create_user(db.session, role="operator"))
    console, phone = sign_in(client, operator), sign_in(client, operator)
    taken_id = sos_taken_by(client, db, console)
    assert client.post("/api/v1/auth/logout", headers=phone["refresh"]).status_code == 204
    db.session.expire_all()
    assert db.session.get(User, operator.id).on_duty is True  # the console is still signed in
    assert db.session.get(Incident, taken_id).status == "acknowledged"
    assert client.post("/api/v1/auth/logout", headers=console["refresh"]).status_code == 204
    db.session.expire_all()
    assert db.session.get(User, operator.id).on_duty is False
    assert db.session.get(Incident, taken_id).status == "open"
    next_id = client.post("/api/v1/sos", json=IN_GWANAK,
                          headers=auth_header(create_user(db.session))).json["incident"]["id"]
    timer = db.session.scalar(select(Job).where(Job.dedupe_key == f"escalate:{next_id}"))
    assert timer.payload["reason"] == incidents.NOBODY_ON_SHIFT


def test_a_dispatch_or_resolve_that_passed_its_gate_before_a_suspension_or_move_is_refused(client, db):
    """As for an acknowledgement: no incident is dispatched (and so never released) or closed by someone
    who can no longer act on the district's incidents."""
    from safety_api.errors import Forbidden
    from safety_api.services import incidents
    admin = create_user(db.session, role="admin")
    suspended, moved = create_user(db.session, role="operator"), create_user(db.session, role="operator")
    alarm = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(create_user(db.session))).json
    stale = {person.id: db.session.get(User, person.id) for person in (suspended, moved)}
    for person in stale.values():
        db.session.expunge(person)  # as the request's gate read them, before what follows
    assert admin_post(client, admin, f"{suspended.id}/suspend", {"reason": "퇴사"}).status_code == 200
    assert client.patch(f"/api/v1/admin/users/{moved.id}", headers=auth_header(admin),
                        json={"district": "11680", "reason": "발령"}).status_code == 200
    for person in stale.values():
        with pytest.raises(Forbidden):
            incidents.dispatch(db.session, user=person, incident_id=alarm["incident"]["id"], agency="경찰", note=None)
        with pytest.raises(Forbidden):
            incidents.resolve(db.session, user=person, incident_id=alarm["incident"]["id"], outcome="false_alarm",
                              note=None)
    assert db.session.get(Incident, alarm["incident"]["id"]).status == "open"
