"""Walk-home monitoring (안심귀가): start, stream fixes, answer prompts, finish, and read a walk."""
from flask import current_app
from flask_smorest import Blueprint
from marshmallow import fields, validate

from safety_api.api.geodata import route_settings
from safety_api.api.incidents import FixesResult, FixesSchema
from safety_api.api.schemas import PointSchema, StrictSchema, links
from safety_api.clock import utcnow
from safety_api.extensions import db, redis_store
from safety_api.security import me, require
from safety_api.services import routes, walk_ingest, walks

blp = Blueprint("walks", __name__, url_prefix="/api/v1/walks", description="Walk-home monitoring")


class StartSchema(StrictSchema):
    origin = fields.Nested(PointSchema, required=True, data_key="from")
    destination = fields.Nested(PointSchema, required=True, data_key="to")
    profile = fields.String(load_default="safe", validate=validate.OneOf(["safe", "shortest"]))
    guardian_ids = fields.List(fields.UUID(), load_default=list, validate=validate.Length(max=20), metadata={
        "description": "Accepted guardians who may watch this walk and are told it started; none if omitted."})


class StartedSchema(StrictSchema):
    id = fields.String()
    status = fields.String()
    route = fields.Dict()
    expected_arrival = fields.String()
    started_at = fields.String()
    guardian_ids = fields.List(fields.String())


class CheckinSchema(StrictSchema):
    ok = fields.Boolean(required=True, metadata={"description": "true: I am fine; false: raise the SOS now."})


class CheckinResult(StrictSchema):
    status = fields.String()
    answered = fields.Integer()
    incident_id = fields.String()


class WalkStatusSchema(StrictSchema):
    status = fields.String()


class WalkEnvelope(StrictSchema):
    walk = fields.Dict()


def walk_settings(cfg) -> dict:
    """The thresholds a walk keeps for its whole life, whichever process judges it."""
    return {"monitor": {"signal_lost_s": cfg["WALK_SIGNAL_LOST_S"], "stall_s": cfg["WALK_STALL_S"],
                        "overdue_grace_s": cfg["WALK_OVERDUE_GRACE_S"]},
            "checkin_window_s": cfg["WALK_CHECKIN_WINDOW_S"], "escalate_after_s": cfg["SOS_ESCALATE_AFTER_S"],
            "arrival_margin_s": cfg["WALK_ARRIVAL_MARGIN_S"], "arrival_margin_ratio": cfg["WALK_ARRIVAL_MARGIN_RATIO"]}


@blp.post("")
@blp.arguments(StartSchema())
@blp.response(201, StartedSchema)
@blp.doc(**links(201, "/id", "walk_id", "POST /api/v1/walks/{walk_id}/fixes", "POST /api/v1/walks/{walk_id}/checkin",
                 "POST /api/v1/walks/{walk_id}/finish", "GET /api/v1/walks/{walk_id}"))
@require("citizen")
@blp.alt_response(409, response="CONFLICT")
def start(body):
    """Start a walk home on a safe (default) or shortest route; the chosen guardians are told."""
    cfg, now = current_app.config, utcnow()
    walk, feature = walks.start(db.session, walker=me(), origin=(body["origin"]["lat"], body["origin"]["lon"]),
                                destination=(body["destination"]["lat"], body["destination"]["lon"]),
                                profile=body["profile"], guardian_ids=body["guardian_ids"],
                                route_settings=route_settings(cfg), settings=walk_settings(cfg), now=now,
                                night=routes.is_night(now, cfg["ROUTE_NIGHT_HOURS"]))
    return {"id": str(walk.id), "status": walk.status, "route": feature, "started_at": now.isoformat(),
            "expected_arrival": walk.expected_arrival.isoformat(),
            "guardian_ids": [str(g) for g in body["guardian_ids"]]}


@blp.post("/<uuid:walk_id>/fixes")
@blp.arguments(FixesSchema())
@blp.response(200, FixesResult)
@require()
@blp.alt_response(404, response="NOT_FOUND")
def add_fixes(body, walk_id):
    """Send the walker's positions; background batches with client timestamps may arrive late."""
    return walk_ingest.record_fixes(db.session, redis_store.client, user=me(), walk_id=walk_id,
                                    raw_fixes=body["fixes"], now=utcnow())


@blp.post("/<uuid:walk_id>/checkin")
@blp.arguments(CheckinSchema())
@blp.response(200, CheckinResult)
@require()
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def checkin(body, walk_id):
    """Answer a prompt: ok=true closes it; ok=false raises an SOS at once."""
    return walks.answer_checkin(db.session, user=me(), walk_id=walk_id, ok=body["ok"], now=utcnow())


@blp.post("/<uuid:walk_id>/finish")
@blp.response(200, WalkStatusSchema)
@require()
@blp.alt_response(404, response="NOT_FOUND")
def finish(walk_id):
    """End the walk."""
    return walks.finish(db.session, user=me(), walk_id=walk_id, now=utcnow())


@blp.get("/<uuid:walk_id>")
@blp.response(200, WalkEnvelope)
@require()
@blp.alt_response(404, response="NOT_FOUND")
def show(walk_id):
    """The walk with route, trail, alerts and last fix (walker, chosen guardians, operators once escalated)."""
    return {"walk": walks.get_for_viewer(db.session, viewer=me(), walk_id=walk_id)}
