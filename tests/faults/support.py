"""Fault-test helpers: private Redis and PostgreSQL, restartable api processes, phones that retry, probes."""
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone

import redis
import requests
import socketio

from safety_api.models import PushDevice, User
from safety_api.services.accounts import hash_secret
from tests.factories import PASSWORD, next_phone
from tests.support.fake_fcm import FakeFCM
from tests.support.live import ROOT, VENV_BIN, Server, free_port, wait_for  # noqa: F401 (the fault tests' import)

PG_VERSION = "15"
GWANAK = "11620"
IN_GWANAK = {"lat": 37.4705, "lon": 126.9190, "accuracy_m": 12}


def env_number(name: str, default: float) -> float:
    """A fault's size from the environment (`make faults` runs them at full size)."""
    return float(os.environ.get(name, default))


def record_figures(fault: str, **figures):
    """Keep a run's measured figures in artifacts/faults.json (docs/reliability.md quotes them)."""
    path = os.path.join(ROOT, "artifacts", "faults.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    known = {}
    if os.path.exists(path):
        with open(path) as previous:
            known = json.load(previous)
    known[fault] = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **figures}
    with open(path, "w") as out:
        json.dump(known, out, indent=2, ensure_ascii=False)
    print(f"\n{fault}: {json.dumps(figures, ensure_ascii=False)}")


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; a failure raises with its output."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done


class PrivateRedis:
    """A redis-server of the test's own on a free port, killed and started again on that same port."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = f"/tmp/ansimi-faults-redis-{self.port}.log"
        self.proc = None

    def start(self, timeout_s: float = 10) -> "PrivateRedis":
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_for(self.ping, timeout_s, 0.05):
            raise TimeoutError(f"private redis on {self.port} did not start; see {self.log_path}")
        return self

    def ping(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5) as client:
                return client.ping()
        except redis.RedisError:
            return False

    def kill(self):
        """SIGKILL: what a crash or an OOM kill does; nothing is saved."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (pg_createcluster), stopped and started at will, dropped at the end."""

    def __init__(self):
        self.port = free_port()
        self.name = f"faults_{self.port}"
        self.url = f"postgresql+psycopg://safety:safety@127.0.0.1:{self.port}/safety"

    def create(self) -> "PrivatePostgres":
        run(["pg_createcluster", "--start-conf", "manual", PG_VERSION, self.name, "--port", str(self.port),
             "--", "--auth=trust"])
        self.start()
        self.psql("CREATE ROLE safety LOGIN SUPERUSER PASSWORD 'safety'", "CREATE DATABASE safety OWNER safety")
        self.psql("CREATE EXTENSION postgis", "CREATE EXTENSION btree_gist", "ALTER DATABASE safety SET jit = off",
                  database="safety")
        return self

    def psql(self, *statements, database="postgres"):
        cmd = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
               "-v", "ON_ERROR_STOP=1", "-q"]
        for statement in statements:
            cmd += ["-c", statement]
        run(cmd)

    def migrate(self, env: dict, *, demo: bool = False):
        """Build the schema with the project's own migrations (and the demo data if asked)."""
        flask = [os.path.join(VENV_BIN, "flask"), "--app", "wsgi"]
        run(flask + ["db", "upgrade"], cwd=ROOT, env=env)
        if demo:
            run(flask + ["load-demo"], cwd=ROOT, env=env)

    def ready(self) -> bool:
        return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0

    def start(self):
        run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, self.name, "start"])
        if not wait_for(self.ready, 30, 0.1):
            raise TimeoutError(f"cluster {self.name} did not accept connections")

    def stop(self):
        run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, self.name, "stop", "-m", "fast"])

    def drop(self):
        subprocess.run(["pg_dropcluster", "--stop", PG_VERSION, self.name], capture_output=True, timeout=120)


class Api(Server):
    """One gunicorn api process that can be killed and started again on the same port (the balancer's address)."""

    # Server.__init__ is not called: it starts at once on a new free port, and this process keeps its port.
    def __init__(self, env: dict, threads: int = 100):
        self.env, self.threads = env, threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc, self.log, self.starts = None, None, 0

    def start(self) -> "Api":
        self.log = open(f"/tmp/ansimi-faults-api-{self.port}.log", "a")
        self.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "gunicorn"), "--no-control-socket", "-k", "gthread", "-w", "1",
             "--threads", str(self.threads), "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "3", "wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        self.wait_ready(timeout=120)  # starting one takes ~2 s, and far longer on a machine under load
        return self

    def kill(self, sig=signal.SIGTERM):
        if self.proc is not None:
            super().kill(sig)


def worker_started(worker, timeout_s: float = 90) -> bool:
    """Wait for a worker process (LOG_LEVEL=INFO) to log that its loop runs: starting one can take long."""
    def started():
        with open(worker.log.name) as log:
            return "started" in log.read()
    return wait_for(started, timeout_s, 0.2)


class RecordingFCM(FakeFCM):
    """The fake FCM, also keeping the messages it accepted (HTTP 200): what really reached a device."""

    def __init__(self, *, latency_s: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.latency_s = latency_s  # the real FCM takes tens of milliseconds: a push spends time on the wire
        self._accepted = []

    def answer_send(self, path, headers, body):
        answer = super().answer_send(path, headers, body)
        time.sleep(self.latency_s)
        if answer[0] == 200:
            with self._lock:
                self._accepted.append(body["message"])
        return answer

    def accepted(self) -> list:
        with self._lock:
            return list(self._accepted)


def push_counts(messages) -> Counter:
    """How many times each (device, incident) push was accepted."""
    return Counter(f"{m['token']}:incident:{m['data']['id']}" for m in messages)


def create_citizens(session, count: int) -> list:
    """Many citizens in one commit (one password hash shared: hashing is not what these tests measure)."""
    hashed = hash_secret(PASSWORD)
    users = [User(phone=next_phone(), name="시민", password_hash=hashed, role="citizen") for _ in range(count)]
    session.add_all(users)
    session.commit()
    return users


def create_operators(session, count: int, *, prefix: str, role: str = "operator", devices: bool = True) -> list:
    """On-duty 관악구 operators (or central-centre admins), each with one Android push device `<prefix>-<n>`."""
    hashed = hash_secret(PASSWORD)
    operators = [User(phone=next_phone(), name="관제요원", password_hash=hashed, role=role,
                      district_code=GWANAK if role == "operator" else None, on_duty=True) for _ in range(count)]
    session.add_all(operators)
    session.commit()
    return give_devices(session, operators, prefix=prefix) if devices else operators


def give_devices(session, users: list, *, prefix: str) -> list:
    """One Android push device `<prefix>-<n>` for each user."""
    session.add_all([PushDevice(user_id=user.id, token=f"{prefix}-{n}", platform="android")
                     for n, user in enumerate(users)])
    session.commit()
    return users


@dataclass
class SosCall:
    """What one phone saw while raising one SOS: the answers it got before it was believed."""

    key: str
    status: int | None = None
    incident_id: str | None = None
    attempts: int = 0
    errors: Counter = field(default_factory=Counter)


class InFlight:
    """How many requests are on the wire right now (a killer can wait for some before it strikes)."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    @contextmanager
    def request(self):
        with self._lock:
            self.count += 1
        try:
            yield
        finally:
            with self._lock:
                self.count -= 1


def sos_until_answered(url: str, token: str, key: str, *, deadline: float, body=None, timeout_s=5.0,
                       in_flight: InFlight | None = None) -> SosCall:
    """POST /sos with an Idempotency-Key and retry, as a phone does, until it is answered 200/201 or time is up."""
    call = SosCall(key)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    while time.time() < deadline:
        call.attempts += 1
        try:
            with in_flight.request() if in_flight else nullcontext():
                answer = requests.post(url + "/api/v1/sos", json=body or IN_GWANAK, headers=headers,
                                       timeout=timeout_s)
        except requests.RequestException as exc:
            call.errors[type(exc).__name__] += 1
        else:
            if answer.status_code in (200, 201):
                call.status, call.incident_id = answer.status_code, answer.json()["incident"]["id"]
                return call
            call.errors[answer.status_code] += 1
            if answer.status_code < 500:
                return call  # a 4xx is not retried by a phone: the test reports it
        time.sleep(random.uniform(0.05, 0.3))
    return call


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat()


class StreamingPhone:
    """A phone on /mobile streaming fixes of its SOS; what is not acknowledged is sent again with the next fix."""

    def __init__(self, url: str, token: str, incident_id: str, seed: int):
        self.incident_id, self.seed = incident_id, seed
        self.pending: dict = {}
        self.acknowledged: set = set()
        self.errors: Counter = Counter()
        self.error_times: list = []
        self.disconnects = 0
        self._lock = threading.Lock()
        self.client = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1)
        self.client.on("disconnect", self._dropped, namespace="/mobile")
        self.client.connect(url, namespaces=["/mobile"], auth={"token": token}, transports=["websocket"],
                            wait_timeout=10)

    def _dropped(self, *_reason):
        self.disconnects += 1

    def fix(self, n: int):
        """Take one more fix and send everything not yet acknowledged."""
        fix = {"lat": 37.4705 + (self.seed % 50) * 1e-4, "lon": 126.9190 + n * 1e-5, "accuracy_m": 8, "t": iso_now()}
        with self._lock:
            self.pending[fix["t"]] = fix
        self.send_pending()

    def send_pending(self):
        with self._lock:
            batch = list(self.pending.values())[:100]
        if not batch or not self.client.connected:
            return
        try:
            self.client.emit("location", {"kind": "sos", "id": self.incident_id, "fixes": batch}, namespace="/mobile",
                             callback=lambda answer: self._acked(answer, batch))
        except socketio.exceptions.SocketIOError as exc:
            self.errors[type(exc).__name__] += 1

    def _acked(self, answer, batch):
        if not isinstance(answer, dict) or "error" in answer or answer.get("rejected"):
            self.errors[str(answer.get("error", {}).get("status") if isinstance(answer, dict) else answer)] += 1
            self.error_times.append(time.time())
            return
        with self._lock:
            for fix in batch:
                self.pending.pop(fix["t"], None)
                self.acknowledged.add(fix["t"])

    @property
    def taken(self) -> int:
        with self._lock:
            return len(self.pending) + len(self.acknowledged)

    def close(self):
        self.client.disconnect()


class OperatorScreen:
    """An operator's /control socket (reconnecting like the console), noting when each event arrived."""

    def __init__(self, url: str, token: str, events=("positions", "incident.created")):
        self.arrivals = {event: [] for event in events}
        self.disconnects = 0
        self.client = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1)
        for event in events:
            self.client.on(event, self._recorder(event), namespace="/control")
        self.client.on("disconnect", self._dropped, namespace="/control")
        self.client.connect(url, namespaces=["/control"], auth={"token": token}, transports=["websocket"],
                            wait_timeout=10)

    def _recorder(self, event):
        def record(data):
            self.arrivals[event].append((time.time(), data))
        return record

    def _dropped(self, *_reason):
        self.disconnects += 1

    def first_after(self, event: str, moment: float) -> float | None:
        """Seconds from `moment` to the first such event received after it."""
        later = [t for t, _ in list(self.arrivals[event]) if t >= moment]
        return min(later) - moment if later else None

    def close(self):
        self.client.disconnect()


@dataclass(frozen=True)
class Answer:
    """One probe's answer: when it was asked, how long it took, its status (or the exception's name)."""

    t: float
    elapsed: float
    status: int | str
    retry_after: str | None


class Prober(threading.Thread):
    """Asks one endpoint again and again and notes every answer, until stopped."""

    def __init__(self, name: str, ask, *, interval_s: float = 0.2, timeout_s: float = 15.0):
        super().__init__(name=f"probe-{name}", daemon=True)
        self.ask, self.interval_s, self.timeout_s = ask, interval_s, timeout_s
        self.answers: list[Answer] = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            started = time.time()
            try:
                reply = self.ask(self.timeout_s)
                status, retry_after = reply.status_code, reply.headers.get("Retry-After")
            except requests.RequestException as exc:
                status, retry_after = type(exc).__name__, None
            self.answers.append(Answer(started, time.time() - started, status, retry_after))
            self.halt.wait(self.interval_s)

    def stop(self):
        self.halt.set()
        self.join(self.timeout_s + 5)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.t < end]

    def recovered_after(self, moment: float) -> float | None:
        """Seconds from `moment` until the answers were successful again and stayed so."""
        ok_since = None
        for answer in self.answers:
            if answer.t < moment:
                continue
            good = isinstance(answer.status, int) and answer.status < 400
            ok_since = (ok_since or answer.t + answer.elapsed) if good else None
        return None if ok_since is None else ok_since - moment
