"""What one process's sweep of its open sockets costs (`realtime.open_sockets.Sweep`), against the two reads alone.

    .venv/bin/python -m bench.sweep [--sockets 5000] [--rounds 30]

One api process holds `--sockets` sockets (5,000: the ingest benchmark's goal), each of its own person and
sign-in. The sweep checks them all against the database every SOCKET_SWEEP_S (30 s). Measured in the same run:
- sweep: `Sweep.sweep()` as the process runs it (SQLAlchemy, the app's session, the comparison in Python);
- raw:   the same two SELECTs, in the same chunks of SWEEP_CHUNK sockets, through psycopg with the ids as
         arrays: the floor of any sweep.
Then 1 % of the people are suspended behind the sweep's back, and one sweep must find exactly them.
"""
from __future__ import annotations

import argparse
import time
import uuid

import psycopg

from bench import common

RAW_PEOPLE = "SELECT id, district_code FROM users WHERE id = ANY(%s) AND suspended_at IS NULL"
RAW_ENDED = ("SELECT jti FROM refresh_tokens WHERE jti = ANY(%s) AND (revoked_at IS NOT NULL OR expires_at <= now())")


def seed(app, count: int) -> list[tuple[str, str]]:
    """`count` citizens, each with one open sign-in, in two statements; returns (user id, sign-in) pairs."""
    from sqlalchemy import text

    from safety_api.extensions import db
    with app.app_context():
        db.session.execute(text("""
            INSERT INTO users (id, phone, name, password_hash, role)
            SELECT gen_random_uuid(), '0105' || lpad(n::text, 7, '0'), '시민' || n, 'not-a-hash', 'citizen'
            FROM generate_series(1, :count) n"""), {"count": count})
        db.session.execute(text("""
            INSERT INTO refresh_tokens (jti, user_id, expires_at)
            SELECT 'bench-' || id, id, now() + interval '30 days' FROM users"""))
        db.session.commit()
        return [(str(uid), f"bench-{uid}") for uid in db.session.scalars(text("SELECT id FROM users"))]


def time_sweep(app, sweep, rounds: int) -> list[float]:
    times = []
    with app.app_context():
        for _ in range(rounds):
            started = time.perf_counter()
            closed = sweep.sweep()
            times.append((time.perf_counter() - started) * 1000)
            assert closed == [], "a socket of a person in good standing was closed"
    return times


def time_raw(people, rounds: int) -> list[float]:
    """The same reads in the same chunks as the sweep (SWEEP_CHUNK sockets per pair), straight through psycopg."""
    from safety_api.realtime.open_sockets import SWEEP_CHUNK
    chunks = [people[i:i + SWEEP_CHUNK] for i in range(0, len(people), SWEEP_CHUNK)]
    times = []
    with psycopg.connect(common.BENCH_DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")) as conn:
        for _ in range(rounds):
            started = time.perf_counter()
            for chunk in chunks:
                conn.execute(RAW_PEOPLE, ([uuid.UUID(uid) for uid, _ in chunk],)).fetchall()
                conn.execute(RAW_ENDED, ([sign_in for _, sign_in in chunk],)).fetchall()
                conn.commit()
            times.append((time.perf_counter() - started) * 1000)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    from safety_api.realtime.open_sockets import LocalSocket, Sweep
    app = common.prepare_app()
    people = seed(app, args.sockets)
    app.config["SOCKET_SWEEP_S"] = 10 ** 9  # the process's own timer never fires: the bench sweeps by hand
    sweep = Sweep(app)
    for index, (user_id, sign_in) in enumerate(people):
        sweep.hold(LocalSocket("/mobile", f"sid-{index}", user_id, sign_in, None))

    time_raw(people, 3), time_sweep(app, sweep, 3)  # warm both: connections, statement caches
    raw, swept = [], []
    for _ in range(3):  # interleaved, so that the machine's drift falls on both alike
        raw += time_raw(people, args.rounds // 3)
        swept += time_sweep(app, sweep, args.rounds // 3)
    raw_stats, sweep_stats = common.percentiles(raw), common.percentiles(swept)

    from sqlalchemy import text

    from safety_api.extensions import db
    with app.app_context():
        suspended = set(map(str, db.session.scalars(text(
            "UPDATE users SET suspended_at = now() WHERE id IN (SELECT id FROM users ORDER BY id LIMIT :n) "
            "RETURNING id"), {"n": max(1, args.sockets // 100)})))
        db.session.commit()
        closed = {socket.user_id for socket in sweep.sweep()}
    print(f"{args.sockets} sockets held, {len(swept)} sweeps of each kind")
    print(f"raw    {common.fmt_ms(raw_stats)}")
    print(f"sweep  {common.fmt_ms(sweep_stats)}   p50 ratio sweep/raw {sweep_stats['p50'] / raw_stats['p50']:.2f}")
    print(f"per socket: {sweep_stats['p50'] * 1000 / args.sockets:.1f} us; every 30 s that is "
          f"{sweep_stats['p50'] / 30_000 * 100:.3f} % of one core")
    print(f"suspended behind its back: {len(suspended)}; closed by one sweep: {len(closed)}; "
          f"exactly them: {closed == suspended}")


if __name__ == "__main__":
    main()
