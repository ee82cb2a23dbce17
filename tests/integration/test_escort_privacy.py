"""Where an escort's citizen goes and who they are: who sees it, for how long, and the record of each read."""
from datetime import timedelta

from sqlalchemy import select, update

from safety_api.clock import utcnow
from safety_api.models import EscortBooking, LocationAccess
from tests.factories import auth_header, create_user
from tests.integration.test_escort import HIDDEN_FROM_OFFERS, make_booking, post, scout
from tests.integration.test_escort_live import under_way


def on_duty(db, person):
    person.on_duty = True
    db.session.commit()
    return person


def test_a_scout_sees_the_citizen_and_where_they_went_only_until_shortly_after_the_escort(client, app, db):
    """A scout kept every past citizen's name and home for good, even after moving to another district."""
    citizen = create_user(db.session, name="홍길순")
    booking, (first, second) = under_way(client, app, db, citizen=citizen)
    assert post(client, second, booking.id, "complete").status_code == 200
    url = f"/api/v1/escort/bookings/{booking.id}"
    just_after = client.get(url, headers=auth_header(first)).json
    assert just_after["citizen"]["name"] == "홍길순" and "to" in just_after

    db.session.execute(update(EscortBooking).where(EscortBooking.id == booking.id)
                       .values(finished_at=utcnow() - timedelta(minutes=31)))
    db.session.commit()

    read = client.get(url, headers=auth_header(first))
    mine = client.get("/api/v1/escort/bookings", headers=auth_header(first))
    for answer, view in ((read, read.json), (mine, mine.json["items"][0])):
        assert answer.status_code == 200 and view["id"] == str(booking.id) and view["status"] == "completed"
        assert [key for key in HIDDEN_FROM_OFFERS if key in view] == []
        assert "홍길순" not in answer.get_data(as_text=True)
    operator = create_user(db.session, role="operator")
    assert client.get(url, headers=auth_header(operator)).json["citizen"]["name"] == "홍길순"


def reads(db, booking) -> list:
    return sorted((str(r.viewer_id), r.purpose) for r in db.session.scalars(
        select(LocationAccess).where(LocationAccess.subject_kind == "escort", LocationAccess.subject_id == booking.id)))


def test_every_read_of_an_escort_by_someone_but_its_citizen_is_in_the_access_log(client, app, db):
    """No escort read was logged, though it tells where the citizen will wait and where they live."""
    citizen = create_user(db.session)
    booking = make_booking(app, db, citizen=citizen)
    operator, onlooker, browser = create_user(db.session, role="operator"), scout(db), scout(db)
    url = f"/api/v1/escort/bookings/{booking.id}"
    for person in (citizen, operator, onlooker):
        assert client.get(url, headers=auth_header(person)).status_code == 200
    for _ in range(2):  # lists once an hour
        assert client.get("/api/v1/escort/bookings", headers=auth_header(operator)).status_code == 200
        assert client.get("/api/v1/escort/offers", headers=auth_header(browser)).status_code == 200
    assert reads(db, booking) == sorted([(str(operator.id), "escort.read"), (str(onlooker.id), "escort.offer"),
                                         (str(operator.id), "escort.list"), (str(browser.id), "escort.offer")])
    exported = client.get("/api/v1/me/export", headers=auth_header(citizen)).json["location_reads"]
    assert {(r["viewer_id"], r["purpose"]) for r in exported} == set(reads(db, booking))


def test_the_start_logs_the_stream_to_each_operator_on_shift_in_the_district(client, app, db):
    on_shift = on_duty(db, create_user(db.session, role="operator"))
    off_shift = create_user(db.session, role="operator")
    elsewhere = on_duty(db, create_user(db.session, role="operator", district="11680"))
    booking, (first, _) = under_way(client, app, db)
    logged = reads(db, booking)
    assert (str(on_shift.id), "escort.stream") in logged
    assert {viewer for viewer, _ in logged} & {str(off_shift.id), str(elsewhere.id)} == set()
    assert (str(first.id), "escort.act") in logged  # the start's answer carries the destination too
