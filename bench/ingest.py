"""Walk fixes in over /mobile: fixes/s one api process takes in, sockets it holds, delay to the guardian.

    BENCH_DB_NAME=safety_bench_walks .venv/bin/python -m bench.ingest [--sockets 200] [--batch 1]
        [--seconds 20] [--rounds 1] [--light-interval-s 2] [--hold 5000] [--hold-interval-s 10]
        [--hold-seconds 30] [--connect-budget-s 600] [--probes 20] [--own-redis 6397]

Phases, each on a fresh gunicorn (gthread, one worker):
  app / bare  `--sockets` walkers, each with an active walk along a real Gwanak route, send `location`
              {kind: "walk", id, fixes} as fast as the server acks (one event in flight per socket,
              `--batch` fixes per event, client timestamps, positions moving along the route). `app` is
              wsgi:app with persistence and the monitors on; `bare` is bench/bare_socketio_app.py, whose
              handler only counts (a token is required, nothing is checked or stored). Throughput = fixes
              acked as accepted per second over `--seconds` after a warm-up. `--rounds` alternates them.
  app light   the same walkers on wsgi:app, one fix every `--light-interval-s` each: the delay at a
              load the process carries.
  app hold    `--hold` sockets connect to wsgi:app (--threads hold + 140) within `--connect-budget-s`
              and stay, each sending one fix every `--hold-interval-s`; the worker's RSS before and
              after, ack times, errors.
In every phase `--probes` more walkers in this process send one fix a second and their guardians
watch (`watch` on /mobile; on `bare`, a /control client gets the same batched items): delay = the
guardian's receipt of the fix's walk.position - just before the walker emitted it (one clock).
Set-up: a few walks planned by the service, cloned for the other walkers. Database `safety_bench`
(or BENCH_DB_NAME), Redis db 8 (bench/common.py); the load runs in a process of its own.
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

TARGETS = {"app": "wsgi:app", "bare": "bench.bare_socketio_app:app"}
PAIRS = [((37.4705, 126.9190), (37.4650, 126.9260)), ((37.4760, 126.9150), (37.4700, 126.9230)),
         ((37.4690, 126.9100), (37.4740, 126.9200)), ((37.4630, 126.9210), (37.4700, 126.9170))]


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
        print(f"set-up: {len(people['walkers'])} walkers with an active walk, {args.probes} guardians "
              f"({time.time() - started:.0f} s); Redis {common.BENCH_REDIS_URL}; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        phases = [dict(kind=kind, sockets=args.sockets, mode="saturate") for _ in range(args.rounds)
                  for kind in ("app", "bare")]
        if args.light_interval_s:
            phases.append(dict(kind="app", sockets=args.sockets, mode="steady", interval_s=args.light_interval_s,
                               label="app light"))
        if args.hold:
            phases.append(dict(kind="app", sockets=args.hold, mode="steady", interval_s=args.hold_interval_s,
                               label="app hold"))
        results = []
        for phase in phases:
            results.append(run_phase(args=args, people=people, **phase))
            report_phase(results[-1], args)
        report(results, args)
        print(f"total {time.time() - started:.0f} s")
    finally:
        if redis:
            redis.stop()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1, help="fixes per location event")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup-s", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--hold", type=int, default=5000, help="sockets held in the last phase (0: skip it)")
    parser.add_argument("--hold-interval-s", type=float, default=10)
    parser.add_argument("--hold-seconds", type=float, default=30, help="length of the light and hold phases")
    parser.add_argument("--light-interval-s", type=float, default=2.0,
                        help="light phase: --sockets walkers, one fix each this often (0: skip it)")
    parser.add_argument("--connect-budget-s", type=float, default=600, help="stop connecting after this long")
    parser.add_argument("--worker-timeout-s", type=int, default=600,
                        help="gunicorn --timeout: thousands of threads can starve the heartbeat for 30 s")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--load-processes", type=int, default=1)
    parser.add_argument("--own-redis", type=int, metavar="PORT")
    parser.add_argument("--async-mode", default="threading", choices=["threading", "gevent"],
                        help="the servers' Socket.IO mode (gevent: gunicorn -k gevent, a greenlet per socket)")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--load-worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def set_up(args) -> dict:
    """Walkers with an active walk each (a few routes planned by the service, shared), probe guardians."""
    from safety_api.extensions import db
    app = common.prepare_app(fresh=args.fresh)
    with app.app_context():
        _, people = common.create_people(app, citizens=max(args.sockets, args.hold) + 2 * args.probes,
                                         phone_prefix="0106")
        walkers, guardians = people[:len(people) - args.probes], people[len(people) - args.probes:]
        planned = (_template_walk(app, walker, pair) for walker, pair in zip(walkers, PAIRS, strict=False))
        templates = [t for t in planned if t]
        rest = walkers[len(templates):]
        walks = templates + [_clone(db.session, t, w) for t, w in zip(_cycle(templates, len(rest)), rest, strict=True)]
        _choose_guardians(db.session, walkers[-args.probes:], walks[-args.probes:], guardians)
        db.session.commit()
        return {"walkers": [common.token_for(w) for w in walkers], "walks": [str(w.id) for w in walks],
                "routes": [_route_points(w) for w in walks], "guardians": [common.token_for(g) for g in guardians]}


def _template_walk(app, walker, pair):
    from safety_api.api.geodata import route_settings
    from safety_api.api.walks import walk_settings
    from safety_api.clock import utcnow
    from safety_api.errors import Invalid
    from safety_api.extensions import db
    from safety_api.services import walks
    try:
        walk, _ = walks.start(db.session, walker=walker, origin=pair[0], destination=pair[1], profile="safe",
                              guardian_ids=[], route_settings=route_settings(app.config),
                              settings=walk_settings(app.config), now=utcnow(), night=True)
    except Invalid:  # not routable on the loaded network: fewer templates
        return None
    return walk


def _cycle(items, n):
    return [items[i % len(items)] for i in range(n)]


def _clone(session, template, walker):
    """Another walker on the same route (set-up only: routing 5,000 walks would measure the router)."""
    from safety_api.models import Walk
    copy = Walk(id=uuid.uuid4(), walker_id=walker.id, **{c: getattr(template, c) for c in (
        "status", "profile", "origin", "destination", "route", "route_properties", "started_at", "expected_arrival",
        "settings", "monitor_state", "timer_seq")})
    session.add(copy)
    return copy


def _choose_guardians(session, walkers, walks, guardians):
    from safety_api.models import GuardianLink, WalkGuardian
    for walker, walk, guardian in zip(walkers, walks, guardians, strict=True):
        session.add(GuardianLink(protected_id=walker.id, guardian_id=guardian.id, status="active"))
        session.add(WalkGuardian(walk_id=walk.id, guardian_id=guardian.id))


def _route_points(walk) -> list:
    """(lat, lon) along the first 80 % of the route: the load never arrives."""
    from geoalchemy2.shape import to_shape
    coords = list(to_shape(walk.route).coords)
    return [(lat, lon) for lon, lat in coords[:max(2, int(len(coords) * 0.8))]]


def run_phase(*, kind, args, people, sockets, mode, interval_s=None, label=None) -> dict:
    """One server, the load processes and the probes; returns the figures."""
    threads = max(700, sockets + args.probes * 2 + 100)
    label = label or kind
    print(f"[{label}] gunicorn {TARGETS[kind]} --threads {threads}; {sockets} sockets, {mode}", flush=True)
    # gthread serves at most --worker-connections clients (default 1000), whatever --threads says
    server = common.Gunicorn(TARGETS[kind], common.server_env(
        f"bench-ingest-{uuid.uuid4().hex[:6]}", SOCKETIO_ASYNC_MODE=args.async_mode,
        GUNICORN_CMD_ARGS=f"--worker-connections {threads + 100} --timeout {args.worker_timeout_s}"),
        threads=threads)
    loads, sampler = [], None
    try:
        pid = server.worker_pid()
        sampler, idle_mib = common.ProcessSampler(pid), common.rss_mib(pid)
        loads = _start_loads(server.url, people, args, sockets=sockets, mode=mode, interval_s=interval_s)
        ready = [load.ready for load in loads]
        print(f"[{label}] {sum(r['connected'] for r in ready)} connected in "
              f"{max(r['connect_s'] for r in ready):.1f} s {[r['errors'] for r in ready if r['errors']] or ''}",
              flush=True)
        held_mib = common.rss_mib(pid)
        seconds = args.hold_seconds if mode == "steady" else args.warmup_s + args.seconds
        cpu_before = sampler.cpu_s()
        delays = asyncio.run(probe(kind, server.url, people, args, seconds))
        cpu_s = sampler.cpu_s() - cpu_before
        stats = [load.stop() for load in loads]
        return {"kind": kind, "label": label, "mode": mode, "sockets": sockets, "loads": stats, "delays": delays,
                "interval_s": interval_s,
                "rss_mib": {"idle": idle_mib, "held": held_mib, "end": common.rss_mib(pid), "peak": sampler.peak_mib},
                "cpu_s": cpu_s, "seconds": seconds, "loadavg": os.getloadavg()[0],
                "connected": sum(r["connected"] for r in ready)}
    finally:
        for load in loads:
            load.kill()
        if sampler:
            sampler.stop()
        server.stop()


def _start_loads(url, people, args, *, sockets, mode, interval_s) -> list:
    n = args.load_processes
    shares = [range(i, sockets, n) for i in range(n)]
    return [LoadProcess({"url": url, "mode": mode, "batch": args.batch, "interval_s": interval_s or 1.0,
                         "connect_budget_s": args.connect_budget_s,
                         "warmup_s": args.warmup_s, "tokens": [people["walkers"][i] for i in share],
                         "walks": [people["walks"][i] for i in share], "routes": [people["routes"][i] for i in share]})
            for share in shares]


class LoadProcess:
    """Walkers' sockets in a process of their own (`--load-worker`); stdin closing stops them."""

    def __init__(self, spec):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec_file:
            json.dump(spec, spec_file)
        self.spec_path = spec_file.name
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.ingest", "--load-worker", self.spec_path],
                                     cwd=common.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = json.loads(self.proc.stdout.readline() or "{}")
        if "connected" not in self.ready:
            raise RuntimeError("the load process failed to start")

    def stop(self) -> dict:
        self.proc.stdin.close()
        result = json.loads(self.proc.stdout.readline() or "{}")
        self.proc.wait(60)
        return result

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.unlink(self.spec_path)


async def load_worker(spec):
    """Connect every walker, say ready, send until stdin closes, then print the counts."""
    import socketio
    stats = {"accepted": 0, "rejected": 0, "errors": {}, "disconnects": 0, "ack_ms": [], "per_s": {}}
    gate, started = asyncio.Semaphore(100), time.perf_counter()

    async def connect(token):
        client = socketio.AsyncClient(reconnection=False)
        client.on("disconnect", lambda *_: stats.__setitem__("disconnects", stats["disconnects"] + 1),
                  namespace="/mobile")
        async with gate:
            try:
                await client.connect(spec["url"], namespaces=["/mobile"], auth={"token": token},
                                     transports=["websocket"], wait_timeout=30)
                return client
            except Exception as exc:  # counted; the load goes on without this socket
                _count(stats["errors"], f"connect {exc.__class__.__name__}")
                return None

    async def connect_counted(token):
        client = await connect(token)
        stats["connected"] = stats.get("connected", 0) + (client is not None)
        if client is not None and stats["connected"] % 250 == 0:
            print(f"  {stats['connected']} connected after {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)
        return client

    tasks = [asyncio.create_task(connect_counted(t)) for t in spec["tokens"]]
    _, late = await asyncio.wait(tasks, timeout=spec["connect_budget_s"])
    for task in late:  # the server could not take them in the budget: counted as not connected
        task.cancel()
    clients = [None if t in late else t.result() for t in tasks]
    print(json.dumps({"connected": sum(c is not None for c in clients), "connect_s": time.perf_counter() - started,
                      "errors": stats["errors"]}), flush=True)
    stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    phones = zip(clients, spec["walks"], spec["routes"], strict=True)
    walkers = [Walker(c, w, r, k, spec) for k, (c, w, r) in enumerate(phones) if c is not None]
    began = time.perf_counter()
    tasks = [asyncio.create_task(w.run(stats, stop, began)) for w in walkers]
    await asyncio.gather(*tasks)
    stats["ack_ms"] = common.percentiles(stats["ack_ms"])
    print(json.dumps(stats), flush=True)
    await asyncio.gather(*(c.disconnect() for c in clients if c is not None), return_exceptions=True)


def _count(counter, key):
    counter[key] = counter.get(key, 0) + 1


class Walker:
    """One phone: fixes along its route (back and forth), client timestamps always increasing."""

    def __init__(self, client, walk_id, route, k, spec):
        self.client, self.walk_id, self.route, self.spec = client, walk_id, route, spec
        self.step, self.last_t = k % len(route), 0.0
        self.offset = k * spec["interval_s"] / 97.0 % spec["interval_s"]  # spread the steady senders

    def fixes(self) -> list:
        out = []
        for _ in range(self.spec["batch"]):
            lap = 2 * (len(self.route) - 1)
            i = self.step % lap
            lat, lon = self.route[i if i < len(self.route) else lap - i]
            self.step += 1
            self.last_t = round(max(time.time(), self.last_t + 0.001), 3)  # ms: matched on receipt
            out.append({"lat": lat, "lon": lon, "accuracy_m": 8.0, "t": self.last_t})
        return out

    async def run(self, stats, stop, began):
        steady = self.spec["mode"] == "steady"
        if steady:
            await asyncio.sleep(self.offset)
        while not stop.done():
            sent = time.perf_counter()
            try:
                answer = await self.client.call("location", {"kind": "walk", "id": self.walk_id,
                                                             "fixes": self.fixes()}, namespace="/mobile", timeout=30)
            except Exception as exc:  # a timeout or a dropped socket: counted, then this phone stops
                _count(stats["errors"], f"ack {exc.__class__.__name__}")
                return
            done = time.perf_counter()
            if "error" in answer:
                _count(stats["errors"], f"error {answer['error'].get('status')}")
            stats["accepted"] += answer.get("accepted", 0)
            stats["rejected"] += answer.get("rejected", 0)
            second = str(int(done - began))
            stats["per_s"][second] = stats["per_s"].get(second, 0) + answer.get("accepted", 0)
            stats["ack_ms"].append((done - sent) * 1000)
            if steady:
                await asyncio.sleep(max(0.0, self.spec["interval_s"] - (done - sent)))


async def probe(kind, url, people, args, seconds) -> dict:
    """Probe walkers send one fix a second; their guardians time each walk.position (or bare positions)."""
    import socketio
    sent, delays, n, count = {}, [], args.probes, [0]
    walks, routes = people["walks"][-n:], people["routes"][-n:]
    guardians = []
    for k in range(n):
        guardian = socketio.AsyncClient(reconnection=False)
        namespace = "/mobile" if kind == "app" else "/control"
        guardian.on("walk.position" if kind == "app" else "positions", _receiver(sent, delays), namespace=namespace)
        await _connect(guardian, url, namespace, people["guardians"][k])
        if kind == "app":
            answer = await guardian.call("watch", {"walk_id": walks[k]}, namespace="/mobile", timeout=30)
            assert answer.get("ok"), answer
        guardians.append(guardian)
        if kind == "bare":
            break  # one /control client sees every probe's items
    phones = []
    for k in range(n):
        phone = socketio.AsyncClient(reconnection=False)
        await _connect(phone, url, "/mobile", people["walkers"][-n + k])
        phones.append(phone)
    walkers = [Walker(p, w, r, k, {"batch": 1, "interval_s": 1.0, "mode": "steady"})
               for k, (p, w, r) in enumerate(zip(phones, walks, routes, strict=True))]
    deadline = time.perf_counter() + seconds

    async def send(walker):
        await asyncio.sleep(walker.offset)
        while time.perf_counter() < deadline:
            fix = walker.fixes()
            sent[(walker.walk_id, fix[0]["t"])] = time.time()
            count[0] += 1
            try:
                await walker.client.call("location", {"kind": "walk", "id": walker.walk_id, "fixes": fix},
                                         namespace="/mobile", timeout=30)
            except Exception:  # an overloaded server: the missing receipt shows in the counts
                pass
            await asyncio.sleep(1.0)

    await asyncio.gather(*(send(w) for w in walkers))
    await asyncio.sleep(1.0)
    for client in guardians + phones:
        await client.disconnect()
    return {"ms": common.percentiles(delays), "sent": count[0], "received": len(delays)}


async def _connect(client, url, namespace, token, attempts=5):
    """Connect, retrying: a server busy with thousands of sockets may drop a handshake."""
    for attempt in range(attempts):
        try:
            return await client.connect(url, namespaces=[namespace], auth={"token": token},
                                        transports=["websocket"], wait_timeout=30)
        except Exception:  # retried; the last failure is raised
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1 + attempt)


def _receiver(sent, delays):
    def receive(batch):
        now = time.time()
        for item in batch.get("items", []):
            t = item.get("t")
            key = (item.get("id"), round(t if isinstance(t, float) else _epoch(t), 3))
            if key in sent:
                delays.append((now - sent.pop(key)) * 1000)
    return receive


def _epoch(iso):
    from datetime import datetime
    return datetime.fromisoformat(iso).timestamp() if iso else 0.0


def report_phase(r, args):
    """Print one phase's figures."""
    loads = r["loads"]
    accepted = sum(x["accepted"] for x in loads)
    window = [sum(x["per_s"].get(str(s), 0) for x in loads)
              for s in range(int(args.warmup_s), int(args.warmup_s + args.seconds))]
    r["fixes_per_s"] = sum(window) / len(window) if r["mode"] == "saturate" and window else None
    errors = {k: v for x in loads for k, v in x["errors"].items()}
    print(f"\n== {r['label']}: {r['sockets']} sockets ({r['connected']} connected), {r['mode']}, "
          f"batch {args.batch if r['mode'] == 'saturate' else 1}")
    if r["fixes_per_s"] is not None:
        print(f"  throughput {r['fixes_per_s']:.0f} fixes/s accepted (mean of {len(window)} s after "
              f"{args.warmup_s:.0f} s warm-up; {accepted} in all)")
    else:
        print(f"  {accepted} fixes accepted in {r['seconds']:.0f} s "
              f"({accepted / r['seconds']:.0f}/s at one fix per {r['interval_s']:.0f} s per socket)")
    print(f"  ack {common.fmt_ms(common.percentiles([]) if not loads else loads[0]['ack_ms'])}; errors "
          f"{errors or 0}; rejected {sum(x['rejected'] for x in loads)}; disconnects "
          f"{sum(x['disconnects'] for x in loads)}")
    d = r["delays"]
    print(f"  fix -> guardian delay {common.fmt_ms(d['ms'])}; {d['received']} of {d['sent']} probe fixes seen")
    mib = r["rss_mib"]
    print(f"  worker RSS idle {mib['idle']:.0f} MiB, with sockets {mib['held']:.0f}, end {mib['end']:.0f}, "
          f"peak {mib['peak']:.0f} MiB; CPU {r['cpu_s']:.1f} s in {r['seconds']:.0f} s; "
          f"load average {r['loadavg']:.1f}")


def report(results, args):
    """Print the goals."""
    app = [r["fixes_per_s"] for r in results if r["label"] == "app"]
    bare = [r["fixes_per_s"] for r in results if r["label"] == "bare"]
    if app and bare:
        ratio = max(app) / max(bare)
        print(f"\nthroughput app/bare = {max(app):.0f}/{max(bare):.0f} = {ratio:.0%} (goal >= 80%: "
              f"{'met' if ratio >= 0.8 else 'MISSED'})")
    for r in results:
        if r["label"] == "app hold":
            held = r["connected"] >= args.hold
            print(f"sockets held: {r['connected']} of {args.hold} (goal 5,000: {'met' if held else 'MISSED'}), "
                  f"RSS {r['rss_mib']['peak']:.0f} MiB peak")


if __name__ == "__main__":
    main()
