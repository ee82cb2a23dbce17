"""SOS (긴급신고) from phones and bells, and the operators' incident workflow."""
from flask import current_app, request
from flask_smorest import Blueprint
from marshmallow import fields, validate, validates_schema

from safety_api.api.schemas import Latitude, Longitude, StrictSchema, Text, check_lat_lon_together, links
from safety_api.clock import utcnow
from safety_api.errors import Invalid
from safety_api.extensions import db, redis_store
from safety_api.models.incidents import TRIGGERS
from safety_api.ratelimit import limiter
from safety_api.security import device, me, require, require_device
from safety_api.services import incidents, sos_ingest, sos_raise
from safety_api.services.incident_views import caller_view, detail_view, operator_view

blp = Blueprint("incidents", __name__, url_prefix="/api/v1", description="SOS and incidents")

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_DOC = {"in": "header", "name": IDEMPOTENCY_HEADER, "required": False,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                   "description": "The same key again answers 200 with the incident it made (1 to 128 printable "
                                  "characters)."}


class SosSchema(StrictSchema):
    lat = Latitude(required=True)
    lon = Longitude(required=True)
    accuracy_m = fields.Float(load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(0, 5000))
    # `device` is a bell's (POST /bells/sos) and `walk_escalation` the server's own (a walk's unanswered prompt)
    trigger = fields.String(load_default="button", validate=validate.OneOf(
        [t for t in TRIGGERS if t not in ("device", "walk_escalation")]))


class BellSosSchema(StrictSchema):
    lat = Latitude(load_default=None, allow_none=True)
    lon = Longitude(load_default=None, allow_none=True)

    @validates_schema
    def both_or_neither(self, data, **kwargs):
        # Neither: the bell's registered place. One alone is a faulty device, told so rather than raised at
        # the registered place as if it had sent nothing (a mobile bell's alarm would go to the wrong place).
        check_lat_lon_together(data)


class FixesSchema(StrictSchema):
    # Each fix is validated on its own so one bad fix in a background batch does not lose the others.
    fixes = fields.List(fields.Dict(), required=True, validate=validate.Length(1, 500), metadata={
        "description": "Fixes {lat, lon, accuracy_m, t}; t is ISO 8601 with offset or epoch seconds. "
                       "Invalid ones are counted in `rejected` with a reason; the rest are kept.",
        "example": [{"lat": 37.4706, "lon": 126.9191, "accuracy_m": 8, "t": "2026-11-22T22:10:05+09:00"}]})


class FixesResult(StrictSchema):
    accepted = fields.Integer()
    rejected = fields.Integer()
    duplicates = fields.Integer()
    errors = fields.List(fields.Dict())


class PinSchema(StrictSchema):
    pin = fields.String(required=True, validate=validate.Length(1, 16))


class StatusSchema(StrictSchema):
    status = fields.String()


class ListQuery(StrictSchema):
    status = fields.String(load_default="open", validate=validate.OneOf(
        ["open", "acknowledged", "dispatched", "resolved", "cancelled", "all"]))


# The operator view's `revision` the operator acted on: a change recorded since (a duress PIN, an escalation, a
# colleague's act) makes the act a 409 rather than close or redirect an incident the operator has not seen.
Seen = lambda: fields.Integer(load_default=None, allow_none=True, strict=True,  # noqa: E731
                              validate=validate.Range(1, 2**31 - 1),
                              metadata={"description": "The revision acted on; 409 if the incident changed since"})


class DispatchSchema(StrictSchema):
    agency = Text(80, required=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    revision = Seen()


class ResolveSchema(StrictSchema):
    outcome = fields.String(required=True, validate=validate.OneOf(["resolved", "false_alarm", "cancelled_by_user"]))
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    revision = Seen()


class IncidentEnvelope(StrictSchema):
    incident = fields.Dict()


class IncidentList(StrictSchema):
    items = fields.List(fields.Dict())


def idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not (1 <= len(key) <= 128 and key.isprintable()):
        raise Invalid("Idempotency-Key must be 1 to 128 printable characters.",
                      errors=[{"field": IDEMPOTENCY_HEADER, "message": "Invalid."}])
    if key is not None and key.startswith(sos_raise.SERVER_KEY_PREFIXES):
        # The server's own keys (a walk's escalation: walk:<id>): a phone's key must never be taken for one.
        raise Invalid(f"Idempotency-Key may not start with {' or '.join(sos_raise.SERVER_KEY_PREFIXES)}.",
                      errors=[{"field": IDEMPOTENCY_HEADER, "message": "Reserved."}])
    return key


@blp.post("/sos")
@blp.arguments(SosSchema())
@blp.response(201, IncidentEnvelope)
@blp.alt_response(200, schema=IncidentEnvelope, description="A replay of the same Idempotency-Key")
@blp.doc(parameters=[IDEMPOTENCY_DOC])
@blp.doc(**links(201, "/incident/id", "incident_id", "POST /api/v1/sos/{incident_id}/fixes",
                 "POST /api/v1/sos/{incident_id}/cancel", "GET /api/v1/sos/{incident_id}"))
@require("citizen")
def raise_sos(body):
    """Raise an SOS; a retry with the same Idempotency-Key returns the same incident (200), and its point joins
    the incident's trail."""
    incident, created = sos_raise.raise_sos(db.session, caller=me(), idempotency_key=idempotency_key(),
                                            escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"], **body)
    answer = {"incident": caller_view(incident)}  # built first: nothing after it can spoil the answer
    if not created:
        sos_ingest.record_retry_point(db.session, redis_store.client, user=me(), incident_id=incident.id,
                                      lat=body["lat"], lon=body["lon"], accuracy_m=body["accuracy_m"], now=utcnow())
    return answer, 201 if created else 200


@blp.post("/bells/sos")
@blp.arguments(BellSosSchema())
@blp.response(201, IncidentEnvelope)
@blp.alt_response(200, schema=IncidentEnvelope, description="A replay of the same Idempotency-Key")
@blp.doc(parameters=[IDEMPOTENCY_DOC])
@require_device
def bell_sos(body):
    """An emergency bell raises an SOS (header X-Device-Key) at the point it sends, or at its registered place
    when it sends none; lat and lon come together (422 for one alone)."""
    incident, created = sos_raise.raise_bell_sos(db.session, device=device(), lat=body["lat"], lon=body["lon"],
                                                 idempotency_key=idempotency_key(),
                                                 escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"])
    # The status its owner's phone shows: after a duress PIN a bell must not read differently from the phone.
    return {"incident": {"id": str(incident.id), "status": incident.caller_status}}, 201 if created else 200


@blp.post("/sos/<uuid:incident_id>/fixes")
@blp.arguments(FixesSchema())
@blp.response(200, FixesResult)
@require("citizen")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def sos_fixes(body, incident_id):
    """Send the caller's positions (batches with client timestamps are fine)."""
    return sos_ingest.record_fixes(db.session, redis_store.client, user=me(), incident_id=incident_id,
                                  raw_fixes=body["fixes"], now=utcnow())


@blp.post("/sos/<uuid:incident_id>/cancel")
@blp.arguments(PinSchema())
@blp.response(200, StatusSchema)
@require("citizen")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def cancel(body, incident_id):
    """Cancel with the cancel PIN (the duress PIN answers the same)."""
    attempt = {"user": me(), "incident_id": incident_id, "pin": body["pin"],
               "escalate_after_s": current_app.config["SOS_ESCALATE_AFTER_S"]}
    try:
        limiter().hit(current_app.config["PIN_LIMIT"], "pin", str(me().id))
    except Exception:  # the limit is full or Redis is away: that refusal stands, but a duress PIN is heeded
        incidents.heed_duress(db.session, **attempt)
        raise
    return incidents.cancel_with_pin(db.session, **attempt)


@blp.get("/sos/<uuid:incident_id>")
@blp.response(200, IncidentEnvelope)
@require("citizen")
@blp.alt_response(404, response="NOT_FOUND")
def my_incident(incident_id):
    """The caller's own view of an incident."""
    return {"incident": caller_view(incidents.get_for_caller(db.session, user=me(), incident_id=incident_id))}


@blp.get("/incidents")
@blp.arguments(ListQuery(), location="query")
@blp.response(200, IncidentList)
@blp.doc(**links(200, "/items/0/id", "incident_id", "GET /api/v1/incidents/{incident_id}",
                 "POST /api/v1/incidents/{incident_id}/ack", "POST /api/v1/incidents/{incident_id}/dispatch",
                 "POST /api/v1/incidents/{incident_id}/resolve"))
@require("operator", "admin")
def list_incidents(query):
    """Incidents of my district (admins: all): the active ones whole, by priority then age; `all` and closed
    statuses the newest 500, newest first."""
    status = None if query["status"] == "all" else query["status"]
    return {"items": [operator_view(i) for i in incidents.list_for_operator(db.session, user=me(), status=status)]}


@blp.get("/incidents/<uuid:incident_id>")
@blp.response(200, IncidentEnvelope)
@require("operator", "admin")
@blp.alt_response(404, response="NOT_FOUND")
def show(incident_id):
    """One incident with nearest cameras, trail, timeline and the caller's earlier incidents."""
    incident = incidents.read_for_operator(db.session, user=me(), incident_id=incident_id)
    return {"incident": detail_view(db.session, incident)}


@blp.post("/incidents/<uuid:incident_id>/ack")
@blp.response(200, IncidentEnvelope)
@blp.alt_response(409, response="CONFLICT")
@require("operator", "admin")
@blp.alt_response(404, response="NOT_FOUND")
def acknowledge(incident_id):
    """Take the incident (409 if another operator already did)."""
    return {"incident": operator_view(incidents.acknowledge(db.session, user=me(), incident_id=incident_id))}


@blp.post("/incidents/<uuid:incident_id>/dispatch")
@blp.arguments(DispatchSchema())
@blp.response(200, IncidentEnvelope)
@require("operator", "admin")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def dispatch(body, incident_id):
    """Record that an agency was dispatched."""
    return {"incident": operator_view(incidents.dispatch(db.session, user=me(), incident_id=incident_id, **body))}


@blp.post("/incidents/<uuid:incident_id>/resolve")
@blp.arguments(ResolveSchema())
@blp.response(200, IncidentEnvelope)
@require("operator", "admin")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def resolve(body, incident_id):
    """Close the incident with its outcome."""
    return {"incident": operator_view(incidents.resolve(db.session, user=me(), incident_id=incident_id, **body))}
