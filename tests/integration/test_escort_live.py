"""An escort under way on the real database and Redis: the pair's positions, and when the escort ends."""
from datetime import timedelta

from sqlalchemy import select

from safety_api.clock import utcnow
from safety_api.models import LocationFix
from tests.factories import auth_header
from tests.integration.test_escort import confirmed, post

POINT = {"lat": 37.4770, "lon": 126.9315, "accuracy_m": 8}


def under_way(client, app, db, **kw):
    """A confirmed booking whose meeting is near, started by its first scout."""
    booking, pair = confirmed(client, app, db, meet_at=utcnow() + timedelta(minutes=10), **kw)
    assert post(client, pair[0], booking.id, "start").status_code == 200
    return booking, pair


def send(client, scout, booking, *fixes):
    return client.post(f"/api/v1/escort/bookings/{booking.id}/fixes", headers=auth_header(scout),
                       json={"fixes": list(fixes)})


def test_both_scouts_fixes_at_the_same_moment_are_kept_and_a_resent_one_is_a_duplicate(client, app, db,
                                                                                         redis_client):
    """Both scouts report the booking: the second one's fix at the same `t` was dropped as a duplicate."""
    booking, (first, second) = under_way(client, app, db)
    t = utcnow().isoformat()
    answers = [send(client, person, booking, {**POINT, "t": t}).json for person in (first, second, first)]
    assert [(a["accepted"], a["duplicates"]) for a in answers] == [(1, 0), (1, 0), (0, 1)]
    stored = db.session.scalars(select(LocationFix.user_id).where(LocationFix.subject_id == booking.id)).all()
    assert sorted(stored) == sorted([first.id, second.id])
