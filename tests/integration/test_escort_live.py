"""An escort under way on the real database and Redis: the pair's positions, and when the escort ends."""
import threading
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import select, update

from safety_api.clock import utcnow
from safety_api.errors import Conflict
from safety_api.models import EscortBooking, Job, LocationFix
from safety_api.realtime.positions import batcher
from safety_api.services import escort, escort_live
from tests.conftest import TEST_DATABASE_URL
from tests.factories import auth_header, create_user
from tests.integration.test_escort import (
    confirmed,
    delete_account,
    event_kinds,
    post,
    push_jobs,
    run_job,
)

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
    # The process's own flush (every POSITIONS_FLUSH_S) may have sent it before the complete: only after is wrong.
    # Before, a flush that had taken the position just before the complete's discard emitted it after the news.
    news = next(i for i, (_ns, _room, event, payload) in enumerate(emitted)
                if event == "escort.updated" and payload.get("status") == "completed")
    sent = [(event, payload) for _ns, _room, event, payload in emitted[news:]
            if event in ("positions", "escort.position")]
    assert [item for _event, payload in sent for item in payload["items"] if item["id"] == str(booking.id)] == []


# --- when an escort starts, and when it ends without a complete ---------------------------------------------

def overrun_due(db, booking):
    return db.session.scalar(select(Job.run_at).where(Job.dedupe_key == f"escort.overrun:{booking.id}"))


def test_an_escort_starts_from_the_lead_before_its_meeting_until_its_time_is_over(client, app, db):
    """A pair could start an escort hours before its meeting, or days after."""
    booking, (first, _) = confirmed(client, app, db, meet_at=utcnow() + timedelta(hours=1))
    early = post(client, first, booking.id, "start")
    assert early.status_code == 409 and "30 minutes before the meeting" in early.json["detail"]
    policy = app.config["ESCORT_POLICY"]
    with pytest.raises(Conflict):
        escort.start(db.session, user=first, booking_id=booking.id, policy=policy, now=booking.busy_until)
    started = escort.start(db.session, user=first, booking_id=booking.id, policy=policy,
                           now=booking.meet_at - timedelta(minutes=30))
    assert started.status == "in_progress"


def test_an_escort_nobody_completes_closes_at_its_time_and_the_operators_are_told(client, app, db, emitted):
    """An escort nobody completed stayed in progress for good."""
    operator = create_user(db.session, role="operator")
    operator.on_duty = True
    db.session.commit()
    booking, pair = under_way(client, app, db)
    assert overrun_due(db, booking) == booking.busy_until + timedelta(minutes=30)  # ESCORT_OVERRUN_GRACE_MINUTES
    before = len(push_jobs(db))

    run_job(db, "escort.overrun", booking)
    run_job(db, "escort.overrun", booking)  # once

    closed = db.session.get(EscortBooking, booking.id)
    assert closed.status == "completed" and closed.finished_at is not None
    assert event_kinds(db, booking.id)[-1] == "timed_out"
    told = [(p["data"]["event"], p["user_ids"], p.get("on_shift_in")) for p in push_jobs(db)[before:]]
    assert told == [("timed_out", sorted(str(u.id) for u in (closed.citizen, *pair)), None),
                    ("timed_out", [str(operator.id)], "11620")]
    assert ("/control", ("district:11620", "districts"), "escort.updated") in [e[:3] for e in emitted]
    assert send(client, pair[0], booking, {**POINT, "t": utcnow().isoformat()}).status_code == 409


def test_a_worker_starting_arms_the_timer_of_an_escort_started_without_one(client, app, db):
    """An api of the release before the timers, still serving during a rolling deploy, starts escorts without
    one: they would stay in progress for good."""
    from sqlalchemy import delete

    from safety_api.worker import Worker
    booking, _pair = under_way(client, app, db)
    db.session.execute(delete(Job).where(Job.dedupe_key == f"escort.overrun:{booking.id}"))
    db.session.commit()
    Worker(app, name="w").keep_retention_scheduled()
    Worker(app, name="v").keep_retention_scheduled()  # every worker starting asks for the same one
    assert overrun_due(db, booking) == booking.busy_until + timedelta(minutes=30)
    assert len(db.session.scalars(select(Job).where(Job.kind == "escort.overrun")).all()) == 1


def test_an_escort_started_late_gets_its_walk_before_it_closes(client, app, db):
    booking, (first, _) = confirmed(client, app, db, meet_at=utcnow() + timedelta(minutes=10))
    late = booking.busy_until - timedelta(minutes=1)
    escort.start(db.session, user=first, booking_id=booking.id, policy=app.config["ESCORT_POLICY"], now=late)
    assert overrun_due(db, booking) == late + (booking.ends_at - booking.meet_at) + timedelta(minutes=30)


def test_positions_after_the_closing_time_are_refused_though_the_timer_has_not_run(client, app, db, redis_client):
    booking, (first, _) = under_way(client, app, db)
    closing = overrun_due(db, booking)
    fix = [{**POINT, "t": (closing - timedelta(seconds=5)).isoformat()}]
    assert escort_live.record_escort_fixes(db.session, redis_client, scout=first, booking_id=booking.id, fixes=fix,
                                           now=closing - timedelta(seconds=1))["accepted"] == 1
    with pytest.raises(Conflict) as refused:
        escort_live.record_escort_fixes(db.session, redis_client, scout=first, booking_id=booking.id, fixes=fix,
                                        now=closing)
    assert "time is over" in str(refused.value)


def test_deleting_the_account_is_refused_only_until_the_escorts_closing_time(client, app, db):
    """DELETE /me answered 409 "under way" for as long as nobody completed the escort."""
    citizen = create_user(db.session)
    booking, pair = under_way(client, app, db, citizen=citizen)
    told_to = sorted(str(u) for u in (citizen.id, *(s.id for s in pair)))
    assert delete_account(client, citizen).status_code == 409
    db.session.execute(update(Job).where(Job.dedupe_key == f"escort.overrun:{booking.id}")
                       .values(run_at=utcnow() - timedelta(minutes=1)))  # its time has passed, its timer not run
    db.session.commit()
    before = len(push_jobs(db))

    assert delete_account(client, citizen).status_code == 204

    assert [(p["data"]["event"], p["user_ids"]) for p in push_jobs(db)[before:]] == [("timed_out", told_to)]
