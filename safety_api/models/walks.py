"""Walk-home monitoring (안심귀가 모니터링): walks, the guardians chosen for each, their alerts, and
the location access log that every third-party read of a position writes to.

A walk's monitor state lives on its row and changes only under `SELECT ... FOR UPDATE` of that row,
so the result never depends on which api process or worker handled a fix or a timer.
"""
import uuid

from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects.postgresql import JSONB, UUID

from safety_api.extensions import db
from safety_api.models.incidents import LocationFix

STATES = ("active", "arrived", "finished", "escalated")
PROFILES = ("safe", "shortest")
ALERT_KINDS = ("deviated", "stalled", "overdue", "signal_lost", "arrived")
# open: waiting for the walker's check-in; answered: checked in; escalated: became an SOS;
# closed: needs no answer (arrived; signal_lost once the phone was heard again) or the walk ended before the
# window did.
ALERT_STATES = ("open", "answered", "escalated", "closed")


class Walk(db.Model):
    """One monitored walk home along a planned route."""

    __tablename__ = "walks"
    __table_args__ = (
        db.CheckConstraint(f"status IN {STATES}", name="status"),
        db.CheckConstraint(f"profile IN {PROFILES}", name="profile"),
        # One walk home at a time: a double tap on "start" must not start two.
        db.Index("uq_walks_walker_active", "walker_id", unique=True,
                 postgresql_where=db.text("status = 'active'")),
        # The hourly retention purge looks for walks ended long ago (services/retention.py).
        db.Index("ix_walks_ended", "ended_at", postgresql_where=db.text("status IN ('arrived', 'finished')")),
    )

    id = db.Column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    walker_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"),
                          nullable=False, index=True)
    status = db.Column(db.String(12), nullable=False, server_default="active")
    profile = db.Column(db.String(8), nullable=False)
    origin = db.Column(Geography("POINT", srid=4326, spatial_index=False), nullable=False)
    destination = db.Column(Geography("POINT", srid=4326, spatial_index=False), nullable=False)
    route = db.Column(Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=False)
    route_properties = db.Column(JSONB, nullable=False)  # the route engine's figures, as API.md names them
    started_at = db.Column(db.DateTime(timezone=True), nullable=False)
    expected_arrival = db.Column(db.DateTime(timezone=True), nullable=False)
    ended_at = db.Column(db.DateTime(timezone=True))
    escalated_at = db.Column(db.DateTime(timezone=True))
    # Thresholds in force for this walk, fixed at start: every process judges it by the same ones.
    settings = db.Column(JSONB, nullable=False)
    monitor_state = db.Column(JSONB, nullable=False)  # geo.track.MonitorState.to_dict()
    last_fix = db.Column(JSONB)
    # The clock-driven monitors run as one chain of jobs; only the job carrying timer_seq may act.
    timer_seq = db.Column(db.Integer, nullable=False, server_default="0")
    timer_due = db.Column(db.DateTime(timezone=True))
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


class WalkGuardian(db.Model):
    """An accepted guardian whom the walker chose to watch this walk."""

    __tablename__ = "walk_guardians"

    walk_id = db.Column(UUID(as_uuid=True), db.ForeignKey("walks.id", ondelete="CASCADE"), primary_key=True)
    guardian_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"),
                            primary_key=True, index=True)


class WalkAlert(db.Model):
    """Something a monitor detected about a walk, and what became of the prompt it raised."""

    __tablename__ = "walk_alerts"
    __table_args__ = (
        db.CheckConstraint(f"kind IN {ALERT_KINDS}", name="kind"),
        db.CheckConstraint(f"status IN {ALERT_STATES}", name="status"),
    )

    id = db.Column(db.BigInteger, primary_key=True)
    walk_id = db.Column(UUID(as_uuid=True), db.ForeignKey("walks.id", ondelete="CASCADE"),
                        nullable=False, index=True)
    kind = db.Column(db.String(12), nullable=False)
    status = db.Column(db.String(10), nullable=False)
    t = db.Column(db.DateTime(timezone=True), nullable=False)  # the walk time the alert is about
    raised_at = db.Column(db.DateTime(timezone=True), nullable=False)
    checkin_by = db.Column(db.DateTime(timezone=True))
    settled_at = db.Column(db.DateTime(timezone=True))
    detail = db.Column(JSONB, nullable=False, server_default="{}")


class LocationAccess(db.Model):
    """Who read whose position, when and why (위치정보 이용·제공사실 확인자료). Ids only, no foreign
    keys: the record must outlive the accounts it names."""

    __tablename__ = "location_access_log"
    __table_args__ = (db.Index("ix_location_access_log_subject_user_at", "subject_user_id", "at"),)

    id = db.Column(db.BigInteger, primary_key=True)
    viewer_id = db.Column(UUID(as_uuid=True), nullable=False)
    subject_user_id = db.Column(UUID(as_uuid=True), nullable=False)
    subject_kind = db.Column(db.String(8), nullable=False)
    subject_id = db.Column(UUID(as_uuid=True), nullable=False)
    purpose = db.Column(db.String(32), nullable=False)
    at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


# Retention purges fixes that belong to no incident, oldest first; declared here with the purge
# that needs it, on the shared location_fixes table.
db.Index("ix_location_fixes_retention", LocationFix.t, postgresql_where=LocationFix.incident_id.is_(None))
