"""The scenario's clients: timed operations, the walkers' load processes and the people in bench.scenario's process.

    .venv/bin/python -m bench.scenario_clients SPEC.json     # started by bench.scenario, one per share of walkers

A load process connects its walkers to /mobile (each on its own api process, sticky), says so on stdout,
then on stdin `go` starts each walk over REST at a steady rate and streams one fix every `interval_s`
along the route over `location`, one event in flight per phone; prints the walk ids once all are started;
on stdin `stop` ends the streams, finishes every walk over REST and prints its samples and errors.
`Scenario` plays everyone else from bench.scenario's own process: operators, guardians, scouts, SOS
callers and the citizens who book escorts.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

WALKING_MPS = 1.3
ROUTE_SHARE = 0.8  # the phones never reach the door: an arrival would end the walk mid-run
ESCORT_TO = {"lat": 37.4705, "lon": 126.9190}


class Recorder:
    """Latency samples per operation as (wall-clock end, ms), and errors counted by kind."""

    def __init__(self):
        self.samples: dict[str, list] = {}
        self.errors: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.closing = False  # our own disconnects at the end are not errors

    def disconnected(self, namespace: str, reason=None):
        if not self.closing:
            self.error(f"disconnect {namespace} ({reason or 'no reason given'})")
            self.samples.setdefault(f"disconnect {namespace}", []).append((time.time(), 0.0))

    def sample(self, op: str, started_perf: float):
        self.samples.setdefault(op, []).append((time.time(), (time.perf_counter() - started_perf) * 1000))

    def sample_ms(self, op: str, ms: float):
        self.samples.setdefault(op, []).append((time.time(), ms))

    def error(self, kind: str):
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def count(self, kind: str, n: int = 1):
        self.counts[kind] = self.counts.get(kind, 0) + n

    def as_dict(self) -> dict:
        return {"samples": self.samples, "errors": self.errors, "counts": self.counts}

    def merge(self, other: dict):
        for op, values in other["samples"].items():
            self.samples.setdefault(op, []).extend(values)
        for kind, n in other["errors"].items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        for kind, n in other["counts"].items():
            self.counts[kind] = self.counts.get(kind, 0) + n


async def connect(url: str, namespace: str, token: str, rec: Recorder, gate: asyncio.Semaphore, handlers=None):
    """A python-socketio AsyncClient on one namespace; a failure is counted and answers None."""
    import socketio
    client = socketio.AsyncClient(reconnection=False)
    for event, handler in (handlers or {}).items():
        client.on(event, handler, namespace=namespace)
    client.on("disconnect", lambda reason=None: rec.disconnected(namespace, reason), namespace=namespace)
    async with gate:
        started = time.perf_counter()
        try:
            await client.connect(url, namespaces=[namespace], auth={"token": token}, transports=["websocket"],
                                 wait_timeout=30)
        except Exception as exc:  # refused or timed out: counted, the scenario goes on without this client
            rec.error(f"connect {namespace} {exc.__class__.__name__}")
            return None
    rec.sample(f"connect {namespace}", started)
    tolerate_late_pings(client)
    return client


def tolerate_late_pings(client):
    """Wait for the server's ping as long as the Engine.IO protocol (and the JS and mobile clients) do.

    python-engineio's client gives up when it has had nothing to send for max(ping_interval, ping_timeout) + 5 s
    (30 s with the server's 25/20), so a socket that only listens, like an operator's, is dropped as soon as a
    busy server's ping is 5 s late; socket.io-client allows ping_interval + ping_timeout (45 s). Raising
    ping_timeout to interval + timeout - 5 gives the listening clients the same 45 s (and the read loop 65 s).
    """
    eio = client.eio
    eio.ping_timeout = eio.ping_interval + eio.ping_timeout - 5


async def call(client, rec: Recorder, op: str, event: str, data: dict, namespace="/mobile", timeout=30):
    """Emit with an ack, timed; a timeout, a dropped socket or an {error} ack is counted and answers None."""
    started = time.perf_counter()
    try:
        answer = await client.call(event, data, namespace=namespace, timeout=timeout)
    except Exception as exc:  # TimeoutError or BadNamespaceError (socket gone)
        rec.error(f"{op}: {exc.__class__.__name__}")
        return None
    if isinstance(answer, dict) and "error" in answer:
        rec.error(f"{op}: ack error {answer['error'].get('status')} {answer['error'].get('title', '')}".strip())
        return None
    rec.sample(op, started)
    return answer


async def http(session, rec: Recorder, op: str, method: str, url: str, token: str, *, ok=(200, 201), **kwargs):
    """One timed REST call; any other status or a transport error is counted by kind and answers None."""
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    started = time.perf_counter()
    try:
        async with session.request(method, url, headers=headers, **kwargs) as answer:
            body = await answer.json(content_type=None)
            status = answer.status
    except Exception as exc:  # timeouts, resets: counted
        rec.error(f"{op}: {exc.__class__.__name__}")
        return None
    if status not in ok:
        detail = body.get("title", "") if isinstance(body, dict) else ""
        rec.error(f"{op}: HTTP {status} {detail}".strip())
        return None
    rec.sample(op, started)
    return {"status": status, "body": body}


async def at_steady_rate(make, count: int, rate: float) -> list:
    """Start coroutine i at i / rate seconds whatever the earlier ones are doing; gather the results."""
    tasks, started = [], time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(make(i)))
    return await asyncio.gather(*tasks)


class RouteWalk:
    """Positions along a route at walking pace from the moment the walk started (metres, flat-earth)."""

    def __init__(self, coords_lonlat: list, started_at: float):
        self.coords, self.started_at = coords_lonlat, started_at
        self.cumulative = [0.0]
        for (x1, y1), (x2, y2) in zip(coords_lonlat, coords_lonlat[1:], strict=False):
            dx = (x2 - x1) * 111_320 * math.cos(math.radians((y1 + y2) / 2))
            self.cumulative.append(self.cumulative[-1] + math.hypot(dx, (y2 - y1) * 110_540))
        self.last_t = 0.0

    def fix(self) -> dict:
        now = time.time()
        self.last_t = round(max(now, self.last_t + 0.001), 3)  # ms: a guardian matches it on receipt
        along = min(WALKING_MPS * (now - self.started_at), ROUTE_SHARE * self.cumulative[-1])
        k = max(1, next((i for i, c in enumerate(self.cumulative) if c >= along), len(self.cumulative) - 1))
        span = self.cumulative[k] - self.cumulative[k - 1] or 1.0
        share = (along - self.cumulative[k - 1]) / span
        (x1, y1), (x2, y2) = self.coords[k - 1], self.coords[k]
        return {"lat": round(y1 + (y2 - y1) * share, 7), "lon": round(x1 + (x2 - x1) * share, 7),
                "accuracy_m": 8.0, "t": self.last_t}


class Walker:
    """One phone: starts its walk over REST, streams fixes over its socket, finishes over REST."""

    def __init__(self, spec: dict, client, url: str, interval_s: float):
        self.spec, self.client, self.url, self.interval_s = spec, client, url, interval_s
        self.walk_id, self.route = None, None

    async def start(self, session, rec: Recorder) -> bool:
        origin, destination = self.spec["pair"]
        answer = await http(session, rec, "POST /walks", "POST", f"{self.url}/api/v1/walks", self.spec["token"],
                            ok=(201,), json={"from": origin, "to": destination, "profile": "safe",
                                             "guardian_ids": self.spec["guardian_ids"]})
        if answer is None:
            return False
        self.walk_id = answer["body"]["id"]
        self.route = RouteWalk(answer["body"]["route"]["geometry"]["coordinates"], time.time())
        return True

    async def stream(self, rec: Recorder, stop: asyncio.Event):
        """One fix per interval on a fixed schedule; a turn missed while the last ack is awaited is counted."""
        await asyncio.sleep(random.uniform(0, self.interval_s))
        due = time.perf_counter()
        while not stop.is_set():
            fix = self.route.fix()
            answer = await call(self.client, rec, "location ack (walk fix)", "location",
                                {"kind": "walk", "id": self.walk_id, "fixes": [fix]})
            if answer is not None:
                rec.count("fixes accepted", answer.get("accepted", 0))
                rec.count("fixes rejected", answer.get("rejected", 0))
                if answer.get("rejected"):
                    rec.error(f"location: rejected {answer.get('errors', [{}])[0].get('reason')}")
            elif not self.client.connected:
                return
            due += self.interval_s
            if due < time.perf_counter():
                rec.count("fix turns missed (ack slower than the interval)")
                due = time.perf_counter()
            try:
                await asyncio.wait_for(stop.wait(), due - time.perf_counter())
            except asyncio.TimeoutError:
                pass

    async def finish(self, session, rec: Recorder):
        answer = await http(session, rec, "POST /walks/{id}/finish", "POST",
                            f"{self.url}/api/v1/walks/{self.walk_id}/finish", self.spec["token"], ok=(200,))
        if answer is not None and answer["body"].get("status") != "finished":
            rec.error(f"finish: status {answer['body'].get('status')}")


async def load_process(spec: dict):
    """Connect, then start/stream/finish on the commands read from stdin."""
    import aiohttp
    rec, gate, loop = Recorder(), asyncio.Semaphore(50), asyncio.get_running_loop()
    started = time.perf_counter()
    clients = await asyncio.gather(*(connect(spec["urls"][w["server"]], "/mobile", w["token"], rec, gate)
                                     for w in spec["walkers"]))
    walkers = [Walker(w, c, spec["urls"][w["server"]], spec["interval_s"])
               for w, c in zip(spec["walkers"], clients, strict=True) if c is not None]
    _say({"connected": len(walkers), "connect_s": time.perf_counter() - started, "errors": rec.errors})
    await loop.run_in_executor(None, sys.stdin.readline)  # go
    stop, streams = asyncio.Event(), []
    connector = aiohttp.TCPConnector(limit=200, force_close=True)  # phones do not share connections
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def start(i):
            if await walkers[i].start(session, rec):
                streams.append(asyncio.create_task(walkers[i].stream(rec, stop)))

        await at_steady_rate(start, len(walkers), spec["start_rate"])
        _say({"walks": {w.spec["i"]: w.walk_id for w in walkers if w.walk_id}})
        await loop.run_in_executor(None, sys.stdin.readline)  # stop
        stop.set()
        await asyncio.gather(*streams)
        mine = [w for w in walkers if w.walk_id]
        await at_steady_rate(lambda i: mine[i].finish(session, rec), len(mine), spec["finish_rate"])
    _say(rec.as_dict())
    rec.closing = True
    await asyncio.gather(*(c.disconnect() for c in clients if c is not None), return_exceptions=True)


def snapshot(samplers) -> dict:
    import psutil
    times = psutil.cpu_times()
    return {"machine": {"busy_s": sum(times) - times.idle - times.iowait, "all_s": sum(times)},
            **{name: {"rss_mib": s.process.memory_info().rss / 2**20, "cpu_s": s.cpu_s()}
               for name, s in samplers.items()}}


class Scenario:
    """This process's clients: operators, guardians, scouts, SOS callers and escort citizens."""

    def __init__(self, args, people, urls, loads, samplers):
        self.args, self.people, self.urls, self.loads, self.samplers = args, people, urls, loads, samplers
        self.rec, self.gate = Recorder(), asyncio.Semaphore(50)
        self.session = None
        self.incidents: dict[str, dict] = {}  # id -> {"times": [...], "first": Event, "all": Event}
        self.offers: dict[tuple, asyncio.Event] = {}  # (booking id, scout index) -> received
        self.sos = {"keys": 0, "ids": set(), "acks": 0}
        self.bookings: list[str] = []

    async def play(self) -> dict:
        import aiohttp
        connector = aiohttp.TCPConnector(limit=300, force_close=True)  # people do not share connections
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            self.session = session
            operators, guardians, scouts = await asyncio.gather(self.connect_operators(), self.connect_guardians(),
                                                                self.connect_scouts())
            ramp_started = time.time()
            for load in self.loads:
                load.send("go")
            walks = {}
            for load in self.loads:
                walks.update((await load.answer())["walks"])
            await self.watch(guardians, walks)
            ramp = (ramp_started, time.time())
            print(f"ramp: {len(walks)} walks started and {len([g for g in guardians if g])} guardians watching in "
                  f"{ramp[1] - ramp[0]:.1f} s; window of {self.args.duration:.0f} s starts; load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            before, window_start = snapshot(self.samplers), time.time()
            await asyncio.gather(self.sos_bursts(window_start), self.escort_bookings(window_start),
                                 *(self.poll(op, k, window_start) for k, op in enumerate(operators) if op))
            await asyncio.sleep(max(0.0, window_start + self.args.duration - time.time()))
            window = (window_start, time.time())
            after, load_avg = snapshot(self.samplers), os.getloadavg()
            print(f"window over; the phones stop and finish their walks; load average {load_avg[0]:.1f}", flush=True)
            for load in self.loads:
                load.send("stop")
            for load in self.loads:
                self.rec.merge(await load.answer())
            await asyncio.sleep(2)  # the guardians' last walk.ended
            self.rec.closing = True
            await asyncio.gather(*(c.disconnect() for c in operators + guardians + scouts if c),
                                 return_exceptions=True)
        return {"rec": self.rec, "ramp": ramp, "window": window, "before": before, "after": after,
                "walks": walks, "sos": self.sos, "bookings": self.bookings, "loadavg": load_avg}

    # -- operators

    async def connect_operators(self) -> list:
        return await asyncio.gather(*(
            connect(self.urls[k % 2], "/control", op["token"], self.rec, self.gate, {
                "incident.created": self._created_at(k),
                "incident.updated": lambda *_: self.rec.count("incident.updated received by operators"),
                "positions": lambda *_: self.rec.count("positions batches received by operators")})
            for k, op in enumerate(self.people["operators"])))

    def _created_at(self, k):
        def received(data):
            seen = self._incident(data["id"])
            seen["times"].append(time.perf_counter())
            seen["first"].set()
            if len(seen["times"]) == self.args.operators:
                seen["all"].set()
            if self._acker(data["id"]) == k:
                asyncio.get_running_loop().create_task(self.ack(k, data["id"]))
        return received

    def _incident(self, incident_id) -> dict:
        return self.incidents.setdefault(incident_id, {"times": [], "first": asyncio.Event(), "all": asyncio.Event()})

    def _acker(self, incident_id) -> int | None:
        """About `--ack-share` of the incidents are acked, each by one operator chosen by its id."""
        number = uuid.UUID(incident_id).int
        return number % self.args.operators if (number >> 64) % 1000 < self.args.ack_share * 1000 else None

    async def ack(self, k, incident_id):
        operator = self.people["operators"][k]
        answer = await http(self.session, self.rec, "POST /incidents/{id}/ack", "POST",
                            f"{self.urls[k % 2]}/api/v1/incidents/{incident_id}/ack", operator["token"], ok=(200,))
        self.sos["acks"] += answer is not None

    async def poll(self, client, k, window_start):
        operator, end = self.people["operators"][k], window_start + self.args.duration
        await asyncio.sleep(random.uniform(0, self.args.poll_s))
        while time.time() < end:
            await http(self.session, self.rec, "GET /incidents?status=open", "GET",
                       f"{self.urls[k % 2]}/api/v1/incidents?status=open", operator["token"], ok=(200,))
            await asyncio.sleep(max(0.0, min(self.args.poll_s, end - time.time())))

    # -- guardians

    async def connect_guardians(self) -> list:
        def position(batch):
            now = time.time()
            for item in batch.get("items", []):
                t = datetime.fromisoformat(item["t"]).timestamp()
                self.rec.sample_ms("fix -> walk.position at guardian", (now - t) * 1000)

        def alert(data):
            self.rec.error(f"walk.alert {data.get('alert')} at a guardian (an honest walk raised it)")

        handlers = {"walk.position": position, "walk.alert": alert,
                    "walk.started": lambda *_: self.rec.count("walk.started received by guardians"),
                    "walk.ended": lambda *_: self.rec.count("walk.ended received by guardians")}
        return await asyncio.gather(*(connect(self.urls[(i + 1) % 2], "/mobile", g["token"], self.rec, self.gate,
                                              handlers) for i, g in enumerate(self.people["guardians"])))

    async def watch(self, guardians, walks):
        async def one(i, client):
            walk_id = walks.get(str(i))
            if client is None or walk_id is None:
                return self.rec.error("watch: no walk or no socket for a guardian")
            await call(client, self.rec, "watch ack", "watch", {"walk_id": walk_id})
        await at_steady_rate(lambda i: one(i, guardians[i]), len(guardians), 100)

    # -- SOS

    async def sos_bursts(self, window_start):
        size, tasks = self.args.sos_burst, []
        for b, offset in enumerate(self.people["bursts"]):
            await asyncio.sleep(max(0.0, window_start + offset - time.time()))
            tasks.append(asyncio.create_task(at_steady_rate(lambda j, b=b: self.fire(b * size + j), size, size)))
        await asyncio.gather(*tasks)

    async def fire(self, n):
        caller, key = self.people["sos_callers"][n], uuid.uuid4().hex
        body = {"lat": 37.4705 + (n % 40) * 1e-4, "lon": 126.9190 + (n % 17) * 1e-4, "accuracy_m": 12,
                "trigger": "button"}
        sends = [(n % 2, "POST /sos")] + ([((n + 1) % 2, "POST /sos (same key, other process)")] if n % 10 == 0 else [])
        started = time.perf_counter()
        answers = await asyncio.gather(*(
            http(self.session, self.rec, op, "POST", f"{self.urls[server]}/api/v1/sos", caller["token"],
                 json=body, headers={"Idempotency-Key": key}) for server, op in sends))
        self.sos["keys"] += 1
        ids = {a["body"]["incident"]["id"] for a in answers if a}
        if len(ids) > 1:
            self.rec.error("SOS: one Idempotency-Key answered with two incidents")
        if sorted(a["status"] for a in answers if a) not in ([201], [200, 201]):
            self.rec.error(f"SOS: statuses {sorted(a['status'] for a in answers if a)} for one key")
        self.sos["ids"] |= ids
        for incident_id in ids:
            await self._await_operators(incident_id, started)

    async def _await_operators(self, incident_id, started):
        seen = self._incident(incident_id)
        for event, op in ((seen["first"], "SOS -> incident.created, first operator"),
                          (seen["all"], "SOS -> incident.created, every operator")):
            try:
                await asyncio.wait_for(event.wait(), 10)
            except asyncio.TimeoutError:
                return self.rec.error(f"incident.created reached {len(seen['times'])} of {self.args.operators} "
                                      f"operators in 10 s")
            last = seen["times"][0] if event is seen["first"] else max(seen["times"])
            self.rec.sample_ms(op, (last - started) * 1000)

    # -- escort

    async def connect_scouts(self) -> list:
        def offered_to(s):
            def offered(data):
                self.rec.count("escort.offered received by scouts")
                self.offers.setdefault((data["booking_id"], s), asyncio.Event()).set()
            return offered
        return await asyncio.gather(*(
            connect(self.urls[s % 2], "/mobile", scout["token"], self.rec, self.gate, {
                "escort.offered": offered_to(s),
                "escort.updated": lambda *_: self.rec.count("escort.updated received by scouts")})
            for s, scout in enumerate(self.people["scouts"])))

    async def escort_bookings(self, window_start):
        base = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(hours=1)
        tasks = []
        for k, offset in enumerate(self.people["bookings"]):
            await asyncio.sleep(max(0.0, window_start + offset - time.time()))
            tasks.append(asyncio.create_task(self.book(k, base + timedelta(hours=k))))
        await asyncio.gather(*tasks)

    async def book(self, k, meet_at):
        """Booking k goes to scout pair k mod pairs; its meeting an hour after the previous one: never overlapping."""
        citizen, points = self.people["escort_citizens"][k], self.people["points"]
        started = time.perf_counter()
        answer = await http(self.session, self.rec, "POST /escort/bookings", "POST",
                            f"{self.urls[k % 2]}/api/v1/escort/bookings", citizen["token"], ok=(201,), json={
                                "meeting_point_id": points[k % len(points)], "meet_at": meet_at.isoformat(),
                                "to": ESCORT_TO})
        if answer is None:
            return
        booking_id = answer["body"]["id"]
        self.bookings.append(booking_id)
        pair = [2 * (k % (self.args.scouts // 2)), 2 * (k % (self.args.scouts // 2)) + 1]
        try:
            await asyncio.wait_for(asyncio.gather(*(
                self.offers.setdefault((booking_id, s), asyncio.Event()).wait() for s in pair)), 10)
            self.rec.sample("booking -> escort.offered at both scouts", started)
        except asyncio.TimeoutError:
            self.rec.error("escort.offered did not reach both scouts of the pair in 10 s")
        await asyncio.gather(*(
            http(self.session, self.rec, "POST /escort/bookings/{id}/accept", "POST",
                 f"{self.urls[s % 2]}/api/v1/escort/bookings/{booking_id}/accept",
                 self.people["scouts"][s]["token"], ok=(200,)) for s in pair))


def _say(obj):
    print(json.dumps(obj), flush=True)


def main():
    with open(sys.argv[1]) as spec_file:
        asyncio.run(load_process(json.load(spec_file)))


if __name__ == "__main__":
    main()

