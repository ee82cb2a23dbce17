"""The signed-in user."""
from flask import current_app
from flask_smorest import Blueprint
from marshmallow import fields, validate

from safety_api.api.schemas import Password, StrictSchema, UserSchema
from safety_api.extensions import db
from safety_api.ratelimit import client_address, limiter, password_limits
from safety_api.security import me, require, sign_in_of_request
from safety_api.services import accounts, privacy, staff

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="The signed-in user")

Pin = lambda **kw: fields.String(validate=validate.Regexp(r"^[0-9]{4,8}$", error="4 to 8 digits."), **kw)  # noqa: E731


class PinsSchema(StrictSchema):
    cancel_pin = Pin(required=True)
    duress_pin = Pin(required=True)
    password = fields.String(required=True)  # judged, not validated: as at login


@blp.get("")
@blp.response(200, UserSchema)
@require()
def show():
    """Who am I: id, phone, name, role and district."""
    return me()


class DutySchema(StrictSchema):
    on_duty = fields.Boolean(required=True)


@blp.put("/duty")
@blp.arguments(DutySchema())
@blp.response(200, DutySchema)
@require("operator", "scout")
def set_duty(body):
    """Start or end my shift (operators get SOS pushes, scouts get escort offers, only on duty)."""
    return {"on_duty": staff.set_duty(db.session, user=me(), on_duty=body["on_duty"],
                                      escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"])}


@blp.put("/pins")
@blp.arguments(PinsSchema())
@blp.response(204)
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@require()
def set_pins(body):
    """Set the cancel PIN and the duress PIN (stored hashed), confirmed with my password (401 when wrong)."""
    accounts.change_pins(db.session, limiter(), password_limits(), user=me(), address=client_address(), **body)


class PasswordChangeSchema(StrictSchema):
    password = fields.String(required=True)  # the current one: judged, not validated, as at login
    new_password = Password(required=True)


@blp.put("/password")
@blp.arguments(PasswordChangeSchema())
@blp.response(204)
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@require()
def change_password(body):
    """Change my password, confirmed with the current one (401 when wrong); every other sign-in of mine ends,
    as at logout-all, and this one goes on."""
    accounts.change_password(db.session, limiter(), password_limits(), user=me(), address=client_address(),
                             sign_in=sign_in_of_request(), **body)


class DeleteSchema(StrictSchema):
    password = fields.String(required=True)


# One list of rows per section of the export, named where the sections are (privacy.EXPORT_QUERIES).
ExportSchema = StrictSchema.from_dict({section: fields.List(fields.Dict()) for section in privacy.EXPORT_QUERIES},
                                      name="Export")


@blp.get("/export")
@blp.response(200, ExportSchema)
@require()
def export():
    """Everything held about me: account, devices, links, incidents, walks and their alerts, bookings, escorts,
    bells, positions, who read them."""
    return privacy.export(db.session, user=me())


@blp.delete("")
@blp.arguments(DeleteSchema())
@blp.response(204)
@blp.alt_response(409, response="CONFLICT")
@require()
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def delete(body):
    """Delete my account and data; incident records are kept without my details, as the law requires (409 for
    staff, whose accounts an admin suspends; 429 past the password attempt limits, as for login)."""
    privacy.delete_account(db.session, limiter(), password_limits(), user=me(), password=body["password"],
                           address=client_address())
