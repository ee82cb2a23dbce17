"""The Alembic chain up, down and up again, on a scratch database of its own."""

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from geoalchemy2 import alembic_helpers
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from safety_api import extensions
from tests.conftest import TEST_DATABASE_URL, another_app

SCRATCH = "safety_migrations_test"
POSTGIS_OWN = {"spatial_ref_sys"}


def _superuser_url(database: str):
    """The local server's postgres superuser (trust authentication on 127.0.0.1)."""
    return make_url(TEST_DATABASE_URL).set(username="postgres", password=None, database=database)


@pytest.fixture(scope="module")
def scratch_url():
    """A fresh database with PostGIS, dropped after the module; the test database is never touched."""
    admin = create_engine(_superuser_url("postgres"), isolation_level="AUTOCOMMIT")
    owner = make_url(TEST_DATABASE_URL).username
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{SCRATCH}" OWNER "{owner}"'))
    scratch = create_engine(_superuser_url(SCRATCH), isolation_level="AUTOCOMMIT")
    with scratch.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gist"))
    scratch.dispose()
    yield make_url(TEST_DATABASE_URL).set(database=SCRATCH).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)'))
    admin.dispose()


def tables(db) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - POSTGIS_OWN


def schema_drift(db) -> list:
    """Differences between the models and the migrated schema, as Alembic's autogenerate sees them."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "include_object": alembic_helpers.include_object, "compare_type": True})
        return compare_metadata(context, db.metadata)


def current_revision(db):
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrade_downgrade_upgrade(scratch_url):
    with another_app(SQLALCHEMY_DATABASE_URI=scratch_url) as app, app.app_context():
        db = extensions.db
        models = set(db.metadata.tables)
        head = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config()).get_current_head()

        flask_migrate.upgrade()
        assert models <= tables(db) and current_revision(db) == head
        assert schema_drift(db) == []

        flask_migrate.downgrade(revision="base")
        assert tables(db) - {"alembic_version"} == set() and current_revision(db) is None

        flask_migrate.upgrade()
        assert models <= tables(db) and current_revision(db) == head



def test_a_downgrade_past_suspensions_is_refused_while_an_account_is_suspended(scratch_url):
    """Revision 0008 has no word for a suspension: going back to it would let every suspended account in."""
    with another_app(SQLALCHEMY_DATABASE_URI=scratch_url) as app, app.app_context():
        db = extensions.db
        flask_migrate.upgrade()
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, phone, password_hash, name, role, district_code, suspended_at) "
                              "VALUES (gen_random_uuid(), '01099990000', 'x', '정지됨', 'admin', NULL, now())"))
        head = current_revision(db)
        with pytest.raises(SystemExit):  # flask-migrate prints the reason and exits 1, as the command line does
            flask_migrate.downgrade(revision="0008")
        assert current_revision(db) == head and "suspended_at" in {  # the whole downgrade was undone
            c["name"] for c in inspect(db.engine).get_columns("users")}
        assert schema_drift(db) == []  # the later revisions' indexes too
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM users"))
        flask_migrate.downgrade(revision="0008")
        assert current_revision(db) == "0008"
        flask_migrate.upgrade()


def test_a_downgrade_past_0006_keeps_one_key_per_caller_where_bells_of_one_owner_share_one(scratch_url):
    """0006 scoped a bell's key to the bell; the older schema has one key per caller, a bell's incidents counted
    as their owner's: two bells of one owner, each pressed once (key "1"), must not stop the downgrade."""
    with another_app(SQLALCHEMY_DATABASE_URI=scratch_url) as app, app.app_context():
        db = extensions.db
        flask_migrate.upgrade()
        with db.engine.begin() as conn:
            owner = conn.execute(text("INSERT INTO users (id, phone, password_hash, name, role) "
                                      "VALUES (gen_random_uuid(), '01099990001', 'x', '가게', 'citizen') "
                                      "RETURNING id")).scalar()
            for n in (1, 2):
                conn.execute(text(
                    "WITH bell AS (INSERT INTO bell_devices (id, name, key_hash, key_prefix, owner_id, location) "
                    "VALUES (gen_random_uuid(), :name, :hash, 'p', :owner, 'SRID=4326;POINT(126.92 37.47)') "
                    "RETURNING id) INSERT INTO incidents (id, trigger, location, caller_id, bell_device_id, "
                    "idempotency_key) SELECT gen_random_uuid(), 'device', 'SRID=4326;POINT(126.92 37.47)', :owner, "
                    "id, '1' FROM bell"), {"name": f"벨 {n}", "hash": f"hash-{n}", "owner": owner})
        flask_migrate.downgrade(revision="0005")
        assert current_revision(db) == "0005"
        with db.engine.begin() as conn:
            assert conn.execute(text("SELECT count(idempotency_key), count(*) FROM incidents")).one() == (1, 2)
        flask_migrate.upgrade()
