"""Fixtures on the real parts: PostGIS and Redis, the schema built by the migrations."""
import copy
import os
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://safety:safety@127.0.0.1:5432/safety_test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
# Reference data loaded once per session and kept between tests.
REFERENCE_TABLES = {"spatial_ref_sys", "alembic_version", "districts", "dongs", "facilities", "street_edges",
                    "street_nodes", "data_versions", "meeting_points"}


def test_config(**overrides) -> dict:
    """Configuration every test app and test server shares."""
    return {"TESTING": True, "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL, "REDIS_URL": TEST_REDIS_URL,
            "SOCKETIO_CHANNEL": f"test-{uuid.uuid4().hex[:8]}", "LOG_JSON": False,
            # Tests hash thousands of passwords; production keeps argon2id's RFC 9106 cost.
            "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_KIB": 1024, **overrides}


@contextmanager
def another_app(**overrides):
    """A second app in this process (another database, a Redis that is down); the extension singletons it
    rebinds get their state back after."""
    from safety_api import create_app, extensions
    singletons = [extensions.socketio, extensions.api, extensions.redis_store, extensions.jwt, extensions.migrate]
    saved = [(obj, {k: copy.copy(v) if isinstance(v, (dict, list)) else v for k, v in vars(obj).items()})
             for obj in singletons]
    app = create_app(test_config(**overrides))
    try:
        yield app
    finally:
        with app.app_context():
            extensions.db.engine.dispose()
        for obj, state in saved:
            vars(obj).clear()
            vars(obj).update(state)


def reset_schema(url: str):
    """Drop every table of ours so the migrations build the schema from nothing."""
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = conn.scalars(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'spatial_ref_sys'")).all()
        for table in tables:
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session")
def app():
    """One app for the session, on a freshly migrated test database with the demo districts."""
    from flask_migrate import upgrade

    from safety_api import create_app
    reset_schema(TEST_DATABASE_URL)
    app = create_app(test_config())
    with app.app_context():
        upgrade()
        app.test_cli_runner().invoke(args=["load-demo"], catch_exceptions=False)
    yield app


@pytest.fixture
def db(app):
    """The app's session inside an app context; tables other than reference data are emptied after."""
    from safety_api.extensions import db as _db
    with app.app_context():
        yield _db
        _db.session.rollback()
        _db.session.remove()
        truncate_user_tables(_db)


def truncate_user_tables(_db):
    names = _db.session.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).all()
    mine = [n for n in names if n not in REFERENCE_TABLES]
    # DELETE with triggers off is far cheaper than TRUNCATE for the few rows a test leaves.
    _db.session.execute(text("SET session_replication_role = replica"))
    for name in mine:
        _db.session.execute(text(f'DELETE FROM "{name}"'))
    _db.session.execute(text("SET session_replication_role = DEFAULT"))
    _db.session.commit()


def restore_meeting_points(_db):
    """Meeting points are reference data that admins may rename or retire: a test that lets them (the fuzzer,
    the access matrix) puts Gwanak's stops back as the demo loads them. Call after the user tables are empty."""
    from safety_api.cli import load_meeting_points
    _db.session.rollback()
    _db.session.execute(text("DELETE FROM meeting_points"))
    load_meeting_points(lambda _line: None)  # commits


@pytest.fixture
def redis_client(app):
    client = app.extensions["redis"]
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def client(app, db, redis_client):
    return app.test_client()


@pytest.fixture
def emitted(monkeypatch):
    """Every server emit, as (namespace, room, event, payload), instead of sending it."""
    from safety_api.realtime import broadcast
    sent = []

    def record(event, payload, *, namespace, room):
        sent.append((namespace, room, event, payload))
        return True
    monkeypatch.setattr(broadcast, "_emit", record)
    return sent
