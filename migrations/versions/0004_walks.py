"""Walk-home monitoring: walks, fixes, alerts, location access log.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _now():
    return sa.text("now()")


def upgrade():
    op.create_table(
        "walks",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("walker_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="active", nullable=False),
        sa.Column("profile", sa.String(length=8), nullable=False),
        sa.Column("origin", Geography(geometry_type="POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("destination", Geography(geometry_type="POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("route", Geometry(geometry_type="LINESTRING", srid=4326, spatial_index=False), nullable=False),
        sa.Column("route_properties", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expected_arrival", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("monitor_state", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("last_fix", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("timer_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("timer_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'arrived', 'finished', 'escalated')", name=op.f("ck_walks_status")),
        sa.CheckConstraint("profile IN ('safe', 'shortest')", name=op.f("ck_walks_profile")),
        sa.ForeignKeyConstraint(["walker_id"], ["users.id"], name=op.f("fk_walks_walker_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_walks")),
    )
    op.create_index(op.f("ix_walks_walker_id"), "walks", ["walker_id"])
    op.create_index("uq_walks_walker_active", "walks", ["walker_id"], unique=True,
                    postgresql_where=sa.text("status = 'active'"))

    op.create_table(
        "walk_guardians",
        sa.Column("walk_id", sa.UUID(), nullable=False),
        sa.Column("guardian_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(["walk_id"], ["walks.id"], name=op.f("fk_walk_guardians_walk_id_walks"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["guardian_id"], ["users.id"], name=op.f("fk_walk_guardians_guardian_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("walk_id", "guardian_id", name=op.f("pk_walk_guardians")),
    )
    op.create_index(op.f("ix_walk_guardians_guardian_id"), "walk_guardians", ["guardian_id"])

    op.create_table(
        "walk_alerts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("walk_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("t", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkin_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.CheckConstraint("kind IN ('deviated', 'stalled', 'overdue', 'signal_lost', 'arrived')",
                           name=op.f("ck_walk_alerts_kind")),
        sa.CheckConstraint("status IN ('open', 'answered', 'escalated', 'closed')",
                           name=op.f("ck_walk_alerts_status")),
        sa.ForeignKeyConstraint(["walk_id"], ["walks.id"], name=op.f("fk_walk_alerts_walk_id_walks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_walk_alerts")),
    )
    op.create_index(op.f("ix_walk_alerts_walk_id"), "walk_alerts", ["walk_id"])

    op.create_table(
        "location_access_log",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("viewer_id", sa.UUID(), nullable=False),
        sa.Column("subject_user_id", sa.UUID(), nullable=False),
        sa.Column("subject_kind", sa.String(length=8), nullable=False),
        sa.Column("subject_id", sa.UUID(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_location_access_log")),
    )
    op.create_index("ix_location_access_log_subject_user_at", "location_access_log", ["subject_user_id", "at"])

    op.create_index("ix_location_fixes_retention", "location_fixes", ["t"],
                    postgresql_where=sa.text("incident_id IS NULL"))


def downgrade():
    op.drop_index("ix_location_fixes_retention", table_name="location_fixes")
    op.drop_index("ix_location_access_log_subject_user_at", table_name="location_access_log")
    op.drop_table("location_access_log")
    op.drop_index(op.f("ix_walk_alerts_walk_id"), table_name="walk_alerts")
    op.drop_table("walk_alerts")
    op.drop_index(op.f("ix_walk_guardians_guardian_id"), table_name="walk_guardians")
    op.drop_table("walk_guardians")
    op.drop_index("uq_walks_walker_active", table_name="walks")
    op.drop_index(op.f("ix_walks_walker_id"), table_name="walks")
    op.drop_table("walks")
