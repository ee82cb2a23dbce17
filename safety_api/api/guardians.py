"""Guardian links (안심친구)."""
from flask import current_app
from flask_smorest import Blueprint
from marshmallow import fields

from safety_api.api.schemas import Phone, StrictSchema
from safety_api.extensions import db
from safety_api.policy import sees_guardian_identity
from safety_api.ratelimit import limiter
from safety_api.security import me, require
from safety_api.services import guardians

blp = Blueprint("guardians", __name__, url_prefix="/api/v1/guardians", description="Guardian links")


class InviteSchema(StrictSchema):
    phone = Phone(required=True)


class LinkSchema(StrictSchema):
    id = fields.String()
    status = fields.String()


class PersonLinkSchema(StrictSchema):
    """The other side of a link; to the inviter, a pending invitee is only the phone number typed."""

    id = fields.String()
    status = fields.String()
    user_id = fields.String(metadata={"description": "Absent for the inviter while the link is pending"})
    name = fields.String(metadata={"description": "Absent for the inviter while the link is pending"})
    phone = fields.String()


class LinksSchema(StrictSchema):
    guarding = fields.List(fields.Nested(PersonLinkSchema))
    guarded_by = fields.List(fields.Nested(PersonLinkSchema))


@blp.post("")
@blp.arguments(InviteSchema())
@blp.response(201, LinkSchema)
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@require()
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
def invite(body):
    """Invite someone, by phone, to be my guardian; 404 when the number has no account; 429 past the limit."""
    # Every invite counts, not only misses: each one tells whether a number has an account, and each one
    # reaches the invited person's phone.
    limiter().hit(current_app.config["GUARDIAN_INVITE_LIMIT"], "guardian-invite", str(me().id))
    return guardians.invite(db.session, protected=me(), guardian_phone=body["phone"])


@blp.post("/<uuid:link_id>/accept")
@blp.response(200, LinkSchema)
@require()
@blp.alt_response(404, response="NOT_FOUND")
def accept(link_id):
    """Accept an invitation to be someone's guardian."""
    return guardians.accept(db.session, guardian=me(), link_id=link_id)


@blp.delete("/<uuid:link_id>")
@blp.response(204)
@require()
def remove(link_id):
    """End a guardian link (either side)."""
    guardians.remove(db.session, user=me(), link_id=link_id)


@blp.get("")
@blp.response(200, LinksSchema)
@require()
def list_links():
    """Whom I guard and who guards me."""
    links = guardians.list_links(db.session, user=me())
    return {side: [_person(link, user, viewer=me()) for link, user in rows] for side, rows in links.items()}


def _person(link, user, *, viewer) -> dict:
    if not sees_guardian_identity(viewer, link):
        return {"id": link.id, "status": link.status, "phone": user.phone}
    return {"id": link.id, "status": link.status, "user_id": user.id, "name": user.name, "phone": user.phone}
