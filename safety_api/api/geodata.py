"""Safety facilities near a point (안심시설물) and safe walking routes (안심경로)."""
from flask import current_app
from flask_smorest import Blueprint
from marshmallow import ValidationError, fields, validate, validates_schema

from safety_api.api.schemas import Latitude, Longitude, StrictSchema
from safety_api.clock import utcnow
from safety_api.extensions import autocommit_connection, db
from safety_api.models.geodata import FACILITY_KINDS
from safety_api.services import facilities, routes

blp = Blueprint("geodata", __name__, url_prefix="/api/v1", description="Safety facilities and safe routes")
# API.md's default: the places a person can go to or be seen by. Streetlights (thousands in a city) are asked for.
DEFAULT_KINDS = ("cctv", "bell", "police", "safe_house", "parcel_box")


class KindList(fields.String):
    """Comma-separated facility kinds."""

    def _deserialize(self, value, attr, data, **kwargs):
        kinds = [k.strip() for k in super()._deserialize(value, attr, data, **kwargs).split(",") if k.strip()]
        unknown = sorted(set(kinds) - set(FACILITY_KINDS))
        if not kinds or unknown:
            raise ValidationError(f"Kinds are a comma-separated subset of {', '.join(FACILITY_KINDS)}.")
        return kinds

    def _serialize(self, value, attr, obj, **kwargs):
        """As written in a query (the OpenAPI document shows the default so)."""
        return None if value is None else ",".join(value)


class LatLonPair(fields.String):
    """A point written as `lat,lon`."""

    def _deserialize(self, value, attr, data, **kwargs):
        parts = super()._deserialize(value, attr, data, **kwargs).split(",")
        if len(parts) != 2:
            raise ValidationError("Write the point as lat,lon.")
        lat = Latitude().deserialize(parts[0].strip())
        lon = Longitude().deserialize(parts[1].strip())
        return lat, lon


class FacilitiesQuery(StrictSchema):
    lat = Latitude(required=True)
    lon = Longitude(required=True)
    radius = fields.Float(load_default=300, allow_nan=False, validate=validate.Range(1, 2000))
    kinds = KindList(load_default=DEFAULT_KINDS)
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))

    @validates_schema
    def within_configured_bounds(self, data, **kwargs):
        if data.get("radius", 0) > current_app.config["FACILITY_MAX_RADIUS_M"]:
            raise ValidationError("Radius above the configured maximum.", "radius")
        if data.get("limit", 0) > current_app.config["FACILITY_MAX_LIMIT"]:
            raise ValidationError("Limit above the configured maximum.", "limit")


class FacilitiesSchema(StrictSchema):
    type = fields.String()
    features = fields.List(fields.Dict())


class RouteQuery(StrictSchema):
    origin = LatLonPair(required=True, data_key="from", metadata={"example": "37.4705,126.9190"})
    destination = LatLonPair(required=True, data_key="to", metadata={"example": "37.4650,126.9260"})
    profile = fields.String(load_default="safe", validate=validate.OneOf(["safe", "shortest"]))


class RouteSchema(StrictSchema):
    type = fields.String()
    geometry = fields.Dict()
    properties = fields.Dict()


@blp.get("/facilities")
@blp.arguments(FacilitiesQuery(), location="query")
@blp.response(200, FacilitiesSchema)
def nearby(query):
    """Cameras, bells, police boxes, safe houses, parcel boxes and streetlights near a point, nearest first."""
    with autocommit_connection() as conn:
        body = facilities.nearby_geojson(conn, lat=query["lat"], lon=query["lon"], radius_m=query["radius"],
                                         kinds=query["kinds"], limit=query["limit"])
    return current_app.response_class(body, mimetype="application/json")


@blp.get("/routes")
@blp.arguments(RouteQuery(), location="query")
@blp.response(200, RouteSchema)
def route(query):
    """A walking route: `safe` (along cameras and bells, bounded detour) or `shortest`."""
    cfg = current_app.config
    found = routes.plan_route(db.session, settings=route_settings(cfg), origin=query["origin"],
                              destination=query["destination"], profile=query["profile"],
                              night=routes.is_night(utcnow(), cfg["ROUTE_NIGHT_HOURS"]))
    return routes.as_feature(found)


def route_settings(cfg) -> dict:
    return {"max_detour": cfg["ROUTE_MAX_DETOUR"], "snap_max_m": cfg["ROUTE_SNAP_MAX_M"],
            "walking_speed_mps": cfg["WALKING_SPEED_MPS"], "version_check_s": cfg["ROUTE_VERSION_CHECK_S"]}
