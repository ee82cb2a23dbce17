"""Many scouts accepting many bookings at once on the real database: the pair and no double booking hold."""
import random
import threading
from datetime import timedelta

import psycopg
from psycopg import errors as pg
from sqlalchemy import text

from safety_api.clock import utcnow
from tests.conftest import TEST_DATABASE_URL
from tests.factories import auth_header, create_user
from tests.integration.test_escort import NEAR_SEOWON, at, make_booking, meeting_point, open_policy, scout

# Each returns offending rows; an empty answer means the invariant holds.
MORE_THAN_A_PAIR = text("SELECT booking_id FROM escort_assignments WHERE released_at IS NULL "
                        "GROUP BY booking_id HAVING count(*) > 2")
DOUBLE_BOOKED = text("SELECT a.scout_id FROM escort_assignments a JOIN escort_assignments b "
                     "ON a.scout_id = b.scout_id AND a.id < b.id AND a.period && b.period "
                     "WHERE a.released_at IS NULL AND b.released_at IS NULL")
STATUS_LIES = text("SELECT b.id FROM escort_bookings b LEFT JOIN escort_assignments a "
                   "ON a.booking_id = b.id AND a.released_at IS NULL GROUP BY b.id, b.status "
                   "HAVING (b.status = 'confirmed') <> (count(a.id) = 2)")


def violations(db) -> dict:
    return {name: db.session.execute(query).all() for name, query in
            (("pair", MORE_THAN_A_PAIR), ("double", DOUBLE_BOOKED), ("status", STATUS_LIES))}


def run_together(workers):
    """Start every worker at the same instant and wait for all."""
    barrier = threading.Barrier(len(workers))
    threads = [threading.Thread(target=lambda w=w: (barrier.wait(), w())) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)


def staggered_bookings(app, db, count, every_min=7):
    """Bookings every few minutes: each one's period overlaps its neighbours'."""
    base = utcnow() + timedelta(hours=2)
    return [make_booking(app, db, meet_at=base + timedelta(minutes=every_min * i)) for i in range(count)]


def test_many_scouts_accepting_many_bookings_at_once_keep_both_invariants(app, db, client):
    bookings = [str(b.id) for b in staggered_bookings(app, db, 24)]
    scouts = [scout(db, name=f"스카우트{i}") for i in range(16)]
    headers = [auth_header(s) for s in scouts]
    answers, lock = [], threading.Lock()

    def accept_all(h):
        mine = app.test_client()
        for booking_id in random.sample(bookings, len(bookings)):
            r = mine.post(f"/api/v1/escort/bookings/{booking_id}/accept", headers=h)
            with lock:
                answers.append((r.status_code, (r.json or {}).get("detail", "")))

    run_together([lambda h=h: accept_all(h) for h in headers])
    codes = [code for code, _ in answers]
    assert set(codes) <= {200, 409} and len(codes) == 16 * 24
    held = db.session.scalar(text("SELECT count(*) FROM escort_assignments WHERE released_at IS NULL"))
    assert codes.count(200) == held > 0
    assert violations(db) == {"pair": [], "double": [], "status": []}
    losers = {detail for code, detail in answers if code == 409}
    assert any("two scouts" in d for d in losers) and any("overlapping" in d for d in losers)


def test_the_constraints_hold_even_for_raw_inserts_that_skip_the_service(app, db):
    """Without the service's row lock, slot picking or any Python check, the database still says no.

    Two raw inserts that each conflict with the other's uncommitted row can also deadlock while checking the
    exclusion constraint: PostgreSQL then aborts one of them, which is a refusal too, and counted as such."""
    bookings = [b.id for b in staggered_bookings(app, db, 10)]
    scouts = [create_user(db.session, role="scout").id for _ in range(8)]
    url = TEST_DATABASE_URL.replace("+psycopg", "")
    outcomes = {"unique": 0, "exclusion": 0, "check": 0, "deadlock": 0, "ok": 0}
    lock = threading.Lock()

    def insert_randomly(seed):
        rng = random.Random(seed)
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(40):
                outcome = "ok"
                try:
                    conn.execute("INSERT INTO escort_assignments (booking_id, scout_id, slot, period) "
                                 "SELECT id, %s, %s, period FROM escort_bookings WHERE id = %s",
                                 (rng.choice(scouts), rng.choice((1, 2, 2, 3)), rng.choice(bookings)))
                except pg.UniqueViolation:
                    outcome = "unique"
                except pg.ExclusionViolation:
                    outcome = "exclusion"
                except pg.CheckViolation:
                    outcome = "check"
                except pg.DeadlockDetected:
                    outcome = "deadlock"
                with lock:
                    outcomes[outcome] += 1

    run_together([lambda s=s: insert_randomly(s) for s in range(12)])
    assert violations(db)["pair"] == [] and violations(db)["double"] == []
    assert all(outcomes[k] > 0 for k in ("ok", "unique", "exclusion", "check"))


def test_an_assignment_cannot_claim_another_period_than_its_booking(app, db):
    booking = make_booking(app, db)
    with psycopg.connect(TEST_DATABASE_URL.replace("+psycopg", ""), autocommit=True) as conn:
        try:
            conn.execute("INSERT INTO escort_assignments (booking_id, scout_id, slot, period) "
                         "SELECT id, %s, 1, tstzrange(now(), now() + interval '1 minute') "
                         "FROM escort_bookings WHERE id = %s", (create_user(db.session, role="scout").id, booking.id))
            raise AssertionError("a shortened period was accepted")
        except pg.ForeignKeyViolation:
            pass


def test_a_cancel_racing_the_accepts_leaves_no_scout_held_by_a_cancelled_booking(app, db):
    for _ in range(5):
        citizen = create_user(db.session)
        booking_id = str(make_booking(app, db, citizen=citizen).id)
        scouts = [auth_header(scout(db)) for _ in range(4)]
        answers = []

        def call(headers, action, booking_id=booking_id, answers=answers):
            r = app.test_client().post(f"/api/v1/escort/bookings/{booking_id}/{action}", headers=headers)
            answers.append(r.status_code)

        calls = [lambda h=auth_header(citizen): call(h, "cancel")] + [lambda h=h: call(h, "accept") for h in scouts]
        run_together(calls)
        assert set(answers) <= {200, 409}
        held = db.session.scalar(text("SELECT count(*) FROM escort_assignments WHERE booking_id = :b "
                                      "AND released_at IS NULL"), {"b": booking_id})
        assert held == 0
        assert violations(db) == {"pair": [], "double": [], "status": []}


def test_one_scout_accepting_two_overlapping_bookings_at_once_gets_one_and_a_409(app, db):
    """A scout's two phones, or a double tap: raw inserts like these can deadlock in the exclusion check,
    but through the service one accept wins and the other is a clear conflict, never a 503 or a 500."""

    def race(header, booking_ids) -> list[int]:
        codes, lock = [], threading.Lock()

        def accept(booking_id):
            r = app.test_client().post(f"/api/v1/escort/bookings/{booking_id}/accept", headers=header)
            with lock:
                codes.append(r.status_code)

        run_together([lambda b=b: accept(b) for b in booking_ids])
        return sorted(codes)

    for _ in range(10):
        overlapping = [str(b.id) for b in staggered_bookings(app, db, 2, every_min=1)]
        assert race(auth_header(scout(db)), overlapping) == [200, 409]


def test_one_citizen_booking_twice_at_overlapping_times_at_once_gets_one_and_a_409(app, db, monkeypatch):
    """The citizen's side of the same race: two overlapping bookings sent together (two taps, a retry without
    its key) leave one booking and a clear 409."""
    monkeypatch.setitem(app.config, "ESCORT_POLICY", open_policy(app))
    point_id = str(meeting_point(db).id)

    def race(citizen) -> list[int]:
        header, codes, lock = auth_header(citizen), [], threading.Lock()

        def book_at(meet_at):
            r = app.test_client().post("/api/v1/escort/bookings", headers=header, json={
                "meeting_point_id": point_id, "meet_at": meet_at, "to": NEAR_SEOWON})
            with lock:
                codes.append(r.status_code)

        run_together([lambda m=at(minutes): book_at(m) for minutes in (60, 61)])
        return sorted(codes)

    for _ in range(10):
        assert race(create_user(db.session)) == [201, 409]


def test_two_tries_of_one_booking_at_once_make_one_booking(app, db, monkeypatch):
    """A phone's retry racing its first try (same Idempotency-Key): one booking, answered to both."""
    monkeypatch.setitem(app.config, "ESCORT_POLICY", open_policy(app))
    body = {"meeting_point_id": str(meeting_point(db).id), "meet_at": at(60), "to": NEAR_SEOWON}

    def race(headers) -> list:
        answers = []
        run_together([lambda: answers.append(app.test_client().post("/api/v1/escort/bookings", headers=headers,
                                                                       json=body))] * 2)
        return answers

    for round_ in range(5):
        answers = race({**auth_header(create_user(db.session)), "Idempotency-Key": f"race-{round_}"})
        assert sorted(a.status_code for a in answers) == [200, 201]
        assert answers[0].json["id"] == answers[1].json["id"]
