"""Shared by the benchmarks: percentiles, the bench database and Redis, gunicorn processes, memory."""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB = os.environ.get("BENCH_DB_NAME", "safety_bench")
BENCH_DATABASE_URL = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{BENCH_DB}"
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")  # --own-redis overrides
EXTENSIONS = ("postgis", "btree_gist", "pgrouting")
# Loaded once by the migrations and `load-demo`; everything else is emptied between runs.
REFERENCE_TABLES = {"spatial_ref_sys", "alembic_version", "districts", "dongs", "facilities", "street_edges",
                    "street_nodes", "data_versions", "meeting_points"}


def percentiles(values, points=(50, 90, 99)) -> dict:
    """Nearest-rank percentiles plus max and count, in the values' unit."""
    ordered = sorted(values)
    if not ordered:
        return {**{f"p{p}": math.nan for p in points}, "max": math.nan, "n": 0}
    out = {f"p{p}": ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in points}
    return {**out, "max": ordered[-1], "n": len(ordered)}


def fmt_ms(stats: dict) -> str:
    """'p50 4.1 / p90 6.0 / p99 9.9 / max 12.3 ms (n=500)'."""
    parts = " / ".join(f"{k} {v:.1f}" for k, v in stats.items() if k != "n")
    return f"{parts} ms (n={stats['n']})"


def app_config(**overrides) -> dict:
    """Configuration of the bench app: the bench database and Redis, cheap password hashing."""
    return {"SQLALCHEMY_DATABASE_URI": BENCH_DATABASE_URL, "REDIS_URL": BENCH_REDIS_URL, "LOG_JSON": False,
            "LOG_LEVEL": "WARNING", "SOCKETIO_CHANNEL": "bench-setup", "ARGON2_TIME_COST": 1,
            "ARGON2_MEMORY_KIB": 1024, **overrides}


def ensure_database() -> bool:
    """Create `safety_bench` with its extensions if missing; True when it was created."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone():
            return False
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    with psycopg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{BENCH_DB}", autocommit=True) as conn:
        for name in EXTENSIONS:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")
    return True


def drop_database():
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


_lock_connection = None


def hold_bench_lock():
    """Take the bench database for this process's lifetime: benchmarks that share it run one after another."""
    global _lock_connection
    if _lock_connection is not None:
        return
    _lock_connection = psycopg.connect(ADMIN_DSN, autocommit=True)
    key = f"bench:{BENCH_DB}"
    if not _lock_connection.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]:
        print(f"{BENCH_DB} is in use by another benchmark; waiting for it to finish", flush=True)
        _lock_connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))


def prepare_app(fresh: bool = False):
    """The bench app on a migrated `safety_bench` with the demo data; user data emptied."""
    from flask_migrate import upgrade

    from safety_api import create_app
    hold_bench_lock()  # emptying the tables under another benchmark would wreck both
    if fresh:
        drop_database()
    created = ensure_database()
    app = create_app(app_config())
    with app.app_context():
        upgrade()
        if created or not _demo_loaded(app):
            app.test_cli_runner().invoke(args=["load-demo"], catch_exceptions=False)
        empty_user_tables(app)
    app.extensions["redis"].flushdb()
    return app


def _demo_loaded(app) -> bool:
    from sqlalchemy import text

    from safety_api.extensions import db
    return bool(db.session.scalar(text("SELECT count(*) FROM facilities WHERE kind = 'cctv'")))


def empty_user_tables(app):
    """Truncate every table that is not reference data (users, incidents, fixes, outbox, jobs...)."""
    from sqlalchemy import text

    from safety_api.extensions import db
    names = db.session.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).all()
    mine = ", ".join(f'"{n}"' for n in names if n not in REFERENCE_TABLES)
    if mine:
        db.session.execute(text(f"TRUNCATE {mine} RESTART IDENTITY CASCADE"))
    db.session.commit()


def create_people(app, *, citizens: int, operator_district: str = "11620", phone_prefix: str = "0107"):
    """One on-duty operator with a push token and `citizens` citizens; returns (operator, [citizen]) users."""
    from safety_api.extensions import db
    from safety_api.models import PushDevice
    from safety_api.services.accounts import create_staff
    operator = create_staff(db.session, phone=f"{phone_prefix}9999999", password="bench-pass-1", name="관제요원",
                            role="operator", district=operator_district)
    operator.on_duty = True
    db.session.add(PushDevice(user_id=operator.id, token="bench-operator-token", platform="android"))
    db.session.commit()
    people = [create_staff(db.session, phone=f"{phone_prefix}{i:07d}", password="bench-pass-1", name=f"시민{i}",
                           role="citizen", district=None) for i in range(citizens)]
    return operator, people


def token_for(user) -> str:
    """An access token as login issues it: of a sign-in of its own, so that every request pays the check that
    the sign-in has not ended, as a phone's does."""
    from flask_jwt_extended import create_refresh_token, decode_token

    from safety_api.extensions import db
    from safety_api.security import access_token_for
    from safety_api.services import accounts
    claims = decode_token(create_refresh_token(identity=user))
    accounts.remember_refresh_token(db.session, user=user, jti=claims["jti"],
                                    expires_at=datetime.fromtimestamp(claims["exp"], timezone.utc))
    return access_token_for(user, claims["jti"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(channel: str, **extra) -> dict:
    """Environment of a bench api process: the bench database and Redis, quiet logs, cheap hashing."""
    env = dict(os.environ)
    env.update({"DATABASE_URL": BENCH_DATABASE_URL, "REDIS_URL": BENCH_REDIS_URL, "SOCKETIO_CHANNEL": channel,
                "LOG_JSON": "0", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
                "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024",
                "ALLOW_DEVELOPMENT_KEY": "1"})  # the benchmarks sign their tokens in-process with that key
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Gunicorn:
    """One gunicorn process serving `target` on its own port; gunicorn.conf.py (read from the project root)
    picks the worker from SOCKETIO_ASYNC_MODE, and `threads` sizes it (threads, or gevent connections)."""

    def __init__(self, target: str, env: dict, *, threads: int, ready_path: str = "/healthz", timeout_s=30):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**env, "API_THREADS": str(threads), "API_CONNECTIONS": str(threads)}
        self.command = [os.path.join(VENV_BIN, "gunicorn"), "--no-control-socket", "-b", f"127.0.0.1:{self.port}",
                        "--graceful-timeout", "3", target]
        self.log_path = f"/tmp/bench-{target.split(':')[0].replace('.', '-')}-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait_ready(ready_path, timeout_s)

    def _wait_ready(self, path, timeout_s):
        import requests
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {self.log_path}")
            try:
                if requests.get(self.url + path, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.url} not ready; see {self.log_path}")

    def worker_pid(self) -> int:
        """The pid of the single worker (the master's child)."""
        import psutil
        children = psutil.Process(self.proc.pid).children()
        return children[0].pid if children else self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


def rss_mib(pid: int) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


class ProcessSampler:
    """Peak RSS and CPU time of one process, sampled every 0.5 s in a thread."""

    def __init__(self, pid: int):
        import threading

        import psutil
        self.process, self.peak_mib, self._stop = psutil.Process(pid), 0.0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop.wait(0.5):
            try:
                self.peak_mib = max(self.peak_mib, self.process.memory_info().rss / 2**20)
            except Exception:  # the process is gone: keep the peak so far
                return

    def cpu_s(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def stop(self):
        self._stop.set()


class PySpy:
    """`py-spy record --gil` of one process (collapsed stacks of the GIL holder) from now until stop()."""

    def __init__(self, out: str, pid: int, rate: int = 200):
        import shutil
        binary = os.environ.get("PY_SPY") or shutil.which("py-spy")
        if not binary:
            raise SystemExit("profiling needs py-spy on PATH or PY_SPY=/path/to/py-spy")
        # --gil: a loaded worker has ~4 threads per socket, mostly asleep, which py-spy would otherwise count.
        # It charges moments when nobody holds the GIL to the last holder (often a thread now in psycopg's wait).
        self.proc = subprocess.Popen([binary, "record", "-p", str(pid), "-r", str(rate), "-f", "raw", "-o", out,
                                      "--gil", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)


class PrivateRedis:
    """A redis-server of the bench's own on a loopback port (others' tests may restart the shared one)."""

    def __init__(self, port: int):
        self.url = f"redis://127.0.0.1:{port}/8"
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                      "--appendonly", "no", "--logfile", f"/tmp/bench-redis-{port}.log"],
                                     start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"redis-server on {port} did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def redis_run_id(url: str) -> str | None:
    """The server's run_id: a change between two reads means Redis restarted in between."""
    import redis
    try:
        return redis.Redis.from_url(url, socket_timeout=2).info("server")["run_id"]
    except Exception:  # unreachable right now: reported as None
        return None


class CpuBudget:
    """Core-seconds used between start() and stop() by named groups of processes, and by everything else."""

    def __init__(self, **groups):
        self.groups = groups  # name -> callable returning the group's current processes

    @staticmethod
    def _cpu(process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except Exception:  # it ended in between: its time is lost, as with any process that came and went
            return 0.0

    @staticmethod
    def _machine_busy() -> float:
        import psutil
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def start(self):
        self._before = {name: {p.pid: self._cpu(p) for p in find()} for name, find in self.groups.items()}
        self._busy, self._wall = self._machine_busy(), time.perf_counter()

    def stop(self) -> dict:
        import psutil
        used = {name: sum(self._cpu(p) - self._before[name].get(p.pid, 0.0) for p in find())
                for name, find in self.groups.items()}
        used["everything else"] = self._machine_busy() - self._busy - sum(used.values())
        used["capacity"] = (time.perf_counter() - self._wall) * psutil.cpu_count()
        return used


def processes_of(pids) -> list:
    """psutil processes for these pids (those still alive)."""
    import psutil
    return [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]


def postgres_backends(database: str = None) -> list:
    """The PostgreSQL backends serving one database (their command line names it)."""
    import psutil
    name = f" {database or BENCH_DB} "
    return [p for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and name in " ".join(p.info["cmdline"] or []) + " "]
