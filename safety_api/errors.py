"""Domain errors and their one mapping to RFC 9457 problem+json, for HTTP and sockets alike."""
import logging

import redis
from flask import Flask, request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError
from marshmallow import Schema, fields
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
UNDONE_BY_A_CONCURRENT_ONE = {"40001", "40P01"}  # SQLSTATEs: serialization failure, deadlock
# program_limit_exceeded: a value too large for where it goes, e.g. an index entry over a btree page's third.
# psycopg raises it as an OperationalError, which would otherwise read as the database being away.
TOO_LARGE_TO_STORE = "54000"


class DomainError(Exception):
    """An error a client can cause or must be told about; carries its HTTP status."""

    status = 400
    title = "Bad request"
    kind = "bad-request"

    def __init__(self, detail: str | None = None, *, errors=None, headers=None):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}


class Unauthorized(DomainError):
    status, title, kind = 401, "Authentication required", "unauthorized"


class Forbidden(DomainError):
    status, title, kind = 403, "Forbidden", "forbidden"


class NotFound(DomainError):
    status, title, kind = 404, "Not found", "not-found"


class Conflict(DomainError):
    status, title, kind = 409, "Conflict", "conflict"


class UnsupportedMediaType(DomainError):
    status, title, kind = 415, "Unsupported media type", "unsupported-media-type"


class Invalid(DomainError):
    status, title, kind = 422, "Unprocessable request", "validation"


class RateLimited(DomainError):
    status, title, kind = 429, "Too many attempts", "rate-limited"

    def __init__(self, detail=None, *, retry_after: int):
        super().__init__(detail, headers={"Retry-After": str(max(1, int(retry_after)))})


class Unavailable(DomainError):
    status, title, kind = 503, "Service temporarily unavailable", "unavailable"

    def __init__(self, detail=None):
        super().__init__(detail, headers={"Retry-After": "5"})


class ProblemFieldSchema(Schema):
    field = fields.String(required=True)
    message = fields.String(required=True)


class ProblemSchema(Schema):
    """RFC 9457 problem details, as `problem` builds them; the OpenAPI document's one error schema."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.List(fields.Nested(ProblemFieldSchema), metadata={"description": "Present for invalid input"})


def problem(status: int, title: str, detail: str, kind: str, errors=None) -> dict:
    """Build the problem+json body."""
    body = {"type": f"https://ansimi.example/problems/{kind}", "title": title,
            "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def to_problem(exc: BaseException) -> tuple[dict, int, dict]:
    """Map any exception to (body, status, headers); unknown ones become a logged 500."""
    if isinstance(exc, DomainError):
        return problem(exc.status, exc.title, exc.detail, exc.kind, exc.errors), exc.status, exc.headers
    if isinstance(exc, (JWTExtendedException, PyJWTError)):
        return problem(401, "Authentication required", str(exc), "unauthorized"), 401, {}
    if isinstance(exc, HTTPException):
        return _from_http(exc)
    if isinstance(exc, DataError):  # a value the database refuses to store, e.g. a NUL character in text
        log.warning("database refused a value: %s", exc.orig)
        return problem(422, "Unprocessable request", "A value in the request cannot be stored.",
                       "validation"), 422, {}
    if isinstance(exc, DBAPIError) and _sqlstate(exc) == TOO_LARGE_TO_STORE:
        log.warning("database refused a value as too large: %s", exc.orig)
        return problem(422, "Unprocessable request", "A value in the request is too large to be stored.",
                       "validation"), 422, {}
    if isinstance(exc, RecursionError):  # a body nested too deeply for the JSON decoder or the schemas
        log.warning("request too deeply nested")
        return problem(400, "Bad request", "The request body is nested too deeply.", "bad-request"), 400, {}
    if isinstance(exc, DBAPIError) and _sqlstate(exc) in UNDONE_BY_A_CONCURRENT_ONE:
        log.warning("transaction rolled back by the database: %s", _sqlstate(exc))
        return (problem(503, "Concurrent request", "The request met a concurrent one and was undone; retry it.",
                        "concurrent-request"), 503, {"Retry-After": "1"})
    if isinstance(exc, (OperationalError, PoolTimeout, redis.ConnectionError, redis.TimeoutError)) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated):
        log.warning("dependency unavailable: %s", exc.__class__.__name__)
        return (problem(503, "Service temporarily unavailable", "A backing service is unreachable; retry shortly.",
                        "unavailable"), 503, {"Retry-After": "5"})
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "An unexpected error occurred.", "internal"), 500, {}


def _sqlstate(exc: DBAPIError) -> str:
    return getattr(exc.orig, "sqlstate", None) or ""


def _from_http(exc: HTTPException) -> tuple[dict, int, dict]:
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    errors = _field_errors(messages) if messages else None
    status = exc.code or 500
    detail = "Some fields are invalid." if errors else (exc.description or exc.name)
    if status == 400 and "Invalid JSON body." in str(messages):
        detail = "The request body is not valid JSON."
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # e.g. Allow on a 405
    headers.update((data.get("headers") or {}) if isinstance(data, dict) else {})
    return problem(status, exc.name, detail, exc.name.lower().replace(" ", "-"), errors), status, headers


def _field_errors(messages) -> list[dict]:
    """Flatten webargs' {location: {field: [msg]}} into [{field, message}]."""
    out = []

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, sub in value.items():
                key = "" if key == "_schema" else str(key)  # marshmallow's name for the whole object
                walk(f"{prefix}.{key}" if prefix and key else prefix or key, sub)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out.extend({"field": prefix or "body", "message": m} for m in value)
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                walk(f"{prefix}[{i}]", sub)
        else:
            out.append({"field": prefix or "body", "message": str(value)})

    for location_messages in messages.values():
        walk("", location_messages)
    return out


def handle_http_error(exc):
    """Serve any exception as problem+json."""
    body, status, headers = to_problem(exc)
    if status >= 500 and status != 503:
        log.error("%s on %s %s", status, request.method, request.path)
    return body, status, {"Content-Type": PROBLEM, **headers}


def init_app(app: Flask):
    """Install the one error handler; call it after the extensions that bring their own shapes."""
    app.register_error_handler(Exception, handle_http_error)
    # flask-smorest and flask-jwt-extended register JSON handlers of their own shape for
    # subclasses; replacing every registered handler keeps one error shape everywhere.
    for handlers in app.error_handler_spec[None].values():
        for exc_class in list(handlers):
            handlers[exc_class] = handle_http_error
