"""Scenario: walkers streaming fixes, guardians, operators, SOS bursts and escort bookings, all at once.

    .venv/bin/python -m bench.scenario [--walkers 1000] [--operators 50] [--duration 60] [--fix-interval-s 5]
                                       [--guardians 200] [--on-duty 10] [--scouts 10] [--sos-burst 20]
                                       [--sos-every-s 15] [--escort-every-s 5] [--load-processes 2]
                                       [--shared-redis] [--fresh]

Two api processes (gunicorn, one gthread worker each, wsgi:app) and two worker processes (worker.py)
on the bench database `safety_bench` and a Redis of the bench's own (`--shared-redis`: db 8 of the
shared one); the workers push through firebase-admin to a FakeFCM in this process. Every client keeps
to one api process (sticky): walker i and its REST calls on process i % 2, its guardian on the other.

  ramp     `--walkers` phones connect to /mobile (in `--load-processes` processes of their own), then
           start their walk over REST (POST /walks, `--start-rate` a second) and stream one fix every
           `--fix-interval-s` along the route over `location` (one event in flight per phone);
           `--guardians` guardians, chosen at the start of the first walks, `watch` them.
  window   `--duration` seconds, measured: the fixes go on; `--operators` operators on /control (of
           whom `--on-duty` have a push token and are pushed) list the open incidents every
           `--poll-s`; every `--sos-every-s` a burst of `--sos-burst` SOS within one second, each by
           its own citizen (one in ten also sent again with the same Idempotency-Key to the other
           process, as a retrying phone would), and one operator acks about half of them; every
           `--escort-every-s` a citizen books an escort and the two scouts it is offered to accept.
  end      the phones stop and finish their walks (POST /walks/{id}/finish); the workers drain
           (every due job run, every delivery settled); then the database is checked: every SOS
           answered is one incident, every delivery delivered, every acked fix stored, every walk
           finished, no alert on an honest walk, no walk its phone never heard of (a POST /walks
           whose answer was lost), every booking confirmed by two scouts.

The servers run with SOS_ESCALATE_AFTER_S=`--escalate-after-s` (30) so that unacked incidents escalate
inside the run, and the escort service open at any hour. The report adds each process's RSS and CPU,
the machine's load, the peak PostgreSQL connections and the Redis calls (PUBLISH = socket.io emits).

Latencies: REST = request to answer; socket acks = emit to ack; SOS -> incident.created = just before
the POST to the receipt at the first (and at the last) operator; fix -> walk.position = the fix's own
client timestamp to the guardian's receipt (same machine, one clock); booking -> escort.offered = the
POST to the later of its two scouts' receipts. Throughput of the window's operations is per second of
the window; of the ramp and end operations, per second of their own span.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid

from bench import common
from bench.scenario_clients import Scenario

GWANAK_BOX = (126.9075, 37.4590, 126.9320, 37.4820)  # inside the demo street network's extent
WINDOW_OPS = ("location ack (walk fix)", "fix -> walk.position at guardian", "POST /sos",
              "POST /sos (same key, other process)", "SOS -> incident.created, first operator",
              "SOS -> incident.created, every operator", "POST /incidents/{id}/ack", "GET /incidents?status=open",
              "POST /escort/bookings", "booking -> escort.offered at both scouts", "POST /escort/bookings/{id}/accept")
OTHER_OPS = ("connect /mobile", "connect /control", "POST /walks", "watch ack", "POST /walks/{id}/finish")


def main(argv=None):
    args = parse_args(argv)
    redis = None if args.shared_redis else common.PrivateRedis(common.free_port())
    if redis:
        common.BENCH_REDIS_URL = redis.url
    try:
        started = time.time()
        load_before = os.getloadavg()
        people = set_up(args)
        print(f"set-up: {args.walkers} walkers, {args.guardians} guardians, {args.operators} operators "
              f"({args.on_duty} on duty), {args.scouts} scouts, {len(people['sos_callers'])} SOS callers, "
              f"{len(people['escort_citizens'])} escort citizens, {len(people['pairs'])} routes "
              f"({time.time() - started:.0f} s); Redis {common.BENCH_REDIS_URL}; load average "
              f"{load_before[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        result = run(args, people)
        report(args, people, result)
        print(f"total {time.time() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")
    finally:
        if redis:
            redis.stop()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--walkers", type=int, default=1000)
    parser.add_argument("--guardians", type=int, default=200, help="walkers whose walk one guardian watches")
    parser.add_argument("--operators", type=int, default=50)
    parser.add_argument("--on-duty", type=int, default=10, help="operators with a push token, pushed per SOS")
    parser.add_argument("--scouts", type=int, default=10)
    parser.add_argument("--duration", type=float, default=60, help="seconds of the measured window")
    parser.add_argument("--fix-interval-s", type=float, default=5)
    parser.add_argument("--start-rate", type=float, default=25, help="walks started a second")
    parser.add_argument("--finish-rate", type=float, default=100, help="walks finished a second at the end")
    parser.add_argument("--sos-burst", type=int, default=20)
    parser.add_argument("--sos-every-s", type=float, default=15)
    parser.add_argument("--ack-share", type=float, default=0.5)
    parser.add_argument("--escort-every-s", type=float, default=5)
    parser.add_argument("--poll-s", type=float, default=10, help="each operator lists the open incidents this often")
    parser.add_argument("--escalate-after-s", type=float, default=30, help="SOS_ESCALATE_AFTER_S of the servers")
    parser.add_argument("--threads", type=int, help="gunicorn threads per api process (default: sockets + 200)")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--drain-s", type=float, default=120, help="longest wait for the workers to drain")
    parser.add_argument("--shared-redis", action="store_true")
    parser.add_argument("--fresh", action="store_true")
    return parser.parse_args(argv)


def schedule(args) -> tuple[list, list]:
    """Offsets in the window of the SOS bursts and of the escort bookings."""
    def offsets(first, every):
        return [first + i * every for i in range(max(1, math.ceil((args.duration - first) / every)))]
    return offsets(1, args.sos_every_s), offsets(2, args.escort_every_s)


def set_up(args) -> dict:
    """The bench database with every person inserted in bulk, guardian links, routable walk pairs, tokens."""
    app = common.prepare_app(fresh=args.fresh)
    bursts, bookings = schedule(args)
    with app.app_context():
        pairs = route_pairs(app, want=30)
        users = {"walkers": insert_users(app, "citizen", args.walkers, "0101"),
                 "guardians": insert_users(app, "citizen", args.guardians, "0102"),
                 "operators": insert_users(app, "operator", args.operators, "0103", on_duty=args.on_duty),
                 "scouts": insert_users(app, "scout", args.scouts, "0104", on_duty=args.scouts),
                 "sos_callers": insert_users(app, "citizen", len(bursts) * args.sos_burst, "0105"),
                 "escort_citizens": insert_users(app, "citizen", len(bookings), "0106")}
        link_guardians(app, users["walkers"], users["guardians"])
        points = meeting_points(app)
        tokens = {role: [{"id": str(u.id), "token": common.token_for(u)} for u in people]
                  for role, people in users.items()}
    return {**tokens, "pairs": pairs, "points": points, "bursts": bursts, "bookings": bookings}


def route_pairs(app, *, want: int) -> list:
    """Origin/destination pairs 400-1,500 m apart that the route engine can walk (checked here, once)."""
    from geo.projection import haversine_m
    from safety_api.api.geodata import route_settings
    from safety_api.errors import Invalid
    from safety_api.extensions import db
    from safety_api.services import routes
    rng, pairs, tries = random.Random(7), [], 0
    while len(pairs) < want and tries < 500:
        tries += 1
        a, b = [(rng.uniform(GWANAK_BOX[1], GWANAK_BOX[3]), rng.uniform(GWANAK_BOX[0], GWANAK_BOX[2])) for _ in "ab"]
        if not 400 <= haversine_m(a[1], a[0], b[1], b[0]) <= 1500:
            continue
        try:
            routes.plan_route(db.session, settings=route_settings(app.config), origin=a, destination=b,
                              profile="safe", night=True)
        except Invalid:
            continue
        pairs.append([{"lat": round(a[0], 6), "lon": round(a[1], 6)}, {"lat": round(b[0], 6), "lon": round(b[1], 6)}])
    if not pairs:
        raise SystemExit("no routable pair in the demo street network: run `flask load-demo` on safety_bench")
    return pairs


def insert_users(app, role: str, count: int, prefix: str, *, on_duty: int = 0) -> list:
    """`count` users of a role in one transaction (one argon2 hash for all), each with a push token."""
    from safety_api.extensions import db
    from safety_api.models import PushDevice, User
    from safety_api.services.accounts import hash_secret
    password = hash_secret("bench-pass-1")
    district = "11620" if role in ("operator", "scout") else None
    users = [User(id=uuid.uuid4(), phone=f"{prefix}{i:07d}", name=f"{role}{i}", password_hash=password, role=role,
                  district_code=district, on_duty=i < on_duty) for i in range(count)]
    db.session.add_all(users)
    db.session.flush()
    pushed = users if role != "operator" else users[:on_duty]  # off-duty operators are not pushed anyway
    db.session.add_all(PushDevice(user_id=u.id, token=f"bench-{u.id}", platform="android") for u in pushed)
    db.session.commit()
    return users


def link_guardians(app, walkers, guardians):
    """Guardian g protects walker g (accepted), so walker g can choose them when starting a walk."""
    from safety_api.extensions import db
    from safety_api.models import GuardianLink
    db.session.add_all(GuardianLink(protected_id=w.id, guardian_id=g.id, status="active")
                       for w, g in zip(walkers[:len(guardians)], guardians, strict=True))
    db.session.commit()


def meeting_points(app) -> list:
    from sqlalchemy import text

    from safety_api.extensions import db
    return [str(i) for i in db.session.scalars(text(
        "SELECT id FROM meeting_points WHERE active AND district_code = '11620' ORDER BY id"))]


def run(args, people) -> dict:
    """Start FakeFCM, the api processes, the workers and the load processes; play the scenario; check."""
    from tests.support.fake_fcm import FakeFCM
    from tests.support.live import WorkerProcess
    sockets = args.walkers + args.guardians + args.operators + args.scouts
    threads = args.threads or math.ceil(sockets / 2) + 200
    fake = FakeFCM().start()
    env = common.server_env(f"bench-scenario-{uuid.uuid4().hex[:6]}", FCM_ENDPOINT=fake.url,
                            FCM_PROJECT_ID="bench-scenario", SOS_ESCALATE_AFTER_S=args.escalate_after_s,
                            ESCORT_SERVICE_HOURS="Mon-Sun 00:00-24:00", ESCORT_MIN_LEAD_MINUTES=0,
                            ESCORT_SAME_DAY_ONLY="false")
    servers, workers, loads, samplers = [], [], [], {}
    connections = PgConnections()
    try:
        for _ in range(2):
            servers.append(common.Gunicorn("wsgi:app", env, threads=threads))
            workers.append(WorkerProcess(env))
        processes = {f"api-{k + 1}": s.worker_pid() for k, s in enumerate(servers)}
        processes.update({f"worker-{k + 1}": w.proc.pid for k, w in enumerate(workers)})
        samplers = {name: common.ProcessSampler(pid) for name, pid in processes.items()}
        idle = settled_rss(processes)
        urls = [s.url for s in servers]
        print(f"2 api processes (gunicorn gthread --threads {threads}) and 2 workers up; FakeFCM {fake.url}; "
              f"first and second GET /routes per process (the first loads the street graph): "
              f"{', '.join(warm_up(url, people['pairs'][0]) for url in urls)}", flush=True)
        loads = start_loads(args, people, urls)
        generators = {"load-" + str(k + 1): x.proc.pid for k, x in enumerate(loads)}
        generators["bench"] = os.getpid()
        samplers.update({name: common.ProcessSampler(pid) for name, pid in generators.items()})
        print(f"{sum(x.ready['connected'] for x in loads)} walkers connected to /mobile in "
              f"{max(x.ready['connect_s'] for x in loads):.1f} s", flush=True)
        result = asyncio.run(Scenario(args, people, urls, loads, samplers).play())
        result["idle_mib"] = {name: idle.get(name, math.nan) for name in samplers}
        result["drain"] = drain(args)
        result["redis"] = redis_counts()
        result["pg"] = connections.stop()
        result["checks"] = verify(people, result, fake)
        result["peak_mib"] = {name: s.peak_mib for name, s in samplers.items()}
        result["server_logs"] = [s.log_path for s in servers] + [w.log.name for w in workers]
        return result
    finally:
        if connections._thread.is_alive():
            connections.stop()
        for load in loads:
            load.kill()
        for sampler in samplers.values():
            sampler.stop()
        for worker in workers:
            worker.stop()
        for server in servers:
            server.stop()
        fake.close()


class PgConnections:
    """Peak client connections to PostgreSQL (the bench database's and everyone's), sampled every 0.5 s."""

    def __init__(self):
        import threading
        self.conn = _db()
        self.max_connections = int(self.conn.execute("SHOW max_connections").fetchone()[0])
        self.peak = {"bench": 0, "all": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.5):
            bench, total = self.conn.execute("SELECT count(*) FILTER (WHERE datname = %s), count(*) "
                                             "FROM pg_stat_activity WHERE backend_type = 'client backend'",
                                             (common.BENCH_DB,)).fetchone()
            self.peak = {"bench": max(self.peak["bench"], bench), "all": max(self.peak["all"], total)}

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        self.conn.close()
        return {**self.peak, "max": self.max_connections}


def redis_counts() -> dict:
    """Calls of the Redis commands the api processes and workers make, from INFO commandstats."""
    import redis
    stats = redis.Redis.from_url(common.BENCH_REDIS_URL).info("commandstats")
    return {name.removeprefix("cmdstat_"): row["calls"] for name, row in stats.items()
            if name in ("cmdstat_publish", "cmdstat_evalsha", "cmdstat_set", "cmdstat_get")}


def warm_up(url: str, pair: list) -> str:
    """Two route requests: a real deployment has loaded its street graph before the evening's first walk."""
    import requests
    origin, destination = (f"{p['lat']},{p['lon']}" for p in pair)
    query = {"from": origin, "to": destination, "profile": "safe"}
    times = []
    for _ in range(2):
        started = time.perf_counter()
        requests.get(f"{url}/api/v1/routes", params=query, timeout=60).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return f"{times[0]:.0f} / {times[1]:.0f} ms"


def settled_rss(processes: dict, timeout_s: float = 30) -> dict:
    """RSS once every process has imported the app (a worker's RSS stops growing), before any load."""
    deadline, last = time.time() + timeout_s, {}
    while True:
        now = {name: common.rss_mib(pid) for name, pid in processes.items()}
        if (last and all(abs(now[n] - last[n]) < 1 and now[n] > 50 for n in now)) or time.time() > deadline:
            return now
        last = now
        time.sleep(1)


def start_loads(args, people, urls) -> list:
    """Walkers in processes of their own; walker i on api process i % 2, with guardian i if there is one."""
    walkers = [{"i": i, "token": w["token"], "server": i % 2, "pair": people["pairs"][i % len(people["pairs"])],
                "guardian_ids": [people["guardians"][i]["id"]] if i < args.guardians else []}
               for i, w in enumerate(people["walkers"])]
    n = args.load_processes
    rate = args.start_rate / n
    return [LoadProcess({"urls": urls, "walkers": walkers[k::n], "interval_s": args.fix_interval_s,
                         "start_rate": rate, "finish_rate": args.finish_rate / n}) for k in range(n)]


class LoadProcess:
    """One `bench.scenario_clients` process: commands on stdin, one JSON line per answer on stdout."""

    def __init__(self, spec):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec_file:
            json.dump(spec, spec_file)
        self.spec_path = spec_file.name
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.scenario_clients", self.spec_path],
                                     cwd=common.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self.read()
        if "connected" not in self.ready:
            raise RuntimeError("a load process failed to start")

    def send(self, command: str):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict:
        return json.loads(self.proc.stdout.readline() or "{}")

    async def answer(self) -> dict:
        return await asyncio.get_running_loop().run_in_executor(None, self.read)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.unlink(self.spec_path)


def _db():
    import psycopg
    return psycopg.connect(common.ADMIN_DSN.rsplit("/", 1)[0] + f"/{common.BENCH_DB}", autocommit=True)


def drain(args) -> dict:
    """Wait until no job is due and every delivery is settled (or `--drain-s` passes)."""
    started = time.time()
    with _db() as conn:
        while True:
            due, unsettled = conn.execute(
                "SELECT (SELECT count(*) FROM jobs WHERE status IN ('pending', 'running') AND run_at <= now()),"
                " (SELECT count(*) FROM deliveries WHERE status NOT IN ('delivered', 'dead', 'failed'))").fetchone()
            if (due == 0 and unsettled == 0) or time.time() - started > args.drain_s:
                return {"s": time.time() - started, "due_jobs": due, "unsettled": unsettled}
            time.sleep(0.5)


def verify(people, result, fake) -> list:
    """(check, passed, detail) rows read from the database after the drain."""
    rec, sos = result["rec"], result["sos"]
    with _db() as conn:
        def one(sql, *params):
            return conn.execute(sql, params).fetchone()[0]

        incidents = one("SELECT count(*) FROM incidents")
        duplicates = one("SELECT count(*) FROM (SELECT 1 FROM incidents GROUP BY caller_id, idempotency_key "
                         "HAVING count(*) > 1) d")
        missing = one("SELECT count(*) FROM unnest(%s::uuid[]) i WHERE i NOT IN (SELECT id FROM incidents)",
                      list(sos["ids"]))
        acked = one("SELECT count(*) FROM incidents WHERE status = 'acknowledged'")
        escalated = one("SELECT count(*) FROM incidents WHERE escalated_at IS NOT NULL")
        deliveries = dict(conn.execute("SELECT status, count(*) FROM deliveries GROUP BY 1").fetchall())
        by_reason = dict(conn.execute("SELECT reason, count(*) FROM deliveries GROUP BY 1 ORDER BY 1").fetchall())
        jobs = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1").fetchall())
        walks = dict(conn.execute("SELECT status, count(*) FROM walks GROUP BY 1").fetchall())
        answered = list(result["walks"].values())
        honest_alerts = dict(conn.execute("SELECT kind, count(*) FROM walk_alerts WHERE walk_id = ANY(%s::uuid[]) "
                                          "GROUP BY 1", (answered,)).fetchall())
        orphans = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE last_fix IS NULL), (SELECT count(*) FROM walk_alerts a "
            "WHERE NOT a.walk_id = ANY(%s::uuid[])) FROM walks WHERE NOT id = ANY(%s::uuid[])",
            (answered, answered)).fetchone()
        escalations = one("SELECT count(*) FROM incidents WHERE trigger = 'walk_escalation'")
        fixes = one("SELECT count(*) FROM location_fixes WHERE subject_kind = 'walk'")
        bookings = dict(conn.execute("SELECT status, count(*) FROM escort_bookings GROUP BY 1").fetchall())
        pairs = one("SELECT count(*) FROM (SELECT booking_id FROM escort_assignments WHERE released_at IS NULL "
                    "GROUP BY 1 HAVING count(*) = 2) p")
    sends = len(fake.sent())
    total_deliveries = sum(deliveries.values())
    accepted = rec.counts.get("fixes accepted", 0)
    return [
        ("every SOS answered is one incident, no other", incidents == len(sos["ids"]) and missing == 0,
         f"{sos['keys']} SOS (unique keys), {len(sos['ids'])} answered with an incident, {incidents} incidents in the "
         f"database, {missing} answered ids missing; {sos['keys'] - len(sos['ids'])} refused (503 or no answer: "
         f"counted under errors; a phone retries with the same key)"),
        ("no duplicate incidents", duplicates == 0, f"{duplicates} (caller, key) pairs with more than one incident"),
        ("acks recorded", acked == sos["acks"], f"{sos['acks']} acks answered 200, {acked} incidents acknowledged; "
                                                f"{escalated} escalated (unacked after the escalation delay)"),
        ("every delivery delivered", total_deliveries > 0 and deliveries.get("delivered", 0) == total_deliveries,
         f"{deliveries} by status; by reason {by_reason}; FakeFCM received {sends} sends"),
        ("no job failed", not jobs.get("failed"), f"jobs by status {jobs}"),
        ("every accepted fix stored", fixes >= accepted,
         f"{accepted} fixes acked as accepted, {fixes} stored ({fixes - accepted} stored whose ack was an error or "
         f"lost: the phone would resend them and the server drop them as duplicates)"),
        ("every walk started is finished", walks.get("finished", 0) >= len(result["walks"]),
         f"walks by status {walks} ({len(result['walks'])} answered 201 and finished by their phone; an 'active' "
         f"one is a walk whose POST /walks answer the phone never got)"),
        ("no alert on the phones' walks", not honest_alerts and not escalations,
         f"alerts {honest_alerts or 'none'} on the {len(answered)} walks the phones streamed; {escalations} walk "
         f"escalations"),
        ("no walk the phone does not know of", orphans[0] == 0,
         f"{orphans[0]} walks created whose POST /walks answer was lost ({orphans[1]} never got a fix; "
         f"{orphans[2]} alerts raised on them)"),
        ("every booking confirmed by its pair", set(bookings) == {"confirmed"} and pairs == len(result["bookings"]),
         f"bookings by status {bookings}; {pairs} with two scouts; {len(result['bookings'])} booked"),
    ]


def report(args, people, result):
    rec, (w0, w1) = result["rec"], result["window"]
    span = w1 - w0
    print(f"\n== scenario: {args.walkers} walkers (one fix / {args.fix_interval_s:g} s), {args.guardians} guardians, "
          f"{args.operators} operators ({args.on_duty} pushed), {args.scouts} scouts; SOS bursts of {args.sos_burst} "
          f"every {args.sos_every_s:g} s; a booking every {args.escort_every_s:g} s; window {span:.1f} s; "
          f"load average {result['loadavg'][0]:.1f} / {result['loadavg'][1]:.1f} / {result['loadavg'][2]:.1f} "
          f"(1/5/15 min) on {os.cpu_count()} CPUs")
    print(f"  {'operation':44s} {'count':>7s} {'per s':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for op in WINDOW_OPS + OTHER_OPS:
        samples = rec.samples.get(op, [])
        if op in WINDOW_OPS:
            values = [ms for t, ms in samples if w0 <= t <= w1]
            rate = len(values) / span
        else:
            values = [ms for _, ms in samples]
            ends = [t for t, _ in samples]
            rate = len(values) / (max(ends) - min(ends)) if len(ends) > 1 and max(ends) > min(ends) else math.nan
        stats = common.percentiles(values)
        print(f"  {op:44s} {stats['n']:7d} {rate:7.1f} {stats['p50']:8.1f} {stats['p99']:8.1f} {stats['max']:8.1f}")
    accepted = rec.counts.get("fixes accepted", 0)
    in_window = len([1 for t, _ in rec.samples.get("location ack (walk fix)", []) if w0 <= t <= w1])
    print(f"  fixes: {accepted} accepted in all, {rec.counts.get('fixes rejected', 0)} rejected; "
          f"{in_window / span:.0f} fixes/s in the window (target {args.walkers / args.fix_interval_s:.0f})")
    print(f"  received: {', '.join(f'{k} {v}' for k, v in sorted(rec.counts.items()) if 'received' in k)}")
    missed = rec.counts.get("fix turns missed (ack slower than the interval)", 0)
    print(f"  errors: {dict(sorted(rec.errors.items())) or 'none'}; fix turns missed {missed}")
    for namespace in ("/mobile", "/control"):
        times = [t - w0 for t, _ in rec.samples.get(f"disconnect {namespace}", [])]
        if times:
            print(f"  {len(times)} {namespace} sockets dropped, {min(times):.0f} to {max(times):.0f} s into the window")
    print("  process          RSS idle  end of window  peak   CPU s in window  (load-N, bench: the load generators)")
    machine = {k: result["after"]["machine"][k] - result["before"]["machine"][k] for k in ("busy_s", "all_s")}
    ours = sum(a["cpu_s"] - result["before"][n]["cpu_s"] for n, a in result["after"].items() if n != "machine")
    print(f"  machine busy {100 * machine['busy_s'] / machine['all_s']:.0f}% of {os.cpu_count()} CPUs in the window "
          f"({machine['busy_s']:.0f} CPU s; the processes below {ours:.0f} CPU s, the rest PostgreSQL, Redis and "
          f"other work on the machine)")
    for name, after in ((n, a) for n, a in result["after"].items() if n != "machine"):
        print(f"    {name:12s} {result['idle_mib'][name]:9.0f} {after['rss_mib']:14.0f} {result['peak_mib'][name]:6.0f}"
              f" MiB {after['cpu_s'] - result['before'][name]['cpu_s']:8.1f}")
    pg, redis = result["pg"], result["redis"]
    print(f"  PostgreSQL client connections: peak {pg['bench']} to {common.BENCH_DB}, {pg['all']} in all "
          f"(max_connections {pg['max']}, shared with other work); Redis calls in the run: "
          f"{', '.join(f'{k} {v}' for k, v in sorted(redis.items()))}"
          f"{' (shared Redis: includes other work)' if args.shared_redis else ''}")
    d = result["drain"]
    print(f"  drain: {d['s']:.1f} s until no job was due and every delivery settled "
          f"(left: {d['due_jobs']} due jobs, {d['unsettled']} unsettled deliveries)")
    print("  durability:")
    for name, passed, detail in result["checks"]:
        print(f"    [{'ok' if passed else 'FAILED'}] {name}: {detail}")
    print(f"  logs: {' '.join(result['server_logs'])}")


if __name__ == "__main__":
    main()
