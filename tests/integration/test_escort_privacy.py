"""Where an escort's citizen goes and who they are: who sees it, for how long, and the record of each read."""
from datetime import timedelta

from sqlalchemy import update

from safety_api.clock import utcnow
from safety_api.models import EscortBooking
from tests.factories import auth_header, create_user
from tests.integration.test_escort import HIDDEN_FROM_OFFERS, post
from tests.integration.test_escort_live import under_way


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
