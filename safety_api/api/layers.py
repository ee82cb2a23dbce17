"""Map layers and settings for the operator console (operators and admins only)."""
from flask import current_app
from flask_smorest import Blueprint
from marshmallow import ValidationError, fields, validate

from notifications import SocketEmitter
from safety_api.api.schemas import StrictSchema
from safety_api.errors import Invalid, Unavailable
from safety_api.extensions import db
from safety_api.models.geodata import FACILITY_KINDS
from safety_api.security import me, require
from safety_api.services import layers

blp = Blueprint("layers", __name__, url_prefix="/api/v1", description="Console map layers")

DISTRICT_CODE = validate.Regexp(r"^\d{5}$", error="A district is its 5-digit code, e.g. 11620.")
# Layers change only when the geodata is re-imported; the browser may keep them a few minutes.
CACHEABLE = {"Cache-Control": "private, max-age=300"}
# How often the page proves its live path; it shows the banner after one missed echo.
HEARTBEAT_S = 3.0
# While live, the page re-reads the open incidents this often all the same: an event published in the second a
# Redis restart takes is lost to this process's consoles, and a restart that short falls between two heartbeats.
REREAD_S = 30.0


class Bbox(fields.String):
    """`minLon,minLat,maxLon,maxLat` in WGS84."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            x0, y0, x1, y1 = (float(v) for v in super()._deserialize(value, attr, data, **kwargs).split(","))
        except ValueError:
            raise ValidationError("Write the bbox as minLon,minLat,maxLon,maxLat.") from None
        if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
            raise ValidationError("The bbox corners are out of order or out of range.")
        return x0, y0, x1, y1


class StreetsQuery(StrictSchema):
    bbox = Bbox(load_default=None, metadata={"example": "126.90,37.46,126.93,37.48"})
    district = fields.String(load_default=None, validate=DISTRICT_CODE)
    limit = fields.Integer(load_default=20000, validate=validate.Range(1, 50000))


class FacilityLayerQuery(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(FACILITY_KINDS))
    district = fields.String(load_default=None, validate=DISTRICT_CODE,
                             metadata={"description": "Defaults to the operator's own district"})


class HeartbeatSchema(StrictSchema):
    # A socket's id as Socket.IO makes them (20 URL-safe characters), never a named room: the echo is emitted to
    # the room named by it, and "district:11620" or "districts" would have sent it to every console there.
    sid = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{16,40}$",
                                                                 error="Not a socket id."))
    nonce = fields.String(required=True, validate=validate.Length(1, 64))


class DistrictOutline(StrictSchema):
    code = fields.String()
    name = fields.String()
    name_en = fields.String()
    boundary = fields.Dict(metadata={"description": "GeoJSON MultiPolygon"})
    bbox = fields.List(fields.Float(), metadata={"description": "[minLon, minLat, maxLon, maxLat]"})
    dongs = fields.Dict(metadata={"description": "GeoJSON FeatureCollection of the 행정동 (code, name)"})


class FacilityLayer(StrictSchema):
    kind = fields.String()
    district = fields.String()
    count = fields.Integer()
    cameras = fields.Integer(metadata={"description": "Sum of camera_count (cameras per pole for cctv)"})
    ids = fields.List(fields.String())
    coords = fields.List(fields.Float(), metadata={"description": "Flat [lon0, lat0, lon1, lat1, ...]"})


class StreetNetwork(StrictSchema):
    type = fields.String()
    features = fields.List(fields.Dict())
    truncated = fields.Boolean(metadata={"description": "More edges matched than `limit`: the first ones by id"})


class ConsoleConfig(StrictSchema):
    tile_url = fields.String(allow_none=True)
    district = fields.String(allow_none=True)
    heartbeat_s = fields.Float()
    reread_s = fields.Float()


@blp.get("/districts/<string:code>")
@blp.response(200, DistrictOutline)
@require("operator", "admin")
def district(code):
    """A district's boundary and its 행정동 as GeoJSON, with its bounding box."""
    return layers.district_outline(db.session, code=code), 200, CACHEABLE


@blp.get("/layers/streets")
@blp.arguments(StreetsQuery(), location="query")
@blp.response(200, StreetNetwork)
@require("operator", "admin")
def streets(query):
    """The walking street network as GeoJSON lines, optionally within a bbox and/or a district (404 if unknown)."""
    return layers.streets(db.session, **query), 200, CACHEABLE


@blp.get("/layers/facilities")
@blp.arguments(FacilityLayerQuery(), location="query")
@blp.response(200, FacilityLayer)
@require("operator", "admin")
def facilities(query):
    """Every facility of one kind in a district, in a compact form a canvas layer draws at once."""
    code = query["district"] or me().district_code
    if code is None:
        raise Invalid("Name the district.", errors=[{"field": "district", "message": "Required for admins."}])
    return layers.facilities_of_district(db.session, code=code, kind=query["kind"]), 200, CACHEABLE


@blp.get("/console/config")
@blp.response(200, ConsoleConfig)
@require("operator", "admin")
def console_config():
    """What the console page needs to start: the tile URL (if any) and the operator's district."""
    return {"tile_url": current_app.config["CONSOLE_TILE_URL"] or None, "district": me().district_code,
            "heartbeat_s": HEARTBEAT_S, "reread_s": REREAD_S}


@blp.post("/console/heartbeat")
@blp.arguments(HeartbeatSchema())
@blp.response(204)
@require("operator", "admin")
def heartbeat(body):
    """Echo a nonce to the page's own /control socket through the message queue (503 if Redis is away)."""
    if not layers.echo_heartbeat(heartbeat_emitter(), **body):
        raise Unavailable("The message queue is unreachable.")


def heartbeat_emitter() -> SocketEmitter:
    """This process's write-only emitter for heartbeats, made on first use."""
    ext = current_app.extensions
    if "console_emitter" not in ext:
        cfg = current_app.config
        ext["console_emitter"] = SocketEmitter(cfg.get("SOCKETIO_MESSAGE_QUEUE", cfg["REDIS_URL"]),
                                               channel=cfg["SOCKETIO_CHANNEL"], timeout_s=1.0)
    return ext["console_emitter"]

