"""Escort booking: meeting points, bookings, scouts.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OPEN = "status IN ('requested', 'confirmed', 'in_progress')"
STATES = "status IN ('requested', 'confirmed', 'in_progress', 'completed', 'cancelled', 'no_show')"


def _now():
    return sa.text("now()")


def upgrade():
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")  # already made by 0001; kept for a lone upgrade
    op.create_table(
        "meeting_points",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("district_code", sa.String(length=5), nullable=False),
        sa.Column("location", Geography(geometry_type="POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("kind IN ('station', 'bus_stop')", name=op.f("ck_meeting_points_kind")),
        sa.ForeignKeyConstraint(["district_code"], ["districts.code"],
                                name=op.f("fk_meeting_points_district_code_districts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meeting_points")),
        sa.UniqueConstraint("source_id", name=op.f("uq_meeting_points_source_id")),
    )
    op.create_index("idx_meeting_points_location", "meeting_points", ["location"], postgresql_using="gist")
    op.create_index(op.f("ix_meeting_points_district_code"), "meeting_points", ["district_code"])

    op.create_table(
        "escort_bookings",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("citizen_id", sa.UUID(), nullable=False),
        sa.Column("district_code", sa.String(length=5), nullable=False),
        sa.Column("meeting_point_id", sa.UUID(), nullable=False),
        sa.Column("meet_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("busy_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period", postgresql.TSTZRANGE(),
                  sa.Computed("tstzrange(meet_at, busy_until, '[)')", persisted=True), nullable=True),
        sa.Column("destination", Geography(geometry_type="POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("route", Geometry(geometry_type="LINESTRING", srid=4326, spatial_index=False), nullable=False),
        sa.Column("route_distance_m", sa.Float(), nullable=False),
        sa.Column("route_duration_s", sa.Float(), nullable=False),
        sa.Column("route_source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="requested", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(STATES, name=op.f("ck_escort_bookings_status")),
        sa.CheckConstraint("ends_at > meet_at AND busy_until >= ends_at", name=op.f("ck_escort_bookings_times")),
        sa.ForeignKeyConstraint(["citizen_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_escort_bookings_citizen_id_users")),
        sa.ForeignKeyConstraint(["district_code"], ["districts.code"],
                                name=op.f("fk_escort_bookings_district_code_districts")),
        sa.ForeignKeyConstraint(["meeting_point_id"], ["meeting_points.id"],
                                name=op.f("fk_escort_bookings_meeting_point_id_meeting_points")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escort_bookings")),
        sa.UniqueConstraint("id", "period", name="uq_escort_bookings_id_period"),
        postgresql.ExcludeConstraint(("citizen_id", "="), ("period", "&&"), using="gist", where=sa.text(OPEN),
                                     name="ex_escort_bookings_citizen_overlap"),
    )
    op.create_index(op.f("ix_escort_bookings_citizen_id"), "escort_bookings", ["citizen_id"])
    op.create_index("ix_escort_bookings_open", "escort_bookings", ["district_code", "meet_at"],
                    postgresql_where=sa.text(OPEN))

    op.create_table(
        "escort_assignments",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("booking_id", sa.UUID(), nullable=False),
        sa.Column("scout_id", sa.UUID(), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("period", postgresql.TSTZRANGE(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        # At most two scouts per booking: slot 1 or 2, each taken once.
        sa.CheckConstraint("slot BETWEEN 1 AND 2", name=op.f("ck_escort_assignments_pair")),
        sa.UniqueConstraint("booking_id", "slot", name="uq_escort_assignments_slot"),
        sa.UniqueConstraint("booking_id", "scout_id", name="uq_escort_assignments_scout"),
        # The copied period always equals the booking's.
        sa.ForeignKeyConstraint(["booking_id", "period"], ["escort_bookings.id", "escort_bookings.period"],
                                ondelete="CASCADE", name="fk_escort_assignments_booking"),
        sa.ForeignKeyConstraint(["scout_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_escort_assignments_scout_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escort_assignments")),
        # A scout is never in two held assignments whose periods overlap.
        postgresql.ExcludeConstraint(("scout_id", "="), ("period", "&&"), using="gist",
                                     where=sa.text("released_at IS NULL"), name="ex_escort_assignments_scout_busy"),
    )
    op.create_index(op.f("ix_escort_assignments_scout_id"), "escort_assignments", ["scout_id"])

    op.create_table(
        "escort_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("booking_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.UUID(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(["booking_id"], ["escort_bookings.id"], ondelete="CASCADE",
                                name=op.f("fk_escort_events_booking_id_escort_bookings")),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_escort_events_actor_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escort_events")),
    )
    op.create_index(op.f("ix_escort_events_booking_id"), "escort_events", ["booking_id"])


def downgrade():
    op.drop_table("escort_events")
    op.drop_table("escort_assignments")
    op.drop_table("escort_bookings")
    op.drop_table("meeting_points")
