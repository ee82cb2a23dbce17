"""Escort booking with safe-return scouts (안심귀가스카우트): meeting points, bookings, offers, duty."""
from flask import current_app
from flask_smorest import Blueprint
from marshmallow import fields, validate, validates_schema

from safety_api.api.geodata import route_settings
from safety_api.api.incidents import IDEMPOTENCY_HEADER, idempotency_key
from safety_api.api.me import DutySchema
from safety_api.api.schemas import (
    District,
    Latitude,
    Longitude,
    Name,
    PointSchema,
    StrictSchema,
    check_lat_lon_together,
)
from safety_api.clock import utcnow
from safety_api.extensions import db, redis_store
from safety_api.models.escort import KINDS, STATES
from safety_api.security import me, require
from safety_api.services import escort, escort_live, escort_reads, meeting_points, staff
from safety_api.services.escort_views import booking_view, detail_view, meeting_point_view

blp = Blueprint("escort", __name__, url_prefix="/api/v1/escort", description="Escort booking (안심귀가스카우트)")
BOOKING_KEY_DOC = {"in": "header", "name": IDEMPOTENCY_HEADER, "required": False,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                   "description": "The citizen's same key again answers 200 with the booking it made; with another "
                                  "booking request, 422 (1 to 128 printable characters)."}


class MeetingPointQuery(StrictSchema):
    lat = Latitude(load_default=None)
    lon = Longitude(load_default=None)
    district = District(load_default=None)
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 200))

    @validates_schema
    def both_or_neither(self, data, **kwargs):
        check_lat_lon_together(data)


class MeetingPointIn(StrictSchema):
    name = Name(required=True)
    name_en = Name(load_default=None, allow_none=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    location = fields.Nested(PointSchema, required=True)


class MeetingPointPatch(StrictSchema):
    name = Name()
    name_en = Name(allow_none=True)
    kind = fields.String(validate=validate.OneOf(KINDS))
    active = fields.Boolean()


class MeetingPointOut(StrictSchema):
    id = fields.String()
    name = fields.String()
    name_en = fields.String(allow_none=True)
    kind = fields.String()
    district = fields.String()
    active = fields.Boolean()
    location = fields.Dict(metadata={"description": "GeoJSON Point"})
    distance_m = fields.Float()


class MeetingPointList(StrictSchema):
    items = fields.List(fields.Nested(MeetingPointOut))


class EscortBookingIn(StrictSchema):
    meeting_point_id = fields.UUID(required=True)
    meet_at = fields.AwareDateTime(required=True, metadata={"example": "2026-11-24T22:30:00+09:00"})
    to = fields.Nested(PointSchema, required=True)


class EscortPersonOut(StrictSchema):
    id = fields.String()
    name = fields.String()
    slot = fields.Integer()


class EscortEventOut(StrictSchema):
    kind = fields.String()
    actor_id = fields.String(allow_none=True)
    data = fields.Dict()
    at = fields.String()


class EscortBookingOut(StrictSchema):
    """A booking in full, or as an offer (to a scout without a slot): no `to`, `route`, `citizen` or `events`,
    but the walk's `distance_m` and `duration_s`."""

    id = fields.String()
    status = fields.String()
    district = fields.String()
    meet_at = fields.String()
    ends_at = fields.String(metadata={"description": "meet_at plus the route's expected duration"})
    meeting_point = fields.Nested(MeetingPointOut)
    to = fields.Nested(PointSchema)
    citizen = fields.Nested(EscortPersonOut)
    scouts = fields.List(fields.Nested(EscortPersonOut))
    route = fields.Dict(metadata={"description": "GeoJSON Feature (LineString) with distance_m, duration_s, source"})
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    unconfirmed_flagged_at = fields.String(allow_none=True)
    events = fields.List(fields.Nested(EscortEventOut))
    distance_m = fields.Float(metadata={"description": "Offers only: the walk's length (the route's distance_m)"})
    duration_s = fields.Integer(metadata={"description": "Offers only: the walk's expected duration"})


class EscortBookingList(StrictSchema):
    items = fields.List(fields.Nested(EscortBookingOut))


class EscortBookingsQuery(StrictSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(STATES))


class EscortFixesIn(StrictSchema):
    fixes = fields.List(fields.Dict(), required=True, validate=validate.Length(1, 500))


class EscortFixesOut(StrictSchema):
    accepted = fields.Integer()
    rejected = fields.Integer()
    duplicates = fields.Integer()
    errors = fields.List(fields.Dict())


@blp.get("/meeting-points")
@blp.arguments(MeetingPointQuery(), location="query")
@blp.response(200, MeetingPointList)
@require()
def list_meeting_points(query):
    """Active meeting points (bus stops, stations), nearest first when lat and lon are given."""
    return {"items": [meeting_point_view(p, d) for p, d in meeting_points.nearest(db.session, **query)]}


@blp.post("/meeting-points")
@blp.arguments(MeetingPointIn())
@blp.response(201, MeetingPointOut)
@require("admin")
def create_meeting_point(body):
    """Add a meeting point (admins); its district is the one that contains it."""
    loc = body.pop("location")
    return meeting_point_view(meeting_points.create(db.session, lat=loc["lat"], lon=loc["lon"], **body))


@blp.patch("/meeting-points/<uuid:point_id>")
@blp.arguments(MeetingPointPatch())
@blp.response(200, MeetingPointOut)
@require("admin")
@blp.alt_response(404, response="NOT_FOUND")
def update_meeting_point(body, point_id):
    """Rename, reclassify, retire (`active: false`) or restore a meeting point (admins)."""
    return meeting_point_view(meeting_points.update(db.session, point_id=point_id, changes=body))


@blp.post("/bookings")
@blp.arguments(EscortBookingIn())
@blp.response(201, EscortBookingOut)
@blp.alt_response(200, schema=EscortBookingOut, description="A replay of the same Idempotency-Key")
@blp.doc(parameters=[BOOKING_KEY_DOC])
@require("citizen")
@blp.alt_response(409, response="CONFLICT")
def book(body):
    """Book an escort: 422 outside service hours, too late or too far; the problem type names the rule. A retry
    with the same Idempotency-Key answers the same booking (200)."""
    cfg = current_app.config
    booking, created = escort.book(db.session, citizen=me(), idempotency_key=idempotency_key(),
                                   policy=cfg["ESCORT_POLICY"], route_settings=route_settings(cfg), **body)
    return booking_view(booking, viewer=me()), 201 if created else 200


@blp.get("/bookings")
@blp.arguments(EscortBookingsQuery(), location="query")
@blp.response(200, EscortBookingList)
@require()
def list_bookings(query):
    """My bookings (citizen), my escorts (scout), my district's (operator), or all (admin)."""
    return {"items": [booking_view(b, viewer=me()) for b in escort_reads.list_bookings(db.session, user=me(), **query)]}


@blp.get("/bookings/<uuid:booking_id>")
@blp.response(200, EscortBookingOut)
@blp.alt_response(409, response="CONFLICT")
@require()
@blp.alt_response(404, response="NOT_FOUND")
def show_booking(booking_id):
    """A booking with its scouts, route and audit trail; an offer to a district scout without a slot (404 to other
    citizens)."""
    return detail_view(db.session, escort_reads.get_booking(db.session, user=me(), booking_id=booking_id), viewer=me())


@blp.post("/bookings/<uuid:booking_id>/accept")
@blp.response(200, EscortBookingOut)
@blp.alt_response(409, response="CONFLICT")
@require("scout")
@blp.alt_response(404, response="NOT_FOUND")
def accept(booking_id):
    """Take a place in the pair; 409 when the pair is complete or you are busy then."""
    return booking_view(escort.accept(db.session, scout=me(), booking_id=booking_id), viewer=me())


@blp.post("/bookings/<uuid:booking_id>/start")
@blp.response(200, EscortBookingOut)
@require("scout", "operator", "admin")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def start(booking_id):
    """The pair met the citizen: confirmed -> in_progress; 409 earlier than ESCORT_START_LEAD_MINUTES before the
    meeting, or once the escort's time is over."""
    return booking_view(escort.start(db.session, user=me(), booking_id=booking_id,
                                     policy=current_app.config["ESCORT_POLICY"]), viewer=me())


@blp.post("/bookings/<uuid:booking_id>/complete")
@blp.response(200, EscortBookingOut)
@require("scout", "operator", "admin")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def complete(booking_id):
    """The citizen is home: in_progress -> completed."""
    return booking_view(escort.complete(db.session, user=me(), booking_id=booking_id), viewer=me())


@blp.post("/bookings/<uuid:booking_id>/no-show")
@blp.response(200, EscortBookingOut)
@require("scout", "operator", "admin")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def no_show(booking_id):
    """Nobody came to the meeting point: confirmed -> no_show, from the meeting time on."""
    return booking_view(escort.no_show(db.session, user=me(), booking_id=booking_id), viewer=me())


@blp.post("/bookings/<uuid:booking_id>/cancel")
@blp.response(200, EscortBookingOut)
@require("citizen", "operator", "admin")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def cancel(booking_id):
    """Cancel until the escort starts (the citizen, the district's operators, admins); frees the scouts."""
    return booking_view(escort.cancel(db.session, user=me(), booking_id=booking_id), viewer=me())


@blp.post("/bookings/<uuid:booking_id>/fixes")
@blp.arguments(EscortFixesIn())
@blp.response(200, EscortFixesOut)
@require("scout")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def post_fixes(body, booking_id):
    """Positions of a scout during the escort (phones in the background; the socket is the fast path)."""
    return escort_live.record_escort_fixes(db.session, redis_store.client, scout=me(), booking_id=booking_id,
                                           fixes=body["fixes"], now=utcnow())


@blp.get("/offers")
@blp.response(200, EscortBookingList)
@blp.alt_response(409, response="CONFLICT")
@require("scout")
def list_offers():
    """Open bookings of my district that still need scouts, as offers (no destination); 409 off duty."""
    return {"items": [booking_view(b, viewer=me()) for b in escort_reads.offers(db.session, scout=me())]}


@blp.put("/duty")
@blp.arguments(DutySchema())
@blp.response(200, DutySchema)
@require("scout")
def set_duty(body):
    """Start or end my shift; only scouts on duty are offered escorts and may accept them."""
    return {"on_duty": staff.set_duty(db.session, user=me(), on_duty=body["on_duty"],
                                      escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"])}
