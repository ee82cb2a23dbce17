"""Administration: staff accounts."""
from flask_smorest import Blueprint
from marshmallow import fields, validate

from safety_api.api.schemas import (
    District,
    Name,
    Password,
    Phone,
    StrictSchema,
    UserEnvelope,
)
from safety_api.extensions import db
from safety_api.models.accounts import ROLES
from safety_api.security import require
from safety_api.services import accounts

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Administration (admins only)")


class NewUserSchema(StrictSchema):
    phone = Phone(required=True)
    password = Password(required=True)
    name = Name(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    district = District(load_default=None, allow_none=True)


@blp.post("/users")
@blp.arguments(NewUserSchema())
@blp.response(201, UserEnvelope)
@require("admin")
def create_user(body):
    """Create an operator, scout, admin or citizen account."""
    return {"user": accounts.create_staff(db.session, **body)}
