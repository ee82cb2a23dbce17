"""Escort booking (안심귀가스카우트): meeting points, bookings, scout assignments and their events.

The two promises of the programme live in the database, not in Python:
- a booking has at most two scouts: `slot` is 1 or 2 and unique per booking;
- a scout is never in two bookings whose times overlap: an exclusion constraint (btree_gist) on
  (scout_id =, period &&) over the assignments still held. An assignment copies its booking's
  `period`, and a composite foreign key on (booking_id, period) keeps the copy equal to the original.
"""
import uuid

from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects.postgresql import JSONB, TSTZRANGE, UUID, ExcludeConstraint

from safety_api.extensions import db

KINDS = ("station", "bus_stop")
STATES = ("requested", "confirmed", "in_progress", "completed", "cancelled", "no_show")
OPEN_STATES = ("requested", "confirmed", "in_progress")
PAIR = 2  # scouts always walk in pairs


def _uuid():
    return uuid.uuid4()


class MeetingPoint(db.Model):
    """A bus stop or station where scouts meet a citizen; reference data managed by admins."""

    __tablename__ = "meeting_points"
    __table_args__ = (db.CheckConstraint(f"kind IN {KINDS}", name="kind"),)

    id = db.Column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    source_id = db.Column(db.Text, unique=True)  # "osm:node/357827813"; NULL for points admins add
    name = db.Column(db.Text, nullable=False)
    name_en = db.Column(db.Text)
    kind = db.Column(db.String(16), nullable=False)
    district_code = db.Column(db.String(5), db.ForeignKey("districts.code"), nullable=False, index=True)
    location = db.Column(Geography("POINT", srid=4326, spatial_index=True), nullable=False)
    active = db.Column(db.Boolean, nullable=False, server_default="true")
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


class EscortBooking(db.Model):
    """One escort: a citizen, a meeting point and time, a destination, and the walk between."""

    __tablename__ = "escort_bookings"
    __table_args__ = (
        db.CheckConstraint(f"status IN {STATES}", name="status"),
        db.CheckConstraint("ends_at > meet_at AND busy_until >= ends_at", name="times"),
        # The target of the assignments' composite foreign key.
        db.UniqueConstraint("id", "period", name="uq_escort_bookings_id_period"),
        # A double tap must not book the same citizen twice for the same evening.
        ExcludeConstraint(("citizen_id", "="), ("period", "&&"), using="gist",
                          where=db.text(f"status IN {OPEN_STATES}"), name="ex_escort_bookings_citizen_overlap"),
        db.Index("ix_escort_bookings_open", "district_code", "meet_at",
                 postgresql_where=db.text(f"status IN {OPEN_STATES}")),
        # A phone retrying a booking with the same Idempotency-Key gets the same booking back.
        db.Index("uq_escort_bookings_citizen_key", "citizen_id", "idempotency_key", unique=True,
                 postgresql_where=db.text("idempotency_key IS NOT NULL")),
    )

    id = db.Column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    citizen_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"),
                           nullable=False, index=True)
    district_code = db.Column(db.String(5), db.ForeignKey("districts.code"), nullable=False)
    meeting_point_id = db.Column(UUID(as_uuid=True), db.ForeignKey("meeting_points.id"), nullable=False)
    meet_at = db.Column(db.DateTime(timezone=True), nullable=False)
    ends_at = db.Column(db.DateTime(timezone=True), nullable=False)  # meet_at + the expected walk
    busy_until = db.Column(db.DateTime(timezone=True), nullable=False)  # ends_at + the scouts' turnaround
    period = db.Column(TSTZRANGE, db.Computed("tstzrange(meet_at, busy_until, '[)')", persisted=True))
    destination = db.Column(Geography("POINT", srid=4326, spatial_index=False), nullable=False)
    route = db.Column(Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=False)
    route_distance_m = db.Column(db.Float, nullable=False)
    route_duration_s = db.Column(db.Float, nullable=False)
    route_source = db.Column(db.String(16), nullable=False)  # "engine" or "estimate"
    status = db.Column(db.String(16), nullable=False, server_default="requested")
    idempotency_key = db.Column(db.String(128))  # the citizen's, when the booking request carried one
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    started_at = db.Column(db.DateTime(timezone=True))
    finished_at = db.Column(db.DateTime(timezone=True))
    reminded_at = db.Column(db.DateTime(timezone=True))
    flagged_at = db.Column(db.DateTime(timezone=True))  # still unconfirmed shortly before meet_at

    meeting_point = db.relationship(MeetingPoint, lazy="joined", innerjoin=True)
    citizen = db.relationship("User")
    assignments = db.relationship("EscortAssignment", order_by="EscortAssignment.slot",
                                  back_populates="booking", passive_deletes=True)


class EscortAssignment(db.Model):
    """A scout in one of a booking's two slots, holding the booking's period while not released."""

    __tablename__ = "escort_assignments"
    __table_args__ = (
        db.CheckConstraint(f"slot BETWEEN 1 AND {PAIR}", name="pair"),
        db.UniqueConstraint("booking_id", "slot", name="uq_escort_assignments_slot"),
        db.UniqueConstraint("booking_id", "scout_id", name="uq_escort_assignments_scout"),
        db.ForeignKeyConstraint(["booking_id", "period"], ["escort_bookings.id", "escort_bookings.period"],
                                ondelete="CASCADE", name="fk_escort_assignments_booking"),
        ExcludeConstraint(("scout_id", "="), ("period", "&&"), using="gist",
                          where=db.text("released_at IS NULL"), name="ex_escort_assignments_scout_busy"),
    )

    id = db.Column(db.BigInteger, primary_key=True)
    booking_id = db.Column(UUID(as_uuid=True), nullable=False)
    scout_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"),
                         nullable=False, index=True)
    slot = db.Column(db.SmallInteger, nullable=False)
    period = db.Column(TSTZRANGE, nullable=False)
    accepted_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    released_at = db.Column(db.DateTime(timezone=True))  # set when the booking is cancelled

    booking = db.relationship(EscortBooking, back_populates="assignments")
    scout = db.relationship("User", lazy="joined")


class EscortEvent(db.Model):
    """The audit trail of a booking: every change of state, who made it, when."""

    __tablename__ = "escort_events"

    id = db.Column(db.BigInteger, primary_key=True)
    booking_id = db.Column(UUID(as_uuid=True), db.ForeignKey("escort_bookings.id", ondelete="CASCADE"),
                           nullable=False, index=True)
    kind = db.Column(db.String(32), nullable=False)
    actor_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="SET NULL"))
    data = db.Column(JSONB, nullable=False, server_default="{}")
    at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
