"""Administration: staff accounts (create, find, read with their history, suspend, reinstate, move, new password)."""
from flask import current_app
from flask_smorest import Blueprint
from marshmallow import fields, validate

from safety_api.api.schemas import (
    District,
    Name,
    Password,
    Phone,
    Reason,
    StrictSchema,
    UserEnvelope,
    UserSchema,
    links,
)
from safety_api.extensions import db
from safety_api.models.accounts import ROLES, STAFF_ROLES
from safety_api.security import me, require
from safety_api.services import accounts, staff

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Administration (admins only)")


class NewUserSchema(StrictSchema):
    phone = Phone(required=True)
    password = Password(required=True)
    name = Name(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    district = District(load_default=None, allow_none=True)


class StaffSchema(UserSchema):
    on_duty = fields.Boolean()
    suspended_at = fields.DateTime(allow_none=True, metadata={"description": "Set while the account is suspended"})
    created_at = fields.DateTime()


class StaffEnvelope(StrictSchema):
    user = fields.Nested(StaffSchema)


class AccountEventSchema(StrictSchema):
    kind = fields.String(metadata={"description": "created, suspended, reinstated, moved, password_set (by an admin) "
                                                  "or password_changed (by the person)"})
    actor = fields.String(attribute="actor_id", allow_none=True, metadata={"description": "The admin's id"})
    data = fields.Dict(metadata={"description": "reason; for a move, from and to"})
    at = fields.DateTime()


class StaffDetail(StaffEnvelope):
    history = fields.List(fields.Nested(AccountEventSchema), metadata={"description": "Newest first"})


class StaffList(StrictSchema):
    items = fields.List(fields.Nested(StaffSchema))


class StaffQuery(StrictSchema):
    role = fields.String(load_default=None, validate=validate.OneOf(STAFF_ROLES))
    district = District(load_default=None)
    suspended = fields.Boolean(load_default=None)


class ReasonSchema(StrictSchema):
    reason = Reason(required=True)


class NewPasswordSchema(StrictSchema):
    password = Password(required=True)
    reason = Reason(required=True)


class MoveSchema(StrictSchema):
    district = District(required=True)
    reason = Reason(required=True)


_STAFF_LINKS = links(201, "/user/id", "user_id", "GET /api/v1/admin/users/{user_id}",
                     "POST /api/v1/admin/users/{user_id}/suspend", "POST /api/v1/admin/users/{user_id}/reinstate",
                     "PATCH /api/v1/admin/users/{user_id}", "PUT /api/v1/admin/users/{user_id}/password")


@blp.post("/users")
@blp.arguments(NewUserSchema())
@blp.response(201, UserEnvelope)
@blp.doc(**_STAFF_LINKS)
@require("admin")
@blp.alt_response(409, response="CONFLICT")
def create_user(body):
    """Create an operator, scout, admin or citizen account."""
    return {"user": accounts.create_staff(db.session, actor=me(), **body)}


@blp.get("/users")
@blp.arguments(StaffQuery(), location="query")
@blp.response(200, StaffList)
@require("admin")
def list_users(query):
    """Staff accounts (operators, scouts, admins; never citizens), by district and name."""
    return {"items": staff.list_staff(db.session, **query)}


@blp.get("/users/<uuid:user_id>")
@blp.response(200, StaffDetail)
@blp.alt_response(404, response="NOT_FOUND")
@require("admin")
def show_user(user_id):
    """A staff account and what admins did to it."""
    person, history = staff.staff_member(db.session, user_id)
    return {"user": person, "history": history}


@blp.post("/users/<uuid:user_id>/suspend")
@blp.arguments(ReasonSchema())
@blp.response(200, StaffEnvelope)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require("admin")
def suspend_user(body, user_id):
    """Suspend a staff account: every sign-in, socket and push device of it ends now, its shift ends, a scout
    leaves the escorts not yet under way, and logging in is refused until it is reinstated."""
    return {"user": staff.suspend(db.session, admin=me(), user_id=user_id, reason=body["reason"],
                                  escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"])}


@blp.post("/users/<uuid:user_id>/reinstate")
@blp.arguments(ReasonSchema())
@blp.response(200, StaffEnvelope)
@blp.alt_response(404, response="NOT_FOUND")
@require("admin")
def reinstate_user(body, user_id):
    """Lift a suspension: the person may log in again."""
    return {"user": staff.reinstate(db.session, admin=me(), user_id=user_id, reason=body["reason"])}


@blp.patch("/users/<uuid:user_id>")
@blp.arguments(MoveSchema())
@blp.response(200, StaffEnvelope)
@blp.alt_response(404, response="NOT_FOUND")
@require("admin")
def move_user(body, user_id):
    """Move an operator or a scout to another district: their shift ends, a scout leaves the old district's
    escorts not yet under way, and their sockets reconnect to the new district's room."""
    return {"user": staff.move(db.session, admin=me(), user_id=user_id,
                               escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"], **body)}


@blp.put("/users/<uuid:user_id>/password")
@blp.arguments(NewPasswordSchema())
@blp.response(200, StaffEnvelope)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require("admin")
def set_password(body, user_id):
    """Set a staff member's password (forgotten, or thought leaked; 409 for one's own): every sign-in of theirs
    ends, their shift ends and their work is handed back as at a suspension; they log in with the new one."""
    return {"user": staff.set_password(db.session, admin=me(), user_id=user_id,
                                       escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"], **body)}
