"""Push-device registration."""
from flask_smorest import Blueprint
from marshmallow import fields, validate

from safety_api.api.schemas import StrictSchema
from safety_api.extensions import db
from safety_api.security import me, require, sign_in_of_request
from safety_api.services import devices

blp = Blueprint("devices", __name__, url_prefix="/api/v1/devices", description="Push devices")


# FCM and APNs tokens are about 160 characters; a unique index's btree entry holds at most ~2.7 KB, so a longer
# token would be refused by PostgreSQL rather than by us.
TOKEN_MAX_LENGTH = 1024


class DeviceSchema(StrictSchema):
    token = fields.String(required=True, validate=validate.Length(8, TOKEN_MAX_LENGTH))
    platform = fields.String(required=True, validate=validate.OneOf(["android", "ios", "web"]))


class DeviceOut(StrictSchema):
    id = fields.String()
    platform = fields.String()


@blp.post("")
@blp.arguments(DeviceSchema())
@blp.response(201, DeviceOut)
@blp.alt_response(200, schema=DeviceOut, description="The token was already registered")
@require()
def register(body):
    """Register this phone's push token (201 when new, 200 when known). Signing out of the sign-in that
    registered it last forgets it."""
    device, created = devices.register_device(db.session, user=me(), sign_in=sign_in_of_request(), **body)
    return device, 201 if created else 200
