"""Live servers: real gunicorn processes on the migrated test database, shared by the session."""
import uuid

import pytest

from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.support.live import WorkerProcess, process_env, servers


@pytest.fixture(scope="session")
def session_env(app):
    """Environment for processes under test, with a Socket.IO channel of the session's own."""
    # Sockets are checked against the database every second (30 s in production), so that the sweep's tests
    # need not wait long.
    return process_env(TEST_DATABASE_URL, TEST_REDIS_URL, f"e2e-{uuid.uuid4().hex[:8]}", SOCKET_SWEEP_S=1)


@pytest.fixture
def live_env(session_env, db, redis_client):
    """The same environment, for workers a test starts; tables are cleaned after the test."""
    return dict(session_env)


@pytest.fixture(scope="session")
def _servers(session_env):
    # Starting gunicorn costs seconds; two processes serve every live test of the session.
    with servers(session_env, count=2) as pair:
        yield pair


@pytest.fixture
def two_servers(_servers, db, redis_client):
    return _servers


@pytest.fixture
def live_server(_servers, db, redis_client):
    return _servers[0]


@pytest.fixture
def spawn_worker():
    """Start worker processes; whatever a test leaves running is killed at its end."""
    started = []

    def spawn(env):
        worker = WorkerProcess(env)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.kill()
