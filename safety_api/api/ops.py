"""Liveness and readiness."""
from flask import current_app
from flask_smorest import Blueprint
from marshmallow import fields
from sqlalchemy import text

from safety_api.api.schemas import StrictSchema
from safety_api.errors import Unavailable
from safety_api.extensions import db

blp = Blueprint("ops", __name__, url_prefix="/", description="Operations")


class HealthSchema(StrictSchema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())


@blp.get("/healthz")
@blp.response(200, HealthSchema)
def healthz():
    """The process is up."""
    return {"status": "ok", "checks": {}}


@blp.get("/readyz")
@blp.response(200, HealthSchema)
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
def readyz():
    """The database, migrated to this release's schema, and Redis are reachable (503 otherwise)."""
    applied = []
    checks = {"database": _check(lambda: applied.extend(_applied_revisions())),
              "redis": _check(lambda: current_app.extensions["redis"].ping())}
    if checks["database"] == "ok":
        checks["schema"] = schema_state(set(applied), _release_revisions(current_app))
    if any(not v.startswith("ok") for v in checks.values()):
        db.session.rollback()
        raise Unavailable("Not ready: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    return {"status": "ok", "checks": checks}


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:  # any failure of a dependency means "not ready", with its name
        return exc.__class__.__name__


def _applied_revisions() -> list:
    """The revisions alembic_version records; none if the table is not there (never migrated)."""
    if db.session.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL")):
        return list(db.session.scalars(text("SELECT version_num FROM alembic_version")))
    return []


def _release_revisions(app) -> tuple[frozenset, frozenset]:
    """(heads, every revision) of this release's migration scripts, read once per app."""
    if "migration_revisions" not in app.extensions:
        from alembic.script import ScriptDirectory
        script = ScriptDirectory(app.extensions["migrate"].directory)
        app.extensions["migration_revisions"] = (
            frozenset(script.get_heads()), frozenset(rev.revision for rev in script.walk_revisions()))
    return app.extensions["migration_revisions"]


def schema_state(applied: set, release: tuple[frozenset, frozenset]) -> str:
    """"ok" when the database has this release's schema; a reason (not "ok") when it lacks it.

    A revision this release does not know was applied by a newer one: during a rolling deploy the migrations
    run before the new processes start, and the old ones must stay in the load balancer until replaced
    (migrations keep the old code working, docs/operations.md), so that is ready too."""
    heads, known = release
    if applied == heads:
        return "ok"
    if applied and not applied <= known:
        return f"ok (the database is at {_names(applied)}, newer than this release's {_names(heads)})"
    at = _names(applied) if applied else "no revision (never migrated)"
    return f"the database is at {at}, this release needs {_names(heads)}: run `flask --app wsgi db upgrade`"


def _names(revisions) -> str:
    return ", ".join(sorted(revisions))
