"""Fault tests restart only services of their own: a private Redis per test, a private PostgreSQL cluster for
the test that restarts the database, api and worker processes they start and end. The others use the shared
test database through the normal fixtures; nothing shared on the machine is ever stopped."""
import os
import shutil
import uuid

import pytest

from tests.conftest import TEST_DATABASE_URL
from tests.faults.support import Api, PrivatePostgres, PrivateRedis, RecordingFCM
from tests.support.live import WorkerProcess, process_env


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: fault injection with real processes (make faults: full size)")


@pytest.fixture
def private_redis():
    """A redis-server of this test alone, on a free port; killed at the end."""
    server = PrivateRedis().start()
    yield server
    server.kill()


@pytest.fixture
def fcm():
    """The fake FCM (in this process; workers reach it over HTTP), noting what it accepted."""
    fake = RecordingFCM(latency_s=0.05, hang_limit_s=120).start()
    yield fake
    fake.close()


@pytest.fixture
def fault_env(db, private_redis, fcm):
    """Environment of the processes under test: the shared test database, the private Redis, the fake FCM."""
    return process_env(TEST_DATABASE_URL, private_redis.url, f"faults-{uuid.uuid4().hex[:8]}",
                       FCM_ENDPOINT=fcm.url, FCM_PROJECT_ID="faults", WORKER_POLL_S=0.1,
                       # No escalation pushes: each (device, incident) then owes exactly one push.
                       SOS_ESCALATE_AFTER_S=3600)


@pytest.fixture
def spawn():
    """Start api and worker processes; whatever a test leaves running is killed at its end."""
    started = []

    class Spawner:
        @staticmethod
        def api(env, threads=100) -> Api:
            started.append(Api(env, threads=threads))  # known before it starts: a failed start is cleaned up too
            return started[-1].start()

        @staticmethod
        def worker(env) -> WorkerProcess:
            started.append(WorkerProcess(env))
            return started[-1]

    yield Spawner
    for process in reversed(started):
        process.kill()


@pytest.fixture(scope="module")
def private_pg():
    """A PostgreSQL cluster of this module's own (pg_createcluster on a free port), dropped at the end."""
    if os.geteuid() != 0 or not shutil.which("pg_createcluster"):
        pytest.skip("a private PostgreSQL cluster needs root and Debian's postgresql-common")
    cluster = PrivatePostgres()
    try:
        yield cluster.create()
    finally:
        cluster.drop()
