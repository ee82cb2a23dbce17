"""SOS incidents, their audit trail, push deliveries, location fixes, protected persons (and their audit trail)
and bell devices."""
import uuid

from geoalchemy2 import Geography
from sqlalchemy.dialects.postgresql import JSONB, UUID

from safety_api.extensions import db

TRIGGERS = ("button", "shake", "voice", "walk_escalation", "device")
STATUSES = ("open", "acknowledged", "dispatched", "resolved", "cancelled")
PRIORITIES = ("normal", "high", "critical")
PRIORITY_RANK = {"critical": 0, "high": 1, "normal": 2}


class Incident(db.Model):
    __tablename__ = "incidents"
    __table_args__ = (
        db.CheckConstraint(f"trigger IN {TRIGGERS}", name="trigger"),
        db.CheckConstraint(f"status IN {STATUSES}", name="status"),
        db.CheckConstraint(f"priority IN {PRIORITIES}", name="priority"),
        # A phone retrying with the same Idempotency-Key gets the same incident back, whenever it retries.
        db.Index("uq_incidents_caller_key", "caller_id", "idempotency_key", unique=True,
                 postgresql_where=db.text("bell_device_id IS NULL")),
        # A bell's key is the bell's own (its owner's other bells and phone keep theirs), and only while the
        # incident is open as its owner sees it: a bell whose press counter restarts raises a new alarm, never
        # an old closed one, and after a duress PIN exactly as after a cancel.
        db.Index("uq_incidents_bell_key", "bell_device_id", "idempotency_key", unique=True,
                 postgresql_where=db.text("bell_device_id IS NOT NULL AND caller_closed_at IS NULL")),
        db.Index("ix_incidents_district_status", "district_code", "status"),
        # A walk's view and every fix group of an escalated walk look up the walk's incident.
        db.Index("ix_incidents_walk_id", "walk_id", postgresql_where=db.text("walk_id IS NOT NULL")),
    )

    id = db.Column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    caller_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    bell_device_id = db.Column(UUID(as_uuid=True), db.ForeignKey("bell_devices.id", ondelete="SET NULL"))
    walk_id = db.Column(UUID(as_uuid=True))
    idempotency_key = db.Column(db.String(128))
    trigger = db.Column(db.String(16), nullable=False)
    status = db.Column(db.String(16), nullable=False, server_default="open")
    # What the caller is shown: after a duress PIN it says "cancelled" while the incident stays open.
    caller_status = db.Column(db.String(16), nullable=False, server_default="open")
    duress = db.Column(db.Boolean, nullable=False, server_default="false")
    priority = db.Column(db.String(8), nullable=False, server_default="normal")
    district_code = db.Column(db.String(5), db.ForeignKey("districts.code"))  # NULL: the central centre
    location = db.Column(Geography("POINT", srid=4326, spatial_index=True), nullable=False)
    accuracy_m = db.Column(db.Float)
    nearest_cctvs = db.Column(JSONB, nullable=False, server_default="[]")
    last_fix = db.Column(JSONB)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    # When the caller's view closed (their cancel or duress PIN, or the resolution): what the phone shows is
    # frozen at that moment, so nothing that happens after a duress PIN can reach it.
    caller_closed_at = db.Column(db.DateTime(timezone=True))
    acknowledged_by = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="SET NULL"))
    acknowledged_at = db.Column(db.DateTime(timezone=True))
    escalated_at = db.Column(db.DateTime(timezone=True))
    dispatched_agency = db.Column(db.Text)
    outcome = db.Column(db.String(24))
    closed_at = db.Column(db.DateTime(timezone=True))
    # One more at every change recorded in the audit trail (services.incidents.add_event; the first event,
    # written with the incident, is 1): viewers order what they hear by it, never by the status, which a
    # duress PIN or a release moves back to open.
    revision = db.Column(db.Integer, nullable=False, server_default="1")
    # The bell that raised it, for the operator view's `bell`. Loaded when read (by the identity map when the
    # request already holds it); a list of incidents joins it (`incidents.list_for_operator`).
    bell_device = db.relationship("BellDevice", lazy="select")


class IncidentEvent(db.Model):
    """The audit trail: every change to an incident, who made it and when."""

    __tablename__ = "incident_events"

    id = db.Column(db.BigInteger, primary_key=True)
    incident_id = db.Column(UUID(as_uuid=True), db.ForeignKey("incidents.id", ondelete="CASCADE"),
                            nullable=False, index=True)
    kind = db.Column(db.String(24), nullable=False)
    actor_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="SET NULL"))
    data = db.Column(JSONB, nullable=False, server_default="{}")
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


class Delivery(db.Model):
    """One push to one device for one reason; its state is the receipt."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # withdrawn: nothing was sent, because before the send the device left its recipient (signed out, handed
        # on, dead), the recipient lost the right to it (services/audiences), or newer news superseded it
        db.CheckConstraint("status IN ('pending', 'sending', 'delivered', 'dead', 'failed', 'withdrawn')",
                           name="status"),
    )

    id = db.Column(db.BigInteger, primary_key=True)
    subject = db.Column(db.String(64), nullable=False, index=True)  # e.g. incident:<id>, walk:<id>
    reason = db.Column(db.String(32), nullable=False)
    recipient_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="SET NULL"))
    token = db.Column(db.Text, nullable=False)
    message = db.Column(JSONB, nullable=False)  # a notifications.PushMessage as a dict
    status = db.Column(db.String(12), nullable=False, server_default="pending")
    attempts = db.Column(db.Integer, nullable=False, server_default="0")
    provider_id = db.Column(db.Text)
    last_error = db.Column(db.Text)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    updated_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


class LocationFix(db.Model):
    """A position a phone reported, for an SOS, a walk or an escort; late fixes keep their place by `t`."""

    __tablename__ = "location_fixes"
    __table_args__ = (
        # One fix per sender, subject and moment: an escort's two scouts report one subject (the booking). The name
        # is the one the constraint had on (kind, subject, t), kept for the previous release's ON CONFLICT during
        # a rolling deploy (migration 0014); `user_id` last, so the index still reads a subject's fixes by time.
        db.UniqueConstraint("subject_kind", "subject_id", "t", "user_id", name="uq_location_fixes_subject_t"),
        db.CheckConstraint("subject_kind IN ('sos', 'walk', 'escort')", name="subject_kind"),
    )

    id = db.Column(db.BigInteger, primary_key=True)
    subject_kind = db.Column(db.String(8), nullable=False)
    subject_id = db.Column(UUID(as_uuid=True), nullable=False)
    user_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    lat = db.Column(db.Float, nullable=False)
    lon = db.Column(db.Float, nullable=False)
    accuracy_m = db.Column(db.Float)
    t = db.Column(db.DateTime(timezone=True), nullable=False)
    received_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    incident_id = db.Column(UUID(as_uuid=True))  # set when the fix is evidence of an incident: kept longer


class ProtectedPerson(db.Model):
    """A citizen under protection (e.g. a high-risk stalking victim) whose SOS gets priority."""

    __tablename__ = "protected_persons"

    user_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    agency = db.Column(db.Text, nullable=False)
    case_reference = db.Column(db.Text, nullable=False)
    contact_phones = db.Column(JSONB, nullable=False, server_default="[]")
    note = db.Column(db.Text)
    created_by = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="SET NULL"))
    # The district in charge: its setter's at the time (None: set up by an admin). Kept here, not read from the
    # setter, so that moving the setter to another district does not hand the protection over with them.
    district_code = db.Column(db.String(5), db.ForeignKey("districts.code"))
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    # When staff last set the contact phones: only accounts that existed then are reached through them (phones
    # are not verified at registration; an account made for an officer's number later could be anyone's).
    contacts_set_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


PROTECTION_EVENTS = ("created", "changed", "ended")


class ProtectionEvent(db.Model):
    """The audit trail of a person's protections: who set one up, changed or ended it, and the fields it changed
    ({field: {old, new}}). It outlives the protection: ending one deletes its record, not what it said."""

    __tablename__ = "protection_events"
    __table_args__ = (db.CheckConstraint(f"kind IN {PROTECTION_EVENTS}", name="kind"),)

    id = db.Column(db.BigInteger, primary_key=True)
    user_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                        index=True)  # the protected person
    kind = db.Column(db.String(16), nullable=False)
    actor_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="SET NULL"))
    data = db.Column(JSONB, nullable=False, server_default="{}")
    at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


class BellDevice(db.Model):
    """An emergency bell in a shop or a victim's home that raises SOS with its own API key."""

    __tablename__ = "bell_devices"

    id = db.Column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name = db.Column(db.Text, nullable=False)
    key_hash = db.Column(db.String(64), nullable=False, unique=True)  # sha256 of a 256-bit random key
    key_prefix = db.Column(db.String(12), nullable=False)
    location = db.Column(Geography("POINT", srid=4326), nullable=False)
    owner_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="SET NULL"))
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    revoked_at = db.Column(db.DateTime(timezone=True))
