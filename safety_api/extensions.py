"""Extension objects, created unbound here and bound to the app in create_app."""
from http import HTTPStatus

import redis
from flask import current_app
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import MetaData
from sqlalchemy.orm import scoped_session

from safety_api.errors import PROBLEM, ProblemSchema

# Named constraints make Alembic downgrades and autogenerate deterministic.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
jwt = JWTManager()


class ProblemApi(Api):
    """flask-smorest's Api, documenting every error answer as application/problem+json with the Problem schema."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self):
        # flask-smorest documents its errors as application/json in its own shape; ours are RFC 9457.
        for status in HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["content"] = {PROBLEM: {"schema": self.ERROR_SCHEMA}}
            self.spec.components.response(status.name, response, lazy=True)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, {
            "description": "An error, as RFC 9457 problem details",
            "content": {PROBLEM: {"schema": self.ERROR_SCHEMA}}}, lazy=True)


api = ProblemApi()
socketio = SocketIO()


def fail_fast() -> Retry:
    """One immediate retry (a pooled connection gone stale across a Redis restart), then fail.

    redis-py 8 retries ten times with backoff by default, ~3.5 s per command while Redis is away: long enough
    to stall an SOS answer on its best-effort emit and to block a socket's handlers until its pings time out.
    """
    return Retry(NoBackoff(), 1)


class RedisHolder:
    """The current app's Redis client, created at create_app time (no connection at import).

    Kept on the app, not on this object, so that a second app in one process (a test, a CLI tool) never
    re-points the first one at another Redis.
    """

    def init_app(self, app):
        app.extensions["redis"] = redis.Redis.from_url(
            app.config["REDIS_URL"], decode_responses=True,
            socket_connect_timeout=2, socket_timeout=2, health_check_interval=30, retry=fail_fast())

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions["redis"]


redis_store = RedisHolder()


def autocommit_connection():
    """A pooled connection outside any transaction, for a single read-only statement on a hot public path:
    no BEGIN and no ROLLBACK round trips around it (a third of the facilities endpoint's database time)."""
    return db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def commit_keeping(session, *keep):
    """Commit, leaving the objects in `keep` as they were written, so that answering with them reads nothing
    back (the SOS answers its caller from the incident it has just created); every other object is expired, as
    a commit always does."""
    target = session.registry() if isinstance(session, scoped_session) else session
    expire_on_commit, target.expire_on_commit = target.expire_on_commit, False
    try:
        target.commit()
    finally:
        target.expire_on_commit = expire_on_commit
    kept = {id(obj) for obj in keep}
    for obj in list(target.identity_map.values()):
        if id(obj) not in kept:
            target.expire(obj)
