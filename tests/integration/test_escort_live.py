"""An escort under way on the real database and Redis: the pair's positions, and when the escort ends."""
import threading
from datetime import timedelta

import psycopg
from sqlalchemy import select

from safety_api.clock import utcnow
from safety_api.models import LocationFix
from safety_api.realtime.positions import batcher
from tests.conftest import TEST_DATABASE_URL
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


def test_fixes_sent_while_the_escort_is_being_completed_wait_for_it_and_are_refused(client, app, db, redis_client):
    """A fix read the booking without a lock: one arriving during a complete was stored and sent after it."""
    booking, (first, _) = under_way(client, app, db)
    answers, headers, fix = [], auth_header(first), {**POINT, "t": utcnow().isoformat()}
    sender = threading.Thread(target=lambda: answers.append(app.test_client().post(
        f"/api/v1/escort/bookings/{booking.id}/fixes", headers=headers, json={"fixes": [fix]})))
    with psycopg.connect(TEST_DATABASE_URL.replace("+psycopg", "")) as completing:
        completing.execute("SELECT 1 FROM escort_bookings WHERE id = %s FOR UPDATE", (booking.id,))
        sender.start()
        sender.join(timeout=1)
        waited = sender.is_alive()  # for the complete
        completing.execute("UPDATE escort_bookings SET status = 'completed' WHERE id = %s", (booking.id,))
    sender.join(timeout=10)
    assert waited
    assert answers[0].status_code == 409 and "completed" in answers[0].json["detail"]
    assert db.session.scalars(select(LocationFix.id).where(LocationFix.subject_id == booking.id)).all() == []


def test_positions_queued_before_the_complete_are_not_sent_after_it(client, app, db, redis_client, emitted):
    booking, (first, second) = under_way(client, app, db)
    assert send(client, first, booking, {**POINT, "t": utcnow().isoformat()}).json["accepted"] == 1
    assert post(client, second, booking.id, "complete").status_code == 200
    batcher.flush()
    sent = [(event, payload) for _ns, _room, event, payload in emitted if event in ("positions", "escort.position")]
    assert [item for _event, payload in sent for item in payload["items"] if item["id"] == str(booking.id)] == []
