"""SOS to operator: POST /api/v1/sos until the operator's socket has `incident.created`, under socket load.

    .venv/bin/python -m bench.sos [--alarms 500] [--sockets 500] [--fixes-per-s 1000] [--batch 10]
                                  [--rate 10] [--order app,bare] [--split] [--own-redis 6391] [--profile FILE]
    .venv/bin/python -m bench.sos --steps 300      # in-process: each step of the SOS handler timed

Each phase starts one gunicorn (gthread, one worker, --threads 700) and, in a load process of its own,
connects `--sockets` citizens to /mobile. Every citizen has an open incident (made at set-up) and sends
`location` {kind: "sos", id, fixes} for it, `--batch` fixes per event, the events spread evenly over the
sockets and over time: target fixes/s = events/s x batch; achieved fixes/s counts the fixes the server
acked as `accepted`. Like a phone, a socket sends nothing while its previous event is unacked (that turn
is counted as `skipped`), so an overloaded server shows as achieved < target, not as an endless queue.
One operator of 11620 on /control, in this process, receives `incident.created` and the batched
`positions`. Then `--alarms` SOS are started at a steady `--rate` per second (evenly spaced, not waiting
for earlier ones, so a slow server cannot slow the arrivals down), each by its own citizen with a unique
Idempotency-Key; latency = the operator's receipt of the matching id (matched by id) - just before the
POST. `--warmup` alarms go first and are not counted. Phase `bare` repeats all of it on
bench/bare_socketio_app.py (POST /emit -> emit to the room over the same Redis; same sockets, the same
location load acked with counts and no database, the same payload size). Phase `floor` (`--order
app,bare,floor`) is the bare app's POST /emit-durable: one committed INSERT of the payload, then the emit.
Database `safety_bench`, Redis db 8 (bench/common.py).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

from bench import common

GWANAK = {"lat": 37.4705, "lon": 126.9190}
TARGETS = {"app": ("wsgi:app", "/api/v1/sos"), "bare": ("bench.bare_socketio_app:app", "/emit"),
           "floor": ("bench.bare_socketio_app:app", "/emit-durable")}  # bare + one committed INSERT


def main(argv=None):
    args = parse_args(argv)
    if args.load_worker:
        return asyncio.run(load_worker(json.load(open(args.load_worker))))
    redis = common.PrivateRedis(args.own_redis) if args.own_redis else None
    if redis:
        common.BENCH_REDIS_URL = redis.url
    try:
        started = time.time()
        people = set_up(args)
        print(f"set-up: {people['citizens']} citizens with an open incident, 1 operator "
              f"({time.time() - started:.0f} s); Redis {common.BENCH_REDIS_URL}", flush=True)
        if args.steps:
            return steps(people, args.steps, args.batch)
        results = {kind: run_phase(kind, args, people) for kind in args.order.split(",")}
        report(results, args)
        print(f"total {time.time() - started:.0f} s")
    finally:
        if redis:
            redis.stop()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alarms", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20, help="alarms fired first and not counted")
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--fixes-per-s", type=float, default=1000)
    parser.add_argument("--batch", type=int, default=10, help="fixes per location event")
    parser.add_argument("--rate", type=float, default=10, help="alarms started per second, evenly spaced")
    parser.add_argument("--threads", type=int, default=700)
    parser.add_argument("--load-warmup-s", type=float, default=3)
    parser.add_argument("--order", default="app,bare")
    parser.add_argument("--split", action="store_true",
                        help="app: a second gunicorn takes the POSTs; sockets stay on the first (same Redis queue)")
    parser.add_argument("--own-redis", type=int, metavar="PORT", help="run a private redis-server on PORT")
    parser.add_argument("--async-mode", default="threading", choices=["threading", "gevent"],
                        help="the servers' Socket.IO mode, app and baseline alike (gevent: gunicorn -k gevent)")
    parser.add_argument("--profile", help="py-spy the app's worker during the alarms; collapsed stacks here")
    parser.add_argument("--steps", type=int, help="instead: in-process, time N SOS and N `location` services")
    parser.add_argument("--fresh", action="store_true", help="drop and rebuild safety_bench first")
    parser.add_argument("--load-worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def set_up(args) -> dict:
    """Migrated bench database, the people and one open incident per citizen (the location load's target)."""
    from geoalchemy2 import WKTElement

    from safety_api.extensions import db
    from safety_api.models import Incident
    from safety_api.services import sos_raise
    from safety_api.services.incident_views import operator_view
    app = common.prepare_app(fresh=args.fresh)
    with app.app_context():
        operator, citizens = common.create_people(app, citizens=max(args.sockets, args.alarms, args.warmup))
        # One real SOS gives the payload every baseline alarm carries (same size as the app's).
        sample, _ = sos_raise.raise_sos(db.session, caller=citizens[0], **GWANAK, accuracy_m=10.0, trigger="button",
                                        idempotency_key="sample", escalate_after_s=3600)
        # The location load's targets: plain open incidents, inserted in one go.
        background = [Incident(caller_id=c.id, idempotency_key=f"background-{i}", trigger="button", priority="normal",
                               district_code="11620", accuracy_m=10.0, nearest_cctvs=[],
                               location=WKTElement(f"POINT({GWANAK['lon']} {GWANAK['lat'] + i * 1e-5})", srid=4326))
                      for i, c in enumerate(citizens[:args.sockets])]
        db.session.add_all(background)
        db.session.commit()
        return {"app": app, "operator": common.token_for(operator), "tokens": [common.token_for(c) for c in citizens],
                "open_ids": [str(b.id) for b in background], "citizens": len(citizens),
                "citizen_ids": [c.id for c in citizens[:args.sockets]],
                "sample_view": operator_view(sample)}


def run_phase(kind: str, args, people) -> dict:
    """One server (two with --split), the load process, then the alarms; returns the figures."""
    target, _ = TARGETS[kind]
    print(f"[{kind}] starting gunicorn {target} --threads {args.threads}", flush=True)
    run_id = common.redis_run_id(common.BENCH_REDIS_URL)
    env = common.server_env(f"bench-sos-{kind}-{uuid.uuid4().hex[:6]}", SOCKETIO_ASYNC_MODE=args.async_mode)
    server = api = common.Gunicorn(target, env, threads=args.threads)
    load = sampler = None
    try:
        if args.split and kind == "app":
            api = common.Gunicorn(target, env, threads=50)
        sampler = common.ProcessSampler(server.worker_pid())
        load = LoadProcess(server.url, people, args)
        print(f"[{kind}] {load.ready['connected']} sockets connected in {load.ready['connect_s']:.1f} s "
              f"{load.ready['errors'] or ''}; location load {args.fixes_per_s:.0f} fixes/s in batches of {args.batch}",
              flush=True)
        profile = (lambda: common.PySpy(args.profile, server.worker_pid())) if kind == "app" and args.profile else None
        measured = asyncio.run(measure(kind, server.url, api.url, people, args, load,
                                       common.CpuBudget(**cpu_groups(server, api, load)), profile))
        measured["load"] = load.stop()
        measured["rss_mib"] = {"end": common.rss_mib(server.worker_pid()), "peak": sampler.peak_mib}
        if api is not server:
            measured["rss_mib"]["POST worker"] = common.rss_mib(api.worker_pid())
        measured["redis_restarted"] = common.redis_run_id(common.BENCH_REDIS_URL) != run_id
        return measured
    finally:
        if load:
            load.kill()
        if sampler:
            sampler.stop()
        for gunicorn in {server, api}:
            gunicorn.stop()


def cpu_groups(server, api, load) -> dict:
    """The processes whose CPU the report names; the rest of the machine is 'everything else'."""
    import psutil
    port = f":{common.BENCH_REDIS_URL.split(':')[2].split('/')[0]}"
    groups = {"api worker": lambda: common.processes_of([server.worker_pid()]),
              "postgres": common.postgres_backends,
              "redis": lambda: [p for p in psutil.process_iter(["name", "cmdline"])
                                if p.info["name"] == "redis-server" and port in " ".join(p.info["cmdline"] or [])],
              "load generator": lambda: common.processes_of([load.proc.pid]),
              "operator + alarms (this process)": lambda: common.processes_of([os.getpid()])}
    if api is not server:
        groups["POST worker (--split)"] = lambda: common.processes_of([api.worker_pid()])
    return groups


async def measure(kind, url, post_url, people, args, load, budget, profile) -> dict:
    """Connect the operator, start the location load, fire the warm-up then the measured alarms."""
    import aiohttp
    import socketio
    operator = socketio.AsyncClient(reconnection=False)
    arrivals, waiters, counts = {}, {}, {"positions": 0, "position_items": 0, "disconnects": 0}

    @operator.on("incident.created", namespace="/control")
    def _created(data):
        arrivals[data["id"]] = time.perf_counter()
        if data["id"] in waiters:
            waiters.pop(data["id"]).set()

    @operator.on("positions", namespace="/control")
    def _positions(data):
        counts["positions"] += 1
        counts["position_items"] += len(data["items"])

    @operator.on("disconnect", namespace="/control")
    def _gone(*_):
        counts["disconnects"] += 1

    await operator.connect(url, namespaces=["/control"], auth={"token": people["operator"]},
                           transports=["websocket"], wait_timeout=10)
    load.go()  # the console was there first, as it is in a control room
    await asyncio.sleep(args.load_warmup_s)
    fire = Alarm(kind, post_url, people, arrivals, waiters)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        await at_steady_rate(fire, http, args.warmup, args.rate)
        fire.reset()
        profiler = profile() if profile else None
        load_avg = os.getloadavg()[0]
        budget.start()
        started = time.perf_counter()
        await at_steady_rate(fire, http, args.alarms, args.rate)
        wall = time.perf_counter() - started
    result = {"latency_ms": fire.latencies, "http_ms": fire.http, "errors": fire.errors, "wall_s": wall,
              "cpu": budget.stop(), "loadavg": (load_avg, os.getloadavg()[0]), **counts}
    if profiler:
        profiler.stop()
    await operator.disconnect()
    return result


async def at_steady_rate(fire, http, count: int, rate: float):
    """Start alarm i at i / rate seconds whether or not the earlier ones are answered (no coordinated omission)."""
    tasks, started = [], time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(http, i)))
    await asyncio.gather(*tasks)


class Alarm:
    """Fire one alarm and wait for its incident.created; keeps latencies and errors."""

    def __init__(self, kind, url, people, arrivals, waiters):
        self.kind, self.people, self.arrivals, self.waiters = kind, people, arrivals, waiters
        self.url = url + TARGETS[kind][1]
        self.reset()

    def reset(self):
        self.latencies, self.http, self.errors = [], [], {}

    def _error(self, what):
        self.errors[what] = self.errors.get(what, 0) + 1

    def _body(self, i):
        spot = {"lat": GWANAK["lat"] + (i % 50) * 2e-5, "lon": GWANAK["lon"] + (i % 7) * 2e-5, "accuracy_m": 12}
        if self.kind == "app":
            return spot
        return {"id": str(uuid.uuid4()), "payload": {**self.people["sample_view"], **spot, "id": None}}

    async def __call__(self, http, i):
        headers = {"Authorization": f"Bearer {self.people['tokens'][i]}", "Idempotency-Key": uuid.uuid4().hex}
        body = self._body(i)
        started = time.perf_counter()
        try:
            async with http.post(self.url, json=body, headers=headers) as answer:
                payload = await answer.json(content_type=None)
                answered = time.perf_counter()
        except (asyncio.TimeoutError, OSError) as exc:
            return self._error(f"http {exc.__class__.__name__}")
        if answer.status != 201:
            return self._error(f"http {answer.status}")
        incident_id = payload["incident"]["id"]
        if incident_id not in self.arrivals:
            event = self.waiters[incident_id] = asyncio.Event()
            try:
                await asyncio.wait_for(event.wait(), 5)
            except asyncio.TimeoutError:
                self.waiters.pop(incident_id, None)
                return self._error("no incident.created within 5 s")
        self.latencies.append((self.arrivals.pop(incident_id) - started) * 1000)
        self.http.append((answered - started) * 1000)


class LoadProcess:
    """The citizens' sockets and their location load, in a process of their own (`--load-worker`)."""

    def __init__(self, url, people, args):
        n = args.sockets
        spec = {"url": url, "tokens": people["tokens"][:n], "ids": people["open_ids"][:n],
                "fixes_per_s": args.fixes_per_s, "batch": args.batch}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec_file:
            json.dump(spec, spec_file)
        self.spec_path = spec_file.name
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.sos", "--load-worker", self.spec_path],
                                     cwd=common.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = json.loads(self.proc.stdout.readline() or "{}")
        if "connected" not in self.ready:
            raise RuntimeError("the load process failed to start")

    def go(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> dict:
        self.proc.stdin.close()
        result = json.loads(self.proc.stdout.readline() or "{}")
        self.proc.wait(30)
        return result

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.unlink(self.spec_path)


async def load_worker(spec):
    """Connect every citizen, say so, on "go" send location events until stdin closes, print the counts."""
    import socketio
    stats = {"sent_events": 0, "sent_fixes": 0, "skipped": 0, "acked": 0, "accepted": 0, "rejected": 0,
             "ack_errors": 0, "connect_errors": {}, "disconnects": 0, "ack_ms": []}
    gate, started = asyncio.Semaphore(50), time.perf_counter()

    async def connect(token):
        client = socketio.AsyncClient(reconnection=False)
        client.on("disconnect", lambda *_: stats.__setitem__("disconnects", stats["disconnects"] + 1),
                  namespace="/mobile")
        async with gate:
            try:
                await client.connect(spec["url"], namespaces=["/mobile"], auth={"token": token},
                                     transports=["websocket"], wait_timeout=20)
                return client
            except Exception as exc:  # a refused or timed-out socket is counted, the load goes on without it
                reason = repr(exc)[:120]
                stats["connect_errors"][reason] = stats["connect_errors"].get(reason, 0) + 1
                return None

    connected = await asyncio.gather(*(connect(t) for t in spec["tokens"]))
    pairs = [(c, i) for c, i in zip(connected, spec["ids"], strict=True) if c is not None]
    print(json.dumps({"connected": len(pairs), "connect_s": time.perf_counter() - started,
                      "errors": stats["connect_errors"]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stats["duration_s"] = await send_locations(pairs, spec, stats, stop)
    await asyncio.sleep(1)  # late acks
    stats["ack_ms"] = common.percentiles(stats["ack_ms"])
    print(json.dumps(stats), flush=True)
    await asyncio.gather(*(c.disconnect() for c, _ in pairs), return_exceptions=True)


async def send_locations(pairs, spec, stats, stop) -> float:
    """Round-robin `location` events at fixes_per_s / batch per second until `stop`; one in flight per socket."""
    batch, events_per_s = spec["batch"], spec["fixes_per_s"] / spec["batch"]
    started = time.perf_counter()
    if events_per_s <= 0 or not pairs:
        await stop
        return time.perf_counter() - started
    spacing = len(pairs) / events_per_s / batch  # seconds between a socket's consecutive fixes
    last_t, busy, turns = [0.0] * len(pairs), [False] * len(pairs), 0
    while not stop.done():
        due = int((time.perf_counter() - started) * events_per_s) - turns
        for _ in range(max(0, due)):
            k, turns = turns % len(pairs), turns + 1
            if busy[k]:
                stats["skipped"] += 1
                continue
            now = time.time()
            times = [max(now - (batch - 1 - j) * spacing, last_t[k] + 0.001 * (j + 1)) for j in range(batch)]
            last_t[k], busy[k] = times[-1], True
            fixes = [{"lat": GWANAK["lat"] + (k % 100) * 1e-5, "lon": GWANAK["lon"] + j * 1e-5, "accuracy_m": 8,
                      "t": t} for j, t in enumerate(times)]
            client, incident_id = pairs[k]
            await client.emit("location", {"kind": "sos", "id": incident_id, "fixes": fixes}, namespace="/mobile",
                              callback=_acker(stats, busy, k, time.perf_counter()))
            stats["sent_events"] += 1
            stats["sent_fixes"] += batch
        await asyncio.sleep(0.005)
    return time.perf_counter() - started


def _acker(stats, busy, k, sent_at):
    def ack(answer):
        busy[k] = False
        stats["acked"] += 1
        stats["ack_ms"].append((time.perf_counter() - sent_at) * 1000)
        stats["ack_errors"] += "error" in answer
        stats["accepted"] += answer.get("accepted", 0)
        stats["rejected"] += answer.get("rejected", 0)
    return ack


def steps(people, n: int, batch: int):
    """In this process: n SOS through the Flask test client, then n `location` services; steps and SQL timed."""
    from safety_api import security
    from safety_api.extensions import db, redis_store
    from safety_api.models import User
    from safety_api.services import sos_ingest, sos_raise
    app, clock = people["app"], StepClock(people["app"])
    for module, name in [(security, "verify_jwt_in_request"), (sos_raise, "read_scene"),
                         (sos_raise.deliveries, "plan_many"), (sos_raise.broadcast, "to_district"),
                         (sos_ingest, "insert_fixes")]:
        setattr(module, name, clock.timed(name, getattr(module, name)))
    client = app.test_client()

    def sos(i):
        headers = {"Authorization": f"Bearer {people['tokens'][i % len(people['tokens'])]}",
                   "Idempotency-Key": uuid.uuid4().hex}
        assert client.post("/api/v1/sos", json={**GWANAK, "accuracy_m": 12}, headers=headers).status_code == 201

    def location(i):
        k = i % len(people["open_ids"])
        fixes = [{**GWANAK, "accuracy_m": 8, "t": time.time() - (batch - j) * 0.01} for j in range(batch)]
        with app.app_context():
            user = db.session.get(User, people["citizen_ids"][k])
            answer = sos_ingest.record_fixes(db.session, redis_store.client, user=user,
                                            incident_id=uuid.UUID(people["open_ids"][k]), raw_fixes=fixes,
                                            now=sos_raise.utcnow())
            db.session.remove()
        assert answer["accepted"] == batch, answer

    clock.run("POST /api/v1/sos in-process (Flask test client)", n, sos)
    clock.run(f"`location` service (session.get(User) + record_fixes, {batch} fixes)", n, location)


class StepClock:
    """Inclusive time of wrapped functions, and every SQL statement's cursor.execute time, per operation."""

    def __init__(self, app):
        from sqlalchemy import event

        from safety_api.extensions import db
        self.spent, self.sql = {}, {}
        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", lambda conn, *_: conn.info.__setitem__("t", time.perf_counter()))
        event.listen(engine, "after_cursor_execute", lambda conn, cursor, statement, *_: self.sql.setdefault(
            " ".join(statement.split()[:4])[:48], []).append((time.perf_counter() - conn.info["t"]) * 1000))

    def timed(self, label, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent.setdefault(label, []).append((time.perf_counter() - started) * 1000)
        return wrapper

    def run(self, title, n, operation, warm=20):
        for i in range(warm):
            operation(i)
        self.spent.clear()
        self.sql.clear()
        wall, cpu_started = [], time.process_time()
        for i in range(n):
            started = time.perf_counter()
            operation(warm + i)
            wall.append((time.perf_counter() - started) * 1000)
        cpu_ms = (time.process_time() - cpu_started) * 1000 / n
        print(f"\n{title}, {n} times: {common.fmt_ms(common.percentiles(wall))}; CPU of this process "
              f"{cpu_ms:.1f} ms each")
        for label, values in self.spent.items():
            print(f"  {label:40s} {sum(values) / n:6.2f} ms ({len(values) / n:g} per operation, inclusive)")
        print(f"  SQL: {sum(map(len, self.sql.values())) / n:.1f} statements, "
              f"{sum(map(sum, self.sql.values())) / n:.2f} ms in cursor.execute per operation")
        for label, values in sorted(self.sql.items(), key=lambda kv: -sum(kv[1])):
            print(f"    {len(values) / n:4.1f} x {sum(values) / len(values):5.2f} ms  {label}")


def report(results, args):
    """Print both phases and the goals."""
    for kind, r in results.items():
        load = r["load"]
        achieved = load["accepted"] / load["duration_s"] if load.get("duration_s") else 0
        print(f"\n== {kind}: {TARGETS[kind][1]} -> operator's incident.created ({len(r['latency_ms'])} alarms "
              f"received, started {args.rate:g}/s)")
        print(f"  end to end     {common.fmt_ms(common.percentiles(r['latency_ms']))}")
        failed = sum(r["errors"].values())
        if failed:
            every = common.percentiles(r["latency_ms"] + [float("inf")] * failed)
            print(f"  counting the {failed} failed alarms as never received: p50 {every['p50']:.1f} / p90 "
                  f"{every['p90']:.1f} / p99 {every['p99']:.1f} ms")
        print(f"  HTTP response  {common.fmt_ms(common.percentiles(r['http_ms']))}")
        print(f"  errors {r['errors'] or 0}; operator disconnects {r['disconnects']}; positions batches "
              f"{r['positions']} ({r['position_items']} items); Redis restarted: {r['redis_restarted']}")
        print(f"  location load: target {args.fixes_per_s:.0f} fixes/s, achieved {achieved:.0f} fixes/s "
              f"({load['accepted']} accepted in {load['duration_s']:.1f} s; {load['sent_events']} events sent, "
              f"{load['acked']} acked, {load['skipped']} turns skipped while unacked, {load['ack_errors']} ack errors, "
              f"{load['rejected']} rejected, connect errors {load['connect_errors'] or 0}, "
              f"{load['disconnects']} disconnects); ack {common.fmt_ms(load['ack_ms'])}")
        extra = f"; POST worker {r['rss_mib']['POST worker']:.0f} MiB" if "POST worker" in r["rss_mib"] else ""
        print(f"  api worker RSS {r['rss_mib']['end']:.0f} MiB at the end (peak {r['rss_mib']['peak']:.0f}){extra}; "
              f"load average {r['loadavg'][0]:.1f} -> {r['loadavg'][1]:.1f}")
        cpu = r["cpu"]
        print(f"  CPU in the {r['wall_s']:.1f} s of alarms, core-seconds of {cpu.pop('capacity'):.0f}: "
              + ", ".join(f"{name} {used:.1f}" for name, used in cpu.items()))
    if {"app", "bare"} <= set(results):
        app = common.percentiles(results["app"]["latency_ms"])
        bare = common.percentiles(results["bare"]["latency_ms"])
        ratio = app["p50"] / bare["p50"]
        print(f"\np50 ratio app/bare = {ratio:.2f} (goal <= 3: {'met' if ratio <= 3 else 'MISSED'}); "
              f"app p99 = {app['p99']:.1f} ms (goal < 50: {'met' if app['p99'] < 50 else 'MISSED'})")
    if {"floor", "bare"} <= set(results):
        floor = common.percentiles(results["floor"]["latency_ms"])
        bare = common.percentiles(results["bare"]["latency_ms"])
        print(f"p50 ratio floor/bare = {floor['p50'] / bare['p50']:.2f}: one committed INSERT before the emit, "
              "the least any design pays that commits the alarm before telling anyone")


if __name__ == "__main__":
    main()
