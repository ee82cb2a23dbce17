"""Real processes for live tests: gunicorn api servers and workers on the test database."""
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s: float, step_s: float = 0.1) -> bool:
    """Poll until the predicate holds or the time is up. Bounds are generous on purpose: a wait returns as soon
    as its predicate holds, so only a test that is failing anyway pays them, and a loaded 2-core CI machine
    must not fail a test for being slow (the speed itself is measured in bench/)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return False


def process_env(database_url: str, redis_url: str, channel: str, **extra) -> dict:
    """Environment of a server or worker under test: the test database, Redis and channel."""
    env = dict(os.environ)
    # A worker refuses to start with nowhere to send pushes. Nothing listens at this address: a push a test does
    # not look at waits in retry; the tests that look at pushes pass a FakeFCM's url.
    env.setdefault("FCM_ENDPOINT", "http://127.0.0.1:9")
    env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "SOCKETIO_CHANNEL": channel,
                "LOG_JSON": "0", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
                "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024",
                # the tests sign tokens in-process with the development key: the servers must check them with it
                "ALLOW_DEVELOPMENT_KEY": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Server:
    """One api process on its own port, started as `make run` starts it: gunicorn.conf.py (read from the
    project root) picks the worker from SOCKETIO_ASYNC_MODE and sizes it from API_THREADS."""

    def __init__(self, env: dict, threads: int = 100):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join("/tmp", f"ansimi-api-{self.port}.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "gunicorn"), "--no-control-socket", "-b", f"127.0.0.1:{self.port}",
             "--graceful-timeout", "3", "wsgi:app"],
            cwd=ROOT, env={**env, "API_THREADS": str(threads)}, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.wait_ready()

    def wait_ready(self, timeout=120):  # a cold start on a loaded machine (the fault tests allow as long)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api exited early; see {self.log.name}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"api on {self.url} not ready; see {self.log.name}")

    def kill(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


class WorkerProcess:
    """One worker process."""

    def __init__(self, env: dict):
        self.log = open(f"/tmp/ansimi-worker-{time.time_ns()}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, sig=signal.SIGTERM, timeout=15) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def kill(self):
        """Make sure the process is gone (test teardown)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.log.close()


@contextmanager
def servers(env: dict, count: int = 1):
    started = []
    try:
        for _ in range(count):
            started.append(Server(env))
        yield started
    finally:
        for server in started:
            server.kill()
