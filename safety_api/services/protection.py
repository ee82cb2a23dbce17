"""Protected persons (with the trail of who set up, changed or ended each protection) and emergency-bell devices."""
import hashlib
import secrets

from geoalchemy2 import WKTElement
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from safety_api.clock import utcnow
from safety_api.errors import Conflict, Invalid, NotFound, Unauthorized
from safety_api.models import BellDevice, ProtectedPerson, ProtectionEvent, User
from safety_api.policy import check_change_protection, check_read_protection
from safety_api.services.incident_views import point_of
from safety_api.services.sos_raise import agency_contacts

KEY_PREFIX = "bell_"
# An update's field left out of the request: it keeps its value (a new protection: no contacts, no note).
UNCHANGED = object()


def protect(session, *, actor: User, user_id, agency: str, case_reference: str, contact_phones=UNCHANGED,
            note=UNCHANGED) -> dict:
    """Mark a citizen as under protection (or update it); their SOS gets priority and the agency is told.

    An update changes what it is given: the contact phones and the note it leaves out stay as they are (an
    operator correcting the case reference must not empty the list of officers the victim's SOS reaches);
    [] and None clear them. Returns the protection as staff see it (`view`), read before the commit: a
    removal waiting on the person's row goes ahead at the commit, and the answer shows what this wrote."""
    # The person's row locked first: two operators setting up the same protection at once take turns, and the
    # second finds the first's record (and needs the right to change it) instead of colliding on its key.
    person = _lock_person(session, user_id)
    if person is None or person.role != "citizen":
        session.rollback()
        raise NotFound("No such citizen.")
    record = session.get(ProtectedPerson, person.id, populate_existing=True)
    before = None
    if record is None:
        record = ProtectedPerson(user_id=person.id, created_by=actor.id, district_code=actor.district_code,
                                 contact_phones=[], note=None)
    else:
        check_change_protection(actor, record)
        before = _said(record)
    contact_phones = record.contact_phones if contact_phones is UNCHANGED else contact_phones
    if record.contact_phones != contact_phones:  # newly set phones reach the accounts that hold them now
        record.contacts_set_at = func.now()
    record.agency, record.case_reference, record.contact_phones = agency, case_reference, contact_phones
    if note is not UNCHANGED:
        record.note = note
    session.add(record)
    _record_event(session, person.id, actor, before=before, after=_said(record))
    session.flush()
    answer = view(session, record)
    session.commit()
    return answer


def read(session, *, actor: User, user_id) -> dict:
    """A citizen's protection with its history, for the staff who may change it (`policy.check_read_protection`).
    Not logged as a location read: the record holds no position (the access log is of who read whose
    position)."""
    record = session.get(ProtectedPerson, user_id)
    check_read_protection(actor, record)
    return {**view(session, record), "history": history(session, user_id)}


def history(session, user_id) -> list[ProtectionEvent]:
    """Every protection event of the person, newest first: this protection's and those ended before it."""
    return list(session.scalars(select(ProtectionEvent).where(ProtectionEvent.user_id == user_id)
                                .order_by(ProtectionEvent.id.desc())))


def view(session, record: ProtectedPerson) -> dict:
    """A protection as the staff who may change it see it."""
    return {"user_id": str(record.user_id), "agency": record.agency, "case_reference": record.case_reference,
            "contact_phones": record.contact_phones, "note": record.note,
            "reached_contacts": reached_contacts(session, record), "district": record.district_code,
            "created_at": record.created_at}


def reached_contacts(session, record: ProtectedPerson) -> list[str]:
    """Which of a protection's contact phones reach an account, for the staff who set them to check with the
    agency (a phone with no account, or with one made after the list was set, reaches no one)."""
    return sorted(session.scalars(select(User.phone).where(User.id.in_(agency_contacts(record.user_id)))))


def unprotect(session, *, actor: User, user_id):
    """End protection (admins, or operators of the district that set it up)."""
    # The person's row locked as `protect` locks it: an update that read the record waits until it is written
    # (then this ends the updated protection) rather than find it deleted under it and update no row.
    _lock_person(session, user_id)
    record = session.get(ProtectedPerson, user_id, populate_existing=True)
    if record is None:
        session.rollback()
        raise NotFound("This person is not under protection.")
    check_change_protection(actor, record)
    _record_event(session, record.user_id, actor, before=_said(record), after=None)
    session.delete(record)
    session.commit()


def _said(record: ProtectedPerson) -> dict:
    """What a protection says, field by field, as its trail records it."""
    return {"agency": record.agency, "case_reference": record.case_reference,
            "contact_phones": list(record.contact_phones), "note": record.note, "district": record.district_code}


def _record_event(session, user_id, actor: User, *, before: dict | None, after: dict | None):
    """Add to the person's protection trail, in the caller's transaction: `created` (no `before`), `ended` (no
    `after`) or `changed`, with {field: {old, new}} of the fields that differ (every field when created or
    ended: what the protection said is kept after its record is gone). An update that changes nothing adds
    nothing."""
    old, new = before or dict.fromkeys(after), after or dict.fromkeys(before)
    changed = {field: {"old": old[field], "new": new[field]} for field in new
               if before is None or after is None or old[field] != new[field]}
    if not changed:
        return
    kind = "created" if before is None else "ended" if after is None else "changed"
    session.add(ProtectionEvent(user_id=user_id, kind=kind, actor_id=actor.id, data=changed))


def _lock_person(session, user_id) -> User | None:
    """The person's row, locked for the change of their protection (FOR NO KEY UPDATE: their sign-ins and
    devices, which reference the row, go on)."""
    return session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True))


def create_bell_device(session, *, name: str, lat: float, lon: float, owner_phone: str | None) -> tuple:
    """Register a bell; returns (device, api_key). The key is shown once and stored only as a hash."""
    owner = None
    if owner_phone:
        owner = session.scalar(select(User).where(User.phone == owner_phone))
        if owner is None:
            raise Invalid("No user with this phone.", errors=[{"field": "owner_phone", "message": "Unknown."}])
        # The bell raises its alarm as its owner's (their guardians and protecting agency are told, it joins
        # their earlier incidents): the owner is the person it protects, never a staff account.
        if owner.role != "citizen":
            raise Invalid("A bell's owner must be a citizen; this phone is a staff account's.",
                          errors=[{"field": "owner_phone", "message": "Not a citizen."}])
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    device = BellDevice(name=name, key_hash=_digest(key), key_prefix=key[:12],
                        location=WKTElement(f"POINT({lon} {lat})", srid=4326), owner_id=owner.id if owner else None)
    session.add(device)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("Key collision; try again.") from None
    return device, key


def list_bell_devices(session, *, revoked: bool | None = None) -> list[dict]:
    """Every bell (or the revoked ones, or the others), newest first, with its owner: how admins find a lost or
    abused bell (operators see its name on its alarms) to revoke its key. The key's prefix, never its hash."""
    query = (select(BellDevice, User.name).outerjoin(User, User.id == BellDevice.owner_id)
             .order_by(BellDevice.created_at.desc(), BellDevice.id))
    if revoked is not None:
        query = query.where(BellDevice.revoked_at.is_not(None) if revoked else BellDevice.revoked_at.is_(None))
    return [{"id": str(device.id), "name": device.name, "key_prefix": device.key_prefix,
             "owner": {"id": str(device.owner_id), "name": owner_name} if device.owner_id else None,
             "location": {"type": "Point", "coordinates": list(point_of(device.location))},
             "created_at": device.created_at, "revoked_at": device.revoked_at}
            for device, owner_name in session.execute(query)]


def revoke_bell_device(session, *, device_id):
    """Revoke a bell's key; it can no longer raise SOS."""
    device = session.get(BellDevice, device_id)
    if device is None:
        raise NotFound("No such bell device.")
    device.revoked_at = device.revoked_at or utcnow()
    session.commit()


def authenticate_bell(session, api_key: str | None) -> BellDevice:
    """The device holding this key, unless unknown or revoked."""
    if not api_key:
        raise Unauthorized("Send the device key in the X-Device-Key header.")
    # sha256 of a 256-bit random key: an index lookup, and no secret to brute-force from the hash.
    device = session.scalar(select(BellDevice).where(BellDevice.key_hash == _digest(api_key)))
    if device is None or device.revoked_at is not None:
        raise Unauthorized("Unknown or revoked device key.")
    return device


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
