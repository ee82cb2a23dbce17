"""200 concurrent escort accepts over 50 bookings: latency, and both invariants checked afterwards.

    .venv/bin/python -m bench.booking [--accepts 200] [--bookings 50] [--scouts 40] [--pool 20] [--rounds 3]

Three ways of taking a slot, on the same plan of (scout, booking) pairs, in the same run:
- raw:     one INSERT ... SELECT into escort_assignments through psycopg (autocommit): the database's
           constraints alone, no row lock, no Python; the floor.
- service: `services.escort.accept` with a session per thread (row lock, checks, event, push outbox).
- http:    POST /api/v1/escort/bookings/{id}/accept through the whole Flask stack (JWT, schemas).
Every accept starts at the same instant (a barrier) and waits for one of `--pool` connections, so
the latency includes the queueing of a burst (the server's connections are shared: keep the pool
well under max_connections). Bookings are six minutes apart and each holds its
scouts for about twenty, so a scout's accepts collide. The benchmark recreates its own database.
"""
from __future__ import annotations

import argparse
import os
import queue
import random
import statistics
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import psycopg

from bench import common
from safety_api.services import escort

ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://safety:safety@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DB", "safety_bench_escort")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
# The service's own statement, in psycopg's parameter style: the floor takes slots exactly as `accept` does.
TAKE_SLOT = escort.TAKE_SLOT_SQL.replace(":scout", "%(scout)s").replace(":booking", "%(booking)s")
CHECKS = {  # invariant -> query returning the rows that break it
    "at most two scouts": "SELECT booking_id FROM escort_assignments WHERE released_at IS NULL "
                          "GROUP BY booking_id HAVING count(*) > 2",
    "no scout double-booked": "SELECT a.scout_id FROM escort_assignments a JOIN escort_assignments b "
                              "ON a.scout_id = b.scout_id AND a.id < b.id AND a.period && b.period "
                              "WHERE a.released_at IS NULL AND b.released_at IS NULL",
}
STATUS_CHECK = ("confirmed iff two", "SELECT b.id FROM escort_bookings b LEFT JOIN escort_assignments a "
                "ON a.booking_id = b.id GROUP BY b.id, b.status HAVING (b.status = 'confirmed') <> (count(a.id) = 2)")


def make_app(pool: int):
    """A fresh database, migrated, with Seoul's districts and Gwanak's meeting points."""
    from flask_migrate import upgrade

    from safety_api import create_app
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
        admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    url = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{DB_NAME}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": REDIS_URL, "LOG_JSON": False,
                      "SOCKETIO_CHANNEL": "bench-escort", "SQLALCHEMY_ENGINE_OPTIONS": {
                          "pool_size": pool, "max_overflow": 0, "pool_timeout": 120}})
    with app.app_context():
        upgrade()
        _load_reference(app)
    return app, url.replace("+psycopg", "")


def _load_reference(app):
    from geo.boundaries import read_districts, read_dongs
    from geo.osm import read_meeting_points
    from safety_api.extensions import db
    from safety_api.services import districts, meeting_points
    data = app.config["DATA_DIR"]
    districts.load_boundaries(db.session, districts=read_districts(f"{data}/seoul_districts.geojson"),
                              dongs=read_dongs(f"{data}/seoul_admin_dongs.geojson"))
    meeting_points.load(db.session, records=read_meeting_points(f"{data}/gwanak_nangok_walk.osm"))


def make_plan(app, *, bookings: int, scouts: int, accepts: int, seed: int = 7):
    """Citizens, on-duty scouts, staggered bookings, and `accepts` distinct (scout, booking) pairs."""
    from safety_api.clock import utcnow
    from safety_api.extensions import db
    from safety_api.models import MeetingPoint, User
    from safety_api.services import escort
    from safety_api.services.escort_rules import policy_from_config
    policy = policy_from_config({**app.config, "ESCORT_SERVICE_HOURS": "Mon-Sun 00:00-24:00",
                                 "ESCORT_MIN_LEAD_MINUTES": 0, "ESCORT_SAME_DAY_ONLY": False})
    rng = random.Random(seed)
    with app.app_context():
        points = db.session.query(MeetingPoint).all()
        people = [User(phone=f"0109{i:07d}", name=f"시민{i}", password_hash="-", role="citizen")
                  for i in range(bookings)]
        crew = [User(phone=f"0108{i:07d}", name=f"스카우트{i}", password_hash="-", role="scout", district_code="11620",
                     on_duty=True) for i in range(scouts)]
        db.session.add_all(people + crew)
        db.session.commit()
        base = utcnow() + timedelta(hours=3)
        ids = [str(escort.create_booking(db.session, citizen=c, policy=policy, meeting_point_id=rng.choice(points).id,
                                         meet_at=base + timedelta(minutes=6 * i), to={"lat": 37.4752, "lon": 126.9301},
                                         now=base).id) for i, c in enumerate(people)]
        scout_ids = [str(s.id) for s in crew]
    pairs = set()
    while len(pairs) < accepts:
        pairs.add((rng.choice(scout_ids), ids[len(pairs) % len(ids)]))
    plan = sorted(pairs)
    rng.shuffle(plan)
    return plan


def reset(dsn: str):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM escort_assignments; DELETE FROM escort_events WHERE kind <> 'requested';"
                     "DELETE FROM jobs WHERE kind = 'push.user' AND payload->'data'->>'event' <> 'offered';"
                     "UPDATE escort_bookings SET status = 'requested'")


def burst(plan, attempt):
    """Run every (scout, booking) attempt at once; return (latencies in ms, outcomes, wall seconds)."""
    barrier = threading.Barrier(len(plan) + 1)
    latencies, outcomes, lock = [], {}, threading.Lock()

    def one(pair):
        barrier.wait()
        started = time.perf_counter()
        outcome = attempt(*pair)
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            latencies.append(elapsed)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    threads = [threading.Thread(target=one, args=(p,)) for p in plan]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, outcomes, time.perf_counter() - started


def one_by_one(plan, attempt):
    """The same attempts from a single client: the service time without queueing."""
    latencies = []
    for pair in plan:
        started = time.perf_counter()
        attempt(*pair)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


@contextmanager
def raw_method(dsn: str, pool_size: int):
    """The INSERT alone, on `pool_size` autocommit connections opened for this round."""
    opened = [psycopg.connect(dsn, autocommit=True) for _ in range(pool_size)]
    idle = queue.Queue()
    for conn in opened:
        idle.put(conn)

    def attempt(scout_id, booking_id):
        conn = idle.get()
        try:
            conn.execute(TAKE_SLOT, {"scout": scout_id, "booking": booking_id})
            return "taken"
        except psycopg.IntegrityError as exc:
            return f"refused: {exc.diag.constraint_name}"
        finally:
            idle.put(conn)
    try:
        yield attempt
    finally:
        for conn in opened:
            conn.close()


@contextmanager
def service_method(app):
    """`escort.accept` with a session per attempt, on the app's pool."""
    from safety_api.errors import Conflict
    from safety_api.extensions import db
    from safety_api.models import User
    from safety_api.services import escort

    def attempt(scout_id, booking_id):
        with app.app_context():
            try:
                escort.accept(db.session, scout=db.session.get(User, scout_id), booking_id=booking_id)
                return "taken"
            except Conflict as exc:
                return f"409: {exc.detail}"
            finally:
                db.session.remove()
    try:
        yield attempt
    finally:
        _close_pool(app)


@contextmanager
def http_method(app, headers: dict):
    """POST .../accept through the Flask stack, one test client per attempt."""
    def attempt(scout_id, booking_id):
        answer = app.test_client().post(f"/api/v1/escort/bookings/{booking_id}/accept", headers=headers[scout_id])
        return "taken" if answer.status_code == 200 else f"{answer.status_code}: {answer.json.get('detail')}"
    try:
        yield attempt
    finally:
        _close_pool(app)


def bearer_headers(app, scout_ids) -> dict:
    from safety_api.extensions import db
    from safety_api.models import User
    with app.app_context():
        return {sid: {"Authorization": f"Bearer {common.token_for(db.session.get(User, sid))}"} for sid in scout_ids}


def _close_pool(app):
    """Give the connections back to the server: it is shared, and the raw round opens its own."""
    from safety_api.extensions import db
    with app.app_context():
        db.engine.dispose()


def check(dsn: str, with_status: bool) -> dict:
    """Count the rows breaking each invariant (all must be 0)."""
    checks = dict(CHECKS, **(dict([STATUS_CHECK]) if with_status else {}))
    with psycopg.connect(dsn) as conn:
        return {name: len(conn.execute(sql).fetchall()) for name, sql in checks.items()}


def pct(values, q):
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accepts", type=int, default=200)
    parser.add_argument("--bookings", type=int, default=50)
    parser.add_argument("--scouts", type=int, default=40)
    parser.add_argument("--pool", type=int, default=20, help="database connections (app pool and raw alike)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    app, dsn = make_app(args.pool)
    plan = make_plan(app, bookings=args.bookings, scouts=args.scouts, accepts=args.accepts)
    headers = bearer_headers(app, {s for s, _ in plan})
    methods = {"raw": (lambda: raw_method(dsn, args.pool), False),
               "service": (lambda: service_method(app), True),
               "http": (lambda: http_method(app, headers), True)}
    results = {name: {"lat": [], "wall": [], "taken": [], "broken": 0} for name in methods}
    for round_no in range(args.rounds):
        for name, (method, status_kept) in methods.items():
            reset(dsn)
            with method() as attempt:
                latencies, outcomes, wall = burst(plan, attempt)
            broken = check(dsn, status_kept)
            res = results[name]
            res["lat"] += latencies
            res["wall"].append(wall)
            res["taken"].append(outcomes.get("taken", 0))
            res["broken"] += sum(broken.values())
            print(f"round {round_no + 1} {name:8s} taken {outcomes.get('taken', 0):3d}/{len(plan)} "
                  f"wall {wall * 1000:7.1f} ms  invariants {broken}")
            if round_no == 0:
                for outcome, count in sorted(outcomes.items(), key=lambda kv: -kv[1]):
                    print(f"    {count:4d}  {outcome}")
    solo = {}
    for name, (method, _) in methods.items():
        reset(dsn)
        with method() as attempt:
            solo[name] = statistics.median(one_by_one(plan, attempt))

    base = pct(results["raw"]["lat"], 50)
    print(f"\n{args.accepts} concurrent accepts over {args.bookings} bookings, {args.scouts} scouts, "
          f"{args.pool} connections, {args.rounds} rounds")
    print(f"{'method':8s} {'p50 ms':>8s} {'p99 ms':>8s} {'wall ms':>8s} {'taken':>6s} {'broken':>6s} {'p50/raw':>8s}"
          f" {'alone ms':>9s}")
    for name, res in results.items():
        p50, p99 = pct(res["lat"], 50), pct(res["lat"], 99)
        print(f"{name:8s} {p50:8.1f} {p99:8.1f} {statistics.median(res['wall']) * 1000:8.1f} "
              f"{statistics.median(res['taken']):6.0f} {res['broken']:6d} {p50 / base:7.1f}x {solo[name]:9.2f}")
    print("alone ms: the median of the same accepts sent one at a time by a single client")
    if any(res["broken"] for res in results.values()):
        raise SystemExit("an invariant was broken")


if __name__ == "__main__":
    main()
