"""Escort booking on the real database: meeting points, rules, the pair, lifecycle, timers, roles, positions."""
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from safety_api.clock import SEOUL, utcnow
from safety_api.errors import Conflict, Forbidden
from safety_api.models import Delivery, EscortBooking, EscortEvent, Job, MeetingPoint, PushDevice, User
from safety_api.realtime.positions import batcher
from safety_api.services import escort, escort_live, escort_reads
from safety_api.services.escort_rules import policy_from_config
from safety_api.worker_jobs import HANDLERS
from tests import conftest
from tests.factories import PASSWORD, auth_header, create_user

PROBLEM = "application/problem+json"
SEOWON = "osm:node/357900646"  # the 서원역 bus stop in the OSM extract
NEAR_SEOWON = {"lat": 37.4752, "lon": 126.9301}  # about 400 m away
OPEN = {"ESCORT_SERVICE_HOURS": "Mon-Sun 00:00-24:00", "ESCORT_MIN_LEAD_MINUTES": 0, "ESCORT_SAME_DAY_ONLY": False}


@pytest.fixture
def open_service(app, monkeypatch):
    """Service open at every hour, no lead time: a test may run at any time of day."""
    monkeypatch.setitem(app.config, "ESCORT_POLICY", open_policy(app))


def open_policy(app, **config):
    """The policy the app would parse at start from these ESCORT_* settings, over the open service."""
    return policy_from_config({**app.config, **OPEN, **config})


def meeting_point(db, source_id=SEOWON) -> MeetingPoint:
    return db.session.scalar(select(MeetingPoint).where(MeetingPoint.source_id == source_id))


def scout(db, *, district=None, on_duty=True, name="스카우트"):
    user = create_user(db.session, role="scout", district=district, name=name)
    user.on_duty = on_duty
    db.session.commit()
    return user


def at(minutes: float) -> str:
    return (utcnow() + timedelta(minutes=minutes)).astimezone(SEOUL).isoformat()


def book(client, citizen, point, *, minutes=60, to=NEAR_SEOWON):
    return client.post("/api/v1/escort/bookings", headers=auth_header(citizen),
                       json={"meeting_point_id": str(point.id), "meet_at": at(minutes), "to": to})


def make_booking(app, db, *, citizen=None, meet_at=None, point=None, ahead=timedelta(minutes=5)) -> EscortBooking:
    """A booking through the service, at any time, bypassing the hours (for timers and races); made `ahead` of
    its meeting."""
    meet_at = meet_at or utcnow() + timedelta(hours=1)
    return escort.create_booking(db.session, citizen=citizen or create_user(db.session), policy=open_policy(app),
                                 meeting_point_id=(point or meeting_point(db)).id, meet_at=meet_at, to=NEAR_SEOWON,
                                 now=meet_at - ahead)


def post(client, user, booking_id, action):
    return client.post(f"/api/v1/escort/bookings/{booking_id}/{action}", headers=auth_header(user))


def event_kinds(db, booking_id):
    return db.session.scalars(select(EscortEvent.kind).where(EscortEvent.booking_id == booking_id)
                              .order_by(EscortEvent.id)).all()


def push_jobs(db):
    return [j.payload for j in db.session.scalars(select(Job).where(Job.kind == "push.user").order_by(Job.id))]


def confirmed(client, app, db, **kw):
    booking = make_booking(app, db, **kw)
    pair = [scout(db, name="첫째"), scout(db, name="둘째")]
    for s in pair:
        assert post(client, s, booking.id, "accept").status_code == 200
    return booking, pair


# --- meeting points ---------------------------------------------------------------------------------

def test_meeting_points_are_gwanaks_bus_stops_nearest_first(client, db):
    seowon = meeting_point(db)
    answer = client.get("/api/v1/escort/meeting-points?lat=37.4780091&lon=126.9323984&limit=50",
                        headers=auth_header(create_user(db.session)))
    items = answer.json["items"]
    assert answer.status_code == 200 and len(items) == 17
    assert items[0]["id"] == str(seowon.id) and items[0]["distance_m"] < 1
    assert [i["distance_m"] for i in items] == sorted(i["distance_m"] for i in items)
    assert {i["kind"] for i in items} == {"bus_stop"} and {i["district"] for i in items} == {"11620"}
    assert items[0]["location"] == {"type": "Point", "coordinates": [pytest.approx(126.9323984),
                                                                     pytest.approx(37.4780091)]}


def test_meeting_points_without_a_position_come_by_name_and_half_a_position_is_refused(client, db):
    headers = auth_header(create_user(db.session))
    names = [i["name"] for i in client.get("/api/v1/escort/meeting-points?limit=50", headers=headers).json["items"]]
    assert names == sorted(names) and len(names) == 17
    half = client.get("/api/v1/escort/meeting-points?lat=37.47", headers=headers)
    assert half.status_code == 422 and half.content_type == PROBLEM


@pytest.fixture
def added_points(db):
    """Meeting points are reference data kept between tests: remove the ones a test adds."""
    yield
    db.session.rollback()
    db.session.execute(delete(MeetingPoint).where(MeetingPoint.source_id.is_(None)))
    db.session.commit()


def test_admins_add_and_retire_meeting_points(client, db, added_points):
    admin = create_user(db.session, role="admin")
    made = client.post("/api/v1/escort/meeting-points", headers=auth_header(admin), json={
        "name": "신림역 3번 출구", "kind": "station", "location": {"lat": 37.4842, "lon": 126.9297}})
    assert made.status_code == 201 and made.json["district"] == "11620"
    retired = client.patch(f"/api/v1/escort/meeting-points/{made.json['id']}", headers=auth_header(admin),
                           json={"active": False})
    assert retired.status_code == 200 and retired.json["active"] is False
    listed = client.get("/api/v1/escort/meeting-points?limit=50", headers=auth_header(admin)).json["items"]
    assert made.json["id"] not in [i["id"] for i in listed]


@pytest.mark.parametrize("role", ["citizen", "operator", "scout"])
def test_only_admins_manage_meeting_points(client, db, role):
    answer = client.post("/api/v1/escort/meeting-points", headers=auth_header(create_user(db.session, role=role)),
                         json={"name": "x", "kind": "station", "location": {"lat": 37.4842, "lon": 126.9297}})
    assert answer.status_code == 403 and answer.content_type == PROBLEM


def test_a_meeting_point_outside_the_served_area_is_422(client, db, added_points):
    answer = client.post("/api/v1/escort/meeting-points", headers=auth_header(create_user(db.session, role="admin")),
                         json={"name": "부산역", "kind": "station", "location": {"lat": 35.1151, "lon": 129.0415}})
    assert answer.status_code == 422 and answer.json["errors"][0]["field"] == "location"


# --- booking ----------------------------------------------------------------------------------------

def test_a_booking_is_offered_to_the_districts_on_duty_scouts(client, db, open_service, emitted):
    on_duty = [scout(db), scout(db)]
    scout(db, on_duty=False)
    scout(db, district="11680")  # 강남구, on duty
    citizen = create_user(db.session)
    answer = book(client, citizen, meeting_point(db))
    assert answer.status_code == 201
    body = answer.json
    assert body["status"] == "requested" and body["scouts"] == [] and body["district"] == "11620"
    assert body["route"]["geometry"]["type"] == "LineString" and body["route"]["properties"]["duration_s"] > 0
    assert datetime.fromisoformat(body["ends_at"]) > datetime.fromisoformat(body["meet_at"])
    offered = {room for ns, room, event, _ in emitted if event == "escort.offered"}
    assert offered == {f"user:{s.id}" for s in on_duty}
    assert push_jobs(db)[0]["user_ids"] == sorted(str(s.id) for s in on_duty)
    timers = db.session.scalars(select(Job.kind).where(Job.kind.like("escort.%"))).all()
    assert sorted(timers) == ["escort.late", "escort.reminder", "escort.unconfirmed"]
    assert event_kinds(db, body["id"]) == ["requested"]


def next_saturday_night() -> str:
    now = utcnow().astimezone(SEOUL)
    days = (5 - now.weekday()) % 7 or 7
    return (now + timedelta(days=days)).replace(hour=22, minute=30, second=0, microsecond=0).isoformat()


def test_the_real_rules_refuse_a_saturday_night(client, db):
    answer = client.post("/api/v1/escort/bookings", headers=auth_header(create_user(db.session)), json={
        "meeting_point_id": str(meeting_point(db).id), "meet_at": next_saturday_night(), "to": NEAR_SEOWON})
    assert answer.status_code == 422 and answer.content_type == PROBLEM
    assert answer.json["type"].endswith("/escort-service-hours") and "Tue-Fri 22:00-01:00" in answer.json["detail"]


@pytest.mark.parametrize("config, minutes, rule", [
    ({"ESCORT_SERVICE_HOURS": ""}, 60, "service-hours"),
    ({"ESCORT_MIN_LEAD_MINUTES": 30}, 10, "lead-time"),
    ({"ESCORT_MIN_LEAD_MINUTES": 0}, -5, "lead-time"),
    ({"ESCORT_SAME_DAY_ONLY": True}, 3 * 24 * 60, "same-day"),
])
def test_a_booking_outside_the_rules_is_422_naming_the_rule(client, db, app, open_service, monkeypatch,
                                                             config, minutes, rule):
    monkeypatch.setitem(app.config, "ESCORT_POLICY", open_policy(app, **config))
    answer = book(client, create_user(db.session), meeting_point(db), minutes=minutes)
    assert answer.status_code == 422 and answer.json["type"].endswith(f"/escort-{rule}")
    assert answer.json["errors"] == [{"field": "meet_at", "message": answer.json["detail"]}]


@pytest.mark.parametrize("variable, value, told", [
    ("ESCORT_SERVICE_HOURS", "Mon 22:00", "ESCORT_SERVICE_HOURS: Cannot read service hours 'Mon 22:00'"),
    ("ESCORT_SERVICE_HOURS_11620", "Mon-Fri 25:00-26:00", "ESCORT_SERVICE_HOURS_11620: '25:00' in 'Mon-Fri 25:00"),
    ("ESCORT_SERVICE_HOURS_GWANAK", "Mon 22:00-24:00", "ESCORT_SERVICE_HOURS_GWANAK: 'GWANAK' is not a district"),
])
def test_unreadable_service_hours_stop_the_app_at_start_naming_the_variable(monkeypatch, variable, value, told):
    """Parsed once, at start: a malformed district override made every booking a 500 instead."""
    from safety_api import create_app
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as refused:
        create_app(conftest.test_config())
    assert str(refused.value).startswith(told)


def test_a_districts_own_hours_are_parsed_at_start(monkeypatch):
    monkeypatch.setenv("ESCORT_SERVICE_HOURS_11620", "Mon-Sun 21:00-01:00")
    with conftest.another_app() as other:
        policy = other.config["ESCORT_POLICY"]
    assert policy.hours_in("11620").spec == "Mon-Sun 21:00-01:00" and len(policy.hours_in("11620").windows) == 7
    assert policy.hours_in("11680") is policy.hours


@pytest.mark.parametrize("body, field", [
    ({"meet_at": "2026-11-24T22:30:00"}, "meet_at"),  # no offset
    ({"to": {"lat": 37.47}}, "to.lon"),
    ({"meeting_point_id": "not-an-id"}, "meeting_point_id"),
])
def test_bad_booking_bodies_name_the_field(client, db, open_service, body, field):
    full = {"meeting_point_id": str(meeting_point(db).id), "meet_at": at(60), "to": NEAR_SEOWON, **body}
    answer = client.post("/api/v1/escort/bookings", headers=auth_header(create_user(db.session)), json=full)
    assert answer.status_code == 422 and field in [e["field"] for e in answer.json["errors"]]


def test_a_meeting_time_at_the_end_of_the_calendar_is_422_not_500(client, db, open_service):
    answer = client.post("/api/v1/escort/bookings", headers=auth_header(create_user(db.session)), json={
        "meeting_point_id": str(meeting_point(db).id), "meet_at": "9999-12-31T23:59:00+09:00", "to": NEAR_SEOWON})
    assert answer.status_code == 422 and answer.json["type"].endswith("/escort-advance")


def test_a_destination_beyond_walking_range_is_422(client, db, open_service):
    answer = book(client, create_user(db.session), meeting_point(db), to={"lat": 37.5547, "lon": 126.9707})
    assert answer.status_code == 422 and answer.json["errors"][0]["field"] == "to"


def test_a_citizen_cannot_hold_two_overlapping_bookings(client, db, open_service):
    citizen = create_user(db.session)
    assert book(client, citizen, meeting_point(db), minutes=60).status_code == 201
    again = book(client, citizen, meeting_point(db), minutes=70)
    assert again.status_code == 409 and again.content_type == PROBLEM
    assert book(client, citizen, meeting_point(db), minutes=300).status_code == 201


def test_a_retried_booking_with_its_idempotency_key_gets_the_same_booking(client, db, open_service):
    """A phone that timed out and retried was answered 409 by the citizen's own overlap rule."""
    citizen, point = create_user(db.session), meeting_point(db)
    body = {"meeting_point_id": str(point.id), "meet_at": at(60), "to": NEAR_SEOWON}
    headers = {**auth_header(citizen), "Idempotency-Key": "booking-1"}
    first = client.post("/api/v1/escort/bookings", headers=headers, json=body)
    again = client.post("/api/v1/escort/bookings", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (201, 200) and again.json == first.json
    assert db.session.scalars(select(EscortBooking.id)).all() == [uuid.UUID(first.json["id"])]
    assert [p["data"]["event"] for p in push_jobs(db)] == []  # no scout on duty: no offer, and no second one
    other = client.post("/api/v1/escort/bookings", json=body,
                        headers={**auth_header(create_user(db.session)), "Idempotency-Key": "booking-1"})
    assert other.status_code == 201 and other.json["id"] != first.json["id"]  # a key is its citizen's own


def test_an_idempotency_key_sent_with_another_booking_is_422(client, db, open_service):
    headers = {**auth_header(create_user(db.session)), "Idempotency-Key": "booking-1"}
    body = {"meeting_point_id": str(meeting_point(db).id), "meet_at": at(60), "to": NEAR_SEOWON}
    assert client.post("/api/v1/escort/bookings", headers=headers, json=body).status_code == 201
    for changed in ({"meet_at": at(300)}, {"to": {"lat": 37.4753, "lon": 126.9301}}):
        answer = client.post("/api/v1/escort/bookings", headers=headers, json={**body, **changed})
        assert answer.status_code == 422 and answer.content_type == PROBLEM
        assert answer.json["type"].endswith("/idempotency-key-reused")
        assert answer.json["errors"][0]["field"] == "Idempotency-Key"
    bad = client.post("/api/v1/escort/bookings", headers={**headers, "Idempotency-Key": "x" * 129}, json=body)
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "Idempotency-Key"


# --- the pair -----------------------------------------------------------------------------------------

def test_two_scouts_confirm_a_booking_and_a_third_gets_409(client, app, db, emitted):
    citizen = create_user(db.session)
    booking = make_booking(app, db, citizen=citizen)
    first, second, third = scout(db), scout(db), scout(db)
    one = post(client, first, booking.id, "accept")
    assert one.status_code == 200 and one.json["status"] == "requested" and len(one.json["scouts"]) == 1
    two = post(client, second, booking.id, "accept")
    assert two.status_code == 200 and two.json["status"] == "confirmed"
    assert [s["slot"] for s in two.json["scouts"]] == [1, 2]
    late = post(client, third, booking.id, "accept")
    assert late.status_code == 409 and "two scouts" in late.json["detail"]
    assert post(client, first, booking.id, "accept").status_code == 200  # a retry changes nothing
    assert event_kinds(db, booking.id) == ["requested", "accepted", "accepted", "confirmed"]
    assert push_jobs(db)[-1]["user_ids"] == sorted(str(u.id) for u in (citizen, first, second))
    assert ("/mobile", f"user:{citizen.id}", "escort.updated") in [e[:3] for e in emitted]


def test_a_scout_busy_then_gets_409_and_is_free_again_after_a_cancel(client, app, db):
    base = utcnow() + timedelta(hours=1)
    walker = create_user(db.session)
    a = make_booking(app, db, citizen=walker, meet_at=base)
    b = make_booking(app, db, meet_at=base + timedelta(minutes=10))
    busy = scout(db)
    assert post(client, busy, a.id, "accept").status_code == 200
    refused = post(client, busy, b.id, "accept")
    assert refused.status_code == 409 and "overlapping" in refused.json["detail"]
    assert post(client, walker, a.id, "cancel").json["status"] == "cancelled"
    assert post(client, busy, b.id, "accept").status_code == 200


def test_an_off_duty_scout_cannot_accept_until_on_duty(client, app, db):
    booking = make_booking(app, db)
    resting = scout(db, on_duty=False)
    assert post(client, resting, booking.id, "accept").status_code == 409
    duty = client.put("/api/v1/escort/duty", headers=auth_header(resting), json={"on_duty": True})
    assert duty.status_code == 200 and duty.json == {"on_duty": True}
    assert post(client, resting, booking.id, "accept").status_code == 200


def test_offers_are_open_bookings_of_my_district_not_yet_mine(client, app, db):
    mine, open_one = make_booking(app, db), make_booking(app, db)
    me_scout, gangnam = scout(db), scout(db, district="11680")
    post(client, me_scout, mine.id, "accept")
    offers = client.get("/api/v1/escort/offers", headers=auth_header(me_scout)).json["items"]
    assert [o["id"] for o in offers] == [str(open_one.id)]
    assert client.get("/api/v1/escort/offers", headers=auth_header(gangnam)).json["items"] == []


def test_once_the_meeting_time_has_come_a_booking_is_no_longer_accepted_or_read_as_an_offer(client, app, db):
    citizen = create_user(db.session, name="홍길순")
    stale = make_booking(app, db, citizen=citizen, meet_at=utcnow() - timedelta(minutes=30))  # never got its pair
    latecomer = scout(db)
    refused = post(client, latecomer, stale.id, "accept")
    assert refused.status_code == 409 and refused.content_type == PROBLEM
    assert "time has passed" in refused.json["detail"]
    read = client.get(f"/api/v1/escort/bookings/{stale.id}", headers=auth_header(latecomer))
    assert read.status_code == 403 and "홍길순" not in read.get_data(as_text=True)
    assert client.get("/api/v1/escort/offers", headers=auth_header(latecomer)).json["items"] == []
    assert event_kinds(db, stale.id) == ["requested"] and db.session.get(EscortBooking, stale.id).assignments == []

    booking = make_booking(app, db)  # the bound is the meeting time itself
    with pytest.raises(Conflict):
        escort.accept(db.session, scout=latecomer, booking_id=booking.id, now=booking.meet_at)
    with pytest.raises(Forbidden):
        escort_reads.get_booking(db.session, user=latecomer, booking_id=booking.id, now=booking.meet_at)
    just_before = booking.meet_at - timedelta(seconds=1)
    assert escort_reads.get_booking(db.session, user=latecomer, booking_id=booking.id, now=just_before).id == booking.id
    taken = escort.accept(db.session, scout=latecomer, booking_id=booking.id, now=just_before)
    assert [a.scout_id for a in taken.assignments] == [latecomer.id]


HIDDEN_FROM_OFFERS = ("to", "route", "citizen", "events")  # where the citizen goes, and who they are


def test_an_offer_shows_where_and_when_to_meet_and_how_far_but_not_where_the_citizen_goes(client, app, db):
    citizen = create_user(db.session, name="홍길순")
    booking = make_booking(app, db, citizen=citizen)
    onlooker = scout(db)
    offers = client.get("/api/v1/escort/offers", headers=auth_header(onlooker))
    read = client.get(f"/api/v1/escort/bookings/{booking.id}", headers=auth_header(onlooker))
    for answer, offer in ((offers, offers.json["items"][0]), (read, read.json)):
        assert answer.status_code == 200 and offer["id"] == str(booking.id)
        assert [key for key in HIDDEN_FROM_OFFERS if key in offer] == []
        assert offer["meeting_point"]["id"] == str(booking.meeting_point_id) and offer["meet_at"] and offer["ends_at"]
        assert offer["distance_m"] > 0 and offer["duration_s"] > 0
        text = answer.get_data(as_text=True)
        assert "홍길순" not in text and str(citizen.id) not in text and str(NEAR_SEOWON["lat"]) not in text


def test_a_scout_sees_the_destination_once_holding_a_slot_and_not_after_a_cancellation(client, app, db):
    citizen = create_user(db.session, name="홍길순")
    booking = make_booking(app, db, citizen=citizen)
    member = scout(db)
    accepted = post(client, member, booking.id, "accept").json
    read = client.get(f"/api/v1/escort/bookings/{booking.id}", headers=auth_header(member)).json
    for view in (accepted, read):
        assert view["to"] == {"lat": pytest.approx(NEAR_SEOWON["lat"]), "lon": pytest.approx(NEAR_SEOWON["lon"])}
        assert view["citizen"] == {"id": str(citizen.id), "name": "홍길순"} and view["route"]["geometry"]
    post(client, citizen, booking.id, "cancel")  # releases the slot: the walk is no longer the scout's business
    mine = client.get("/api/v1/escort/bookings", headers=auth_header(member)).json["items"]
    released = client.get(f"/api/v1/escort/bookings/{booking.id}", headers=auth_header(member)).json
    for view in (mine[0], released):
        assert view["status"] == "cancelled" and [key for key in HIDDEN_FROM_OFFERS if key in view] == []


def test_off_duty_scouts_browse_no_offers(client, app, db):
    booking = make_booking(app, db)
    resting = scout(db, on_duty=False)
    url = f"/api/v1/escort/bookings/{booking.id}"
    for answer in (client.get("/api/v1/escort/offers", headers=auth_header(resting)),
                   client.get(url, headers=auth_header(resting))):
        assert answer.status_code == 409 and answer.content_type == PROBLEM and "on duty" in answer.json["detail"]
    client.put("/api/v1/escort/duty", headers=auth_header(resting), json={"on_duty": True})
    assert [o["id"] for o in client.get("/api/v1/escort/offers", headers=auth_header(resting)).json["items"]] == [
        str(booking.id)]
    assert client.get(url, headers=auth_header(resting)).status_code == 200


# --- lifecycle ------------------------------------------------------------------------------------------

def test_an_escort_runs_from_confirmed_to_completed_with_positions(client, app, db, redis_client, emitted):
    citizen = create_user(db.session)
    booking, (first, second) = confirmed(client, app, db, citizen=citizen, meet_at=utcnow() + timedelta(minutes=10))
    assert post(client, citizen, booking.id, "start").status_code == 403
    assert post(client, first, booking.id, "start").json["status"] == "in_progress"
    assert post(client, citizen, booking.id, "cancel").status_code == 409  # too late once started
    fix = {"lat": 37.4770, "lon": 126.9315, "accuracy_m": 8, "t": utcnow().isoformat()}
    sent = client.post(f"/api/v1/escort/bookings/{booking.id}/fixes", headers=auth_header(second),
                       json={"fixes": [fix, {"lat": 91, "lon": 0}]})
    assert sent.status_code == 200 and (sent.json["accepted"], sent.json["rejected"]) == (1, 1)
    assert redis_client.get(f"live:escort:{booking.id}") is not None
    batcher.flush()
    rooms = {(ns, room, event) for ns, room, event, _ in emitted}
    assert ("/control", ("district:11620", "districts"), "positions") in rooms
    assert ("/mobile", f"user:{citizen.id}", "escort.position") in rooms
    assert post(client, second, booking.id, "complete").json["status"] == "completed"
    assert event_kinds(db, booking.id) == ["requested", "accepted", "accepted", "confirmed", "started", "completed"]
    detail = client.get(f"/api/v1/escort/bookings/{booking.id}", headers=auth_header(citizen)).json
    assert [e["kind"] for e in detail["events"]][-1] == "completed" and detail["finished_at"]


def test_positions_come_only_from_the_pair_during_the_escort(client, app, db, redis_client):
    booking, (first, _) = confirmed(client, app, db, meet_at=utcnow() + timedelta(minutes=10))
    fixes = {"fixes": [{"lat": 37.4770, "lon": 126.9315, "t": utcnow().isoformat()}]}
    url = f"/api/v1/escort/bookings/{booking.id}/fixes"
    assert client.post(url, headers=auth_header(first), json=fixes).status_code == 409  # not started
    post(client, first, booking.id, "start")
    assert client.post(url, headers=auth_header(scout(db)), json=fixes).status_code == 403


def test_no_show_is_recorded_only_from_the_meeting_time(client, app, db):
    booking, (first, _) = confirmed(client, app, db, meet_at=utcnow() + timedelta(minutes=3))
    early = post(client, first, booking.id, "no-show")
    assert early.status_code == 409 and "meeting time" in early.json["detail"]
    done = escort.no_show(db.session, user=first, booking_id=booking.id, now=booking.meet_at + timedelta(minutes=1))
    assert done.status == "no_show"


def test_cancelling_releases_the_pair_and_tells_them(client, app, db):
    citizen = create_user(db.session)
    booking, pair = confirmed(client, app, db, citizen=citizen)
    answer = post(client, citizen, booking.id, "cancel")
    assert answer.status_code == 200 and answer.json["scouts"] == []
    assert push_jobs(db)[-1]["user_ids"] == sorted(str(s.id) for s in pair)
    assert post(client, citizen, booking.id, "cancel").status_code == 200  # a retry
    assert post(client, pair[0], booking.id, "start").status_code == 403  # no longer theirs


# --- timers -------------------------------------------------------------------------------------------------

def run_job(db, kind, booking):
    HANDLERS[kind](db.session, {"booking_id": str(booking.id)}, None)
    db.session.commit()


def test_the_reminder_goes_to_the_citizen_and_the_pair_once(client, app, db):
    citizen = create_user(db.session)
    booking, pair = confirmed(client, app, db, citizen=citizen)
    before = len(push_jobs(db))
    run_job(db, "escort.reminder", booking)
    run_job(db, "escort.reminder", booking)
    pushes = push_jobs(db)[before:]
    assert len(pushes) == 1 and pushes[0]["data"]["event"] == "reminder"
    assert pushes[0]["user_ids"] == sorted(str(u.id) for u in (citizen, *pair))


def test_a_booking_still_unconfirmed_is_flagged_to_the_citizen_and_the_operators(client, app, db, emitted):
    operator = create_user(db.session, role="operator")
    operator.on_duty = True
    db.session.commit()
    citizen = create_user(db.session)
    booking = make_booking(app, db, citizen=citizen)
    post(client, scout(db), booking.id, "accept")  # one scout is not a pair
    run_job(db, "escort.unconfirmed", booking)
    run_job(db, "escort.reminder", booking)  # nothing to remind of: not confirmed
    flagged = [p for p in push_jobs(db) if p["data"]["event"] == "unconfirmed"]
    assert [p["user_ids"] for p in flagged] == [[str(citizen.id)], [str(operator.id)]]
    assert "reminded" not in event_kinds(db, booking.id) and "unconfirmed" in event_kinds(db, booking.id)
    assert ("/control", ("district:11620", "districts"), "escort.updated") in [e[:3] for e in emitted]
    assert db.session.get(EscortBooking, booking.id).flagged_at is not None


def test_timers_of_a_cancelled_or_confirmed_booking_do_nothing(client, app, db):
    citizen = create_user(db.session)
    cancelled = make_booking(app, db, citizen=citizen)
    post(client, citizen, cancelled.id, "cancel")
    booking, _ = confirmed(client, app, db)
    before = len(push_jobs(db))
    for kind, subject in (("escort.reminder", cancelled), ("escort.unconfirmed", cancelled),
                          ("escort.unconfirmed", booking)):
        run_job(db, kind, subject)
    assert len(push_jobs(db)) == before


def test_a_confirmed_escort_not_started_after_its_meeting_is_flagged_late_once(client, app, db, emitted):
    """Before, a citizen waiting alone at night for a pair that did not come was noticed by nobody else: the
    booking stayed confirmed, and nothing told the control room."""
    operator = create_user(db.session, role="operator")
    operator.on_duty = True
    db.session.commit()
    citizen = create_user(db.session)
    booking, pair = confirmed(client, app, db, citizen=citizen)
    late_at = booking.meet_at + timedelta(minutes=10)
    assert [j.run_at for j in timer_jobs(db, "escort.late", booking)] == [late_at]
    assert not escort_live.flag_late(db.session, booking_id=booking.id, now=booking.meet_at - timedelta(minutes=1))
    before = len(push_jobs(db))
    assert escort_live.flag_late(db.session, booking_id=booking.id, now=late_at)
    db.session.commit()
    assert not escort_live.flag_late(db.session, booking_id=booking.id, now=late_at + timedelta(minutes=1))
    db.session.commit()
    late = push_jobs(db)[before:]
    assert [p["data"]["event"] for p in late] == ["late", "late"]
    assert late[0]["user_ids"] == sorted(str(u.id) for u in (citizen, *pair))
    assert late[1]["user_ids"] == [str(operator.id)] and late[1]["on_shift_in"] == booking.district_code
    assert event_kinds(db, booking.id).count("late") == 1
    assert ("/control", ("district:11620", "districts"), "escort.updated") in [e[:3] for e in emitted]
    assert db.session.get(EscortBooking, booking.id).status == "confirmed"  # the pair may still come


def test_an_escort_started_or_cancelled_or_never_confirmed_is_not_flagged_late(client, app, db):
    started, (first, _) = confirmed(client, app, db, meet_at=utcnow() + timedelta(minutes=10))
    assert post(client, first, started.id, "start").status_code == 200
    citizen = create_user(db.session)
    cancelled, _ = confirmed(client, app, db, citizen=citizen)
    post(client, citizen, cancelled.id, "cancel")
    unconfirmed = make_booking(app, db)
    before = len(push_jobs(db))
    for booking in (started, cancelled, unconfirmed):
        assert not escort_live.flag_late(db.session, booking_id=booking.id, now=booking.meet_at + timedelta(minutes=10))
    db.session.commit()
    assert len(push_jobs(db)) == before


def test_a_worker_gives_bookings_made_before_the_late_timer_their_timer(client, app, db):
    """Bookings made by an api process of the release before this timer (a rolling deploy) have none."""
    from safety_api.services import escort_clock
    booking, _ = confirmed(client, app, db)
    past = make_booking(app, db, meet_at=utcnow() - timedelta(minutes=30), ahead=timedelta(hours=1))
    db.session.execute(delete(Job).where(Job.kind == "escort.late"))
    db.session.commit()
    policy = open_policy(app)
    assert escort_clock.arm_missing_late_timers(db.session, policy=policy) == 1  # not the one long past its time
    assert escort_clock.arm_missing_late_timers(db.session, policy=policy) == 0
    db.session.commit()
    assert [j.run_at for j in timer_jobs(db, "escort.late", booking)] == [booking.meet_at + timedelta(minutes=10)]
    assert timer_jobs(db, "escort.late", past) == []


def timer_jobs(db, kind, booking) -> list:
    return db.session.scalars(select(Job).where(Job.kind == kind, Job.payload["booking_id"].astext == str(booking.id))
                              .order_by(Job.id)).all()


def test_timers_that_come_from_the_meeting_time_on_record_and_push_nothing(client, app, db):
    """A worker's backlog must not tell the citizen that a meeting under way, or over, starts soon."""
    waiting = make_booking(app, db)  # never gets its pair
    booking, _ = confirmed(client, app, db, meet_at=utcnow() + timedelta(hours=3))
    before = len(push_jobs(db))
    assert not escort_live.remind(db.session, booking_id=booking.id, now=booking.meet_at)
    assert not escort_live.flag_unconfirmed(db.session, booking_id=waiting.id, now=waiting.meet_at + timedelta(hours=2))
    db.session.commit()
    assert len(push_jobs(db)) == before
    assert "reminded" not in event_kinds(db, booking.id) and "unconfirmed" not in event_kinds(db, waiting.id)
    assert (booking.reminded_at, waiting.flagged_at) == (None, None)
    assert escort_live.remind(db.session, booking_id=booking.id, now=booking.meet_at - timedelta(seconds=1))


def test_a_booking_made_inside_the_unconfirmed_window_gives_the_scouts_time_before_it_is_flagged(app, db):
    meet_at, later = utcnow() + timedelta(hours=2), utcnow() + timedelta(hours=5)
    soon = make_booking(app, db, meet_at=meet_at, ahead=timedelta(minutes=12))
    assert [j.run_at for j in timer_jobs(db, "escort.unconfirmed", soon)] == [
        meet_at - timedelta(minutes=12) + escort.OFFER_GRACE]  # not at once: the offer has only just gone out
    closer = make_booking(app, db, meet_at=later, ahead=timedelta(minutes=3))
    assert timer_jobs(db, "escort.unconfirmed", closer) == []  # the flag would come after the meeting
    assert [j.run_at for j in timer_jobs(db, "escort.reminder", closer)] == [later - timedelta(minutes=10)]


def test_a_booking_confirmed_after_its_reminder_time_is_reminded_then(client, app, db):
    citizen = create_user(db.session)
    booking = make_booking(app, db, citizen=citizen, meet_at=utcnow() + timedelta(minutes=8),
                           ahead=timedelta(minutes=8))  # booked now, inside the reminder's 10 minutes
    run_job(db, "escort.reminder", booking)  # due already: the booking is still requested, so nothing
    assert "reminded" not in event_kinds(db, booking.id)
    pair = [scout(db, name="첫째"), scout(db, name="둘째")]
    for person in pair:
        assert post(client, person, booking.id, "accept").status_code == 200
    again = timer_jobs(db, "escort.reminder", booking)
    assert len(again) == 2 and again[-1].run_at <= utcnow()
    before = len(push_jobs(db))
    run_job(db, "escort.reminder", booking)
    assert [p["data"]["event"] for p in push_jobs(db)[before:]] == ["reminder"]
    assert push_jobs(db)[-1]["user_ids"] == sorted(str(u.id) for u in (citizen, *pair))
    assert event_kinds(db, booking.id)[-1] == "reminded"


def test_a_scout_who_replaces_a_withdrawn_one_after_the_reminder_is_reminded_too(client, app, db):
    """The reminder had been sent to the old pair; the newcomer who completed the pair again got none."""
    citizen, admin = create_user(db.session), create_user(db.session, role="admin")
    booking, (leaving, staying) = confirmed(client, app, db, citizen=citizen,
                                            meet_at=utcnow() + timedelta(minutes=8))  # inside the reminder's 10
    run_job(db, "escort.reminder", booking)
    assert "reminded" in event_kinds(db, booking.id)
    assert client.post(f"/api/v1/admin/users/{leaving.id}/suspend", headers=auth_header(admin),
                       json={"reason": "조사"}).status_code == 200
    newcomer = scout(db, name="새로 온")
    timers = len(timer_jobs(db, "escort.reminder", booking))
    assert post(client, newcomer, booking.id, "accept").json["status"] == "confirmed"
    again = timer_jobs(db, "escort.reminder", booking)
    assert len(again) == timers + 1 and again[-1].run_at <= utcnow()  # due at once
    before = len(push_jobs(db))

    run_job(db, "escort.reminder", booking)

    assert [(p["data"]["event"], p["user_ids"]) for p in push_jobs(db)[before:]] == [
        ("reminder", sorted(str(u.id) for u in (citizen, staying, newcomer)))]


def expand_pushes(db) -> list:
    """Run every push.user job as the worker would; the deliveries made, oldest first."""
    for payload in push_jobs(db):
        HANDLERS["push.user"](db.session, payload, None)
    db.session.commit()
    return db.session.scalars(select(Delivery).order_by(Delivery.id)).all()


def test_pushes_about_the_meeting_live_only_until_it(client, app, db):
    """Every escort push lived 6 hours: an offer or a reminder retried after an FCM error came after the meeting."""
    citizen = create_user(db.session)
    offered_to = scout(db)
    for person in (citizen, offered_to):
        db.session.add(PushDevice(user_id=person.id, token=f"phone-of-{person.id}", platform="android"))
    db.session.commit()
    booking = make_booking(app, db, citizen=citizen, meet_at=utcnow() + timedelta(minutes=40), ahead=timedelta(0))
    post(client, create_user(db.session, role="operator"), booking.id, "cancel")  # pushed to the citizen
    ttl = {d.reason: d.message["ttl_s"] for d in expand_pushes(db)}
    assert ttl["escort.offered"] == pytest.approx(40 * 60, abs=5)
    assert ttl["escort.cancelled"] == 6 * 3600  # what is over stays news for longer


def test_an_offer_goes_only_while_the_booking_wants_scouts_and_its_meeting_is_to_come(client, app, db):
    """An offer retried after the pair was found (or the meeting came) still went to the scout."""
    from safety_api.services import audiences
    onlooker = scout(db)
    db.session.add(PushDevice(user_id=onlooker.id, token="phone", platform="android"))
    db.session.commit()
    taken, waiting = make_booking(app, db), make_booking(app, db, meet_at=utcnow() + timedelta(hours=4))
    offers = {d.subject: d for d in expand_pushes(db) if d.reason == "escort.offered"}
    taken_offer, waiting_offer = offers[f"escort:{taken.id}"], offers[f"escort:{waiting.id}"]
    assert audiences.still_entitled(db.session, taken_offer) and audiences.still_entitled(db.session, waiting_offer)
    for person in (scout(db, name="첫째"), scout(db, name="둘째")):
        post(client, person, taken.id, "accept")
    db.session.execute(update(EscortBooking).where(EscortBooking.id == waiting.id)
                       .values(meet_at=utcnow() - timedelta(minutes=1), ends_at=utcnow() + timedelta(minutes=9)))
    assert not audiences.still_entitled(db.session, taken_offer)  # confirmed
    assert not audiences.still_entitled(db.session, waiting_offer)  # its meeting time has come


# --- a citizen deleting the account ---------------------------------------------------------------------------

def delete_account(client, citizen):
    return client.delete("/api/v1/me", headers=auth_header(citizen), json={"password": PASSWORD})


def test_deleting_the_account_cancels_the_escorts_to_come_and_the_scouts_are_still_pushed(client, app, db, emitted):
    citizen = create_user(db.session)
    booking, pair = confirmed(client, app, db, citizen=citizen)
    waiting = make_booking(app, db, citizen=citizen, meet_at=utcnow() + timedelta(hours=3))
    alone = scout(db, name="셋째")
    assert post(client, alone, waiting.id, "accept").status_code == 200
    for person in (*pair, alone):
        db.session.add(PushDevice(user_id=person.id, token=f"phone-of-{person.id}", platform="android"))
    db.session.commit()
    citizen_id, confirmed_id, waiting_id = citizen.id, str(booking.id), str(waiting.id)
    pair_ids, alone_id = {str(s.id) for s in pair}, str(alone.id)
    jobs_before = db.session.scalar(select(Job.id).order_by(Job.id.desc()).limit(1))

    assert delete_account(client, citizen).status_code == 204

    db.session.expire_all()
    assert db.session.get(User, citizen_id) is None and db.session.get(EscortBooking, confirmed_id) is None
    told = db.session.scalars(select(Job).where(Job.kind == "push.user", Job.id > jobs_before)).all()
    assert {(j.payload["data"]["id"], j.payload["data"]["event"], frozenset(j.payload["user_ids"])) for j in told} == {
        (confirmed_id, "cancelled", frozenset(pair_ids)), (waiting_id, "cancelled", frozenset({alone_id}))}
    cancelled = {(room, p["booking_id"]) for _ns, room, event, p in emitted
                 if event == "escort.updated" and p["status"] == "cancelled"}
    operators = ("district:11620", "districts")
    assert cancelled >= {(operators, confirmed_id), (operators, waiting_id),
                         *((f"user:{uid}", confirmed_id) for uid in pair_ids), (f"user:{alone_id}", waiting_id)}
    for job in told:  # the worker expands them after the citizen, and the bookings, are gone
        HANDLERS["push.user"](db.session, job.payload, None)
    db.session.commit()
    sent = db.session.scalars(select(Delivery.token).where(Delivery.reason == "escort.cancelled")).all()
    assert sorted(sent) == sorted(f"phone-of-{uid}" for uid in (*pair_ids, alone_id))


def test_deleting_the_account_during_an_escort_is_409_and_changes_nothing(client, app, db):
    citizen = create_user(db.session)
    walking, (first, _) = confirmed(client, app, db, citizen=citizen, meet_at=utcnow() + timedelta(minutes=10))
    later = make_booking(app, db, citizen=citizen, meet_at=utcnow() + timedelta(hours=3))
    assert post(client, first, walking.id, "start").status_code == 200

    refused = delete_account(client, citizen)

    assert refused.status_code == 409 and refused.content_type == PROBLEM and "under way" in refused.json["detail"]
    db.session.expire_all()
    assert db.session.get(User, citizen.id) is not None
    assert [db.session.get(EscortBooking, b.id).status for b in (walking, later)] == ["in_progress", "requested"]
    assert post(client, first, walking.id, "complete").status_code == 200
    assert delete_account(client, citizen).status_code == 204


# --- who may do what -------------------------------------------------------------------------------------

@pytest.mark.parametrize("role, district, status", [
    ("admin", None, 200),
    ("operator", "11620", 200),
    ("operator", "11680", 403),
    ("scout", "11680", 403),
    ("citizen", None, 404),  # someone else: as if there were no such booking
])
def test_who_reads_a_booking(client, app, db, role, district, status):
    booking = make_booking(app, db)
    reader = create_user(db.session, role=role, district=district)
    assert client.get(f"/api/v1/escort/bookings/{booking.id}", headers=auth_header(reader)).status_code == status


def test_a_citizen_cannot_tell_anothers_booking_from_a_missing_one(client, app, db):
    booking, prober = make_booking(app, db), create_user(db.session)
    answers = [request(f"/api/v1/escort/bookings/{booking_id}{action}", headers=auth_header(prober))
               for booking_id in (booking.id, uuid.uuid4())
               for request, action in ((client.get, ""), (client.post, "/cancel"))]
    assert [(a.status_code, a.json["detail"]) for a in answers[:2]] == [
        (a.status_code, a.json["detail"]) for a in answers[2:]] == [(404, "No such booking.")] * 2
    assert db.session.get(EscortBooking, booking.id).status == "requested"


def test_scouts_of_the_district_read_an_open_booking_but_not_a_pair_they_are_not_in(client, app, db):
    booking = make_booking(app, db)
    onlooker = scout(db)
    url = f"/api/v1/escort/bookings/{booking.id}"
    assert client.get(url, headers=auth_header(onlooker)).status_code == 200
    pair = [scout(db), scout(db)]
    for s in pair:
        post(client, s, booking.id, "accept")
    assert client.get(url, headers=auth_header(onlooker)).status_code == 403
    assert client.get(url, headers=auth_header(pair[0])).status_code == 200


@pytest.mark.parametrize("role, action", [
    ("citizen", "accept"), ("operator", "accept"), ("admin", "accept"),
    ("scout", "cancel"),
])
def test_wrong_roles_are_refused(client, app, db, role, action):
    booking = make_booking(app, db)
    assert post(client, create_user(db.session, role=role), booking.id, action).status_code == 403


@pytest.mark.parametrize("role", ["scout", "operator", "admin"])
def test_only_citizens_book(client, db, open_service, role):
    assert book(client, create_user(db.session, role=role), meeting_point(db)).status_code == 403


def test_other_districts_are_refused(client, app, db):
    booking = make_booking(app, db)
    gangnam_scout, gangnam_operator = scout(db, district="11680"), create_user(db.session, role="operator",
                                                                               district="11680")
    assert post(client, gangnam_scout, booking.id, "accept").status_code == 403
    assert post(client, gangnam_operator, booking.id, "cancel").status_code == 403
    assert post(client, create_user(db.session), booking.id, "cancel").status_code == 404  # not the citizen's own
    assert post(client, create_user(db.session, role="operator"), booking.id, "cancel").status_code == 200


def test_each_role_lists_its_own_bookings(client, app, db):
    citizen = create_user(db.session)
    mine, _other = make_booking(app, db, citizen=citizen), make_booking(app, db)
    member = scout(db)
    post(client, member, mine.id, "accept")

    def ids(user, query=""):
        return [b["id"] for b in client.get(f"/api/v1/escort/bookings{query}", headers=auth_header(user)).json["items"]]
    assert ids(citizen) == [str(mine.id)]
    assert ids(member) == [str(mine.id)]
    assert len(ids(create_user(db.session, role="operator"))) == 2
    assert ids(create_user(db.session, role="operator", district="11680")) == []
    assert len(ids(create_user(db.session, role="admin"), "?status=requested")) == 2


def test_escort_positions_from_someone_who_is_no_scout_are_refused_alike_whether_the_booking_exists(app, db):
    """The socket path (`location`, kind escort) judges the role before the id, as REST does, so a citizen
    cannot tell a real booking id from an invented one."""
    from safety_api.errors import Forbidden
    from safety_api.services import escort_live
    booking = make_booking(app, db)
    citizen = create_user(db.session)
    answers = []
    for booking_id in (booking.id, uuid.uuid4()):
        with pytest.raises(Forbidden) as refused:
            escort_live.record_escort_fixes(db.session, app.extensions["redis"], scout=citizen,
                                            booking_id=booking_id, fixes=[])
        answers.append(str(refused.value))
    assert answers[0] == answers[1]
