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
def readyz():
    """The database and Redis are reachable (503 otherwise)."""
    checks = {"database": _check(lambda: db.session.execute(text("SELECT 1"))),
              "redis": _check(lambda: current_app.extensions["redis"].ping())}
    if any(v != "ok" for v in checks.values()):
        db.session.rollback()
        raise Unavailable("Not ready: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    return {"status": "ok", "checks": checks}


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:  # any failure of a dependency means "not ready", with its name
        return exc.__class__.__name__
