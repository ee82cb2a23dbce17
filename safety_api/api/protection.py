"""Protected persons (operators, admins) and emergency-bell devices (admins)."""
from flask_smorest import Blueprint
from marshmallow import fields, validate

from safety_api.api.schemas import Latitude, Longitude, Phone, StrictSchema, Text, links
from safety_api.extensions import db
from safety_api.security import me, require
from safety_api.services import protection

blp = Blueprint("protection", __name__, url_prefix="/api/v1", description="Protected persons and bell devices")


# Left out of an update, contact_phones and note keep their values (a new protection: none); [] and null clear
# them. No load_default on purpose: the service tells a field left out from one sent empty.
_KEPT = "Left out of an update: kept as it is ([] or null clears it); of a new protection: none"


class ProtectSchema(StrictSchema):
    agency = Text(120, required=True)
    case_reference = Text(120, required=True)
    contact_phones = fields.List(Phone(), validate=validate.Length(max=10), metadata={
        "description": f"The agency's officers whose phones the person's SOS reaches. {_KEPT}"})
    note = fields.String(allow_none=True, validate=validate.Length(max=2000), metadata={"description": _KEPT})


class ProtectedOut(StrictSchema):
    user_id = fields.String()
    agency = fields.String()
    case_reference = fields.String()
    contact_phones = fields.List(fields.String())
    reached_contacts = fields.List(fields.String(), metadata={
        "description": "The contact phones that reach an account (held when the list was set), to check with the "
                       "agency; the others reach no one"})
    note = fields.String(allow_none=True)
    district = fields.String(allow_none=True, metadata={
        "description": "The district in charge (its operators change it); null: admins only"})
    created_at = fields.DateTime()


class ProtectionEventSchema(StrictSchema):
    kind = fields.String(metadata={"description": "created, changed or ended"})
    actor = fields.String(attribute="actor_id", allow_none=True, metadata={
        "description": "The operator's or admin's id (null: the account is gone)"})
    data = fields.Dict(metadata={
        "description": "{field: {old, new}} of agency, case_reference, contact_phones, note and district: the "
                       "fields changed; every field when created (old null) or ended (new null). `backfilled`: "
                       "set up before the trail existed, with the values it had then"})
    at = fields.DateTime()


class ProtectedDetail(ProtectedOut):
    history = fields.List(fields.Nested(ProtectionEventSchema), metadata={
        "description": "Newest first, the person's earlier protections' too"})


class BellIn(StrictSchema):
    name = Text(120, required=True)
    lat = Latitude(required=True)
    lon = Longitude(required=True)
    owner_phone = Phone(load_default=None, allow_none=True, metadata={
        "description": "The citizen the bell protects; its SOS is raised as theirs (422 for a staff account)"})


class BellOut(StrictSchema):
    id = fields.String()
    name = fields.String()
    api_key = fields.String(metadata={"description": "Shown once; store it in the device"})


class BellQuery(StrictSchema):
    revoked = fields.Boolean(load_default=None, metadata={
        "description": "true: the revoked bells only; false: those whose key still works; left out: all"})


class BellOwner(StrictSchema):
    id = fields.String()
    name = fields.String()


class BellDeviceSchema(StrictSchema):
    id = fields.String()
    name = fields.String()
    key_prefix = fields.String(metadata={"description": "The key's first 12 characters, to match a device's key"})
    owner = fields.Nested(BellOwner, allow_none=True, metadata={"description": "The citizen it protects, if any"})
    location = fields.Dict(metadata={"description": "Its registered place, a GeoJSON Point"})
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class BellList(StrictSchema):
    items = fields.List(fields.Nested(BellDeviceSchema), metadata={"description": "Newest first"})


@blp.put("/protected-persons/<uuid:user_id>")
@blp.arguments(ProtectSchema())
@blp.response(200, ProtectedOut)
@require("operator", "admin")
def protect(body, user_id):
    """Put a citizen under protection, or change it (admins, or operators of the district in charge): their SOS
    gets priority and the agency's contacts are alerted. An update keeps the contact phones and the note it
    leaves out."""
    return protection.protect(db.session, actor=me(), user_id=user_id, **body)


@blp.get("/protected-persons/<uuid:user_id>")
@blp.response(200, ProtectedDetail)
@blp.alt_response(404, response="NOT_FOUND")
@require("operator", "admin")
def show_protection(user_id):
    """A citizen's protection, which contact phones reach someone, and who set it up, changed or ended it (those
    who may change it: admins, or operators of the district in charge; 404 when the person is not under
    protection)."""
    return protection.read(db.session, actor=me(), user_id=user_id)


@blp.delete("/protected-persons/<uuid:user_id>")
@blp.response(204)
@require("operator", "admin")
def unprotect(user_id):
    """End protection (admins, or operators of the district that set it up)."""
    protection.unprotect(db.session, actor=me(), user_id=user_id)


@blp.post("/admin/bell-devices")
@blp.arguments(BellIn())
@blp.response(201, BellOut)
@blp.doc(**links(201, "/id", "device_id", "DELETE /api/v1/admin/bell-devices/{device_id}"))
@require("admin")
def create_bell(body):
    """Register an emergency bell and get its API key (shown only now)."""
    device, key = protection.create_bell_device(db.session, **body)
    return {"id": device.id, "name": device.name, "api_key": key}


@blp.get("/admin/bell-devices")
@blp.arguments(BellQuery(), location="query")
@blp.response(200, BellList)
@blp.doc(**links(200, "/items/0/id", "device_id", "DELETE /api/v1/admin/bell-devices/{device_id}"))
@require("admin")
def list_bells(query):
    """The bells, newest first, with their owners and whether revoked: find a lost or abused bell (operators see
    its name on its alarms) and revoke its key."""
    return {"items": protection.list_bell_devices(db.session, **query)}


@blp.delete("/admin/bell-devices/<uuid:device_id>")
@blp.response(204)
@require("admin")
def revoke_bell(device_id):
    """Revoke a bell's key."""
    protection.revoke_bell_device(db.session, device_id=device_id)
