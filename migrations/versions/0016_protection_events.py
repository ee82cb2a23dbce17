"""The audit trail of protections: who set one up, changed (agency, case reference, contact phones, note) or ended
it, and the fields it changed, old and new. Ending a protection deleted its record with its setter; a wrong
contact list or an ended protection of a stalking victim left no trace of who did it. In a rolling deploy the
previous release goes on working beside the table, writing no events: what it sets up, changes or ends
meanwhile is missing from the trail.

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

KINDS = "('created', 'changed', 'ended')"


def upgrade():
    op.create_table(
        "protection_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor_id", UUID(as_uuid=True)),
        sa.Column("data", JSONB(), server_default="{}", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(f"kind IN {KINDS}", name=op.f("ck_protection_events_kind")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_protection_events_user_id_users")),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_protection_events_actor_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_protection_events")),
    )
    op.create_index(op.f("ix_protection_events_user_id"), "protection_events", ["user_id"])
    # A protection set up before the trail existed starts it with its setting up, by its setter and at its
    # time; what it said then is lost, so the event holds what it says now, and says so (`backfilled`).
    op.execute("""
        INSERT INTO protection_events (user_id, kind, actor_id, data, at)
        SELECT user_id, 'created', created_by, jsonb_build_object(
                   'agency', jsonb_build_object('old', NULL, 'new', agency),
                   'case_reference', jsonb_build_object('old', NULL, 'new', case_reference),
                   'contact_phones', jsonb_build_object('old', NULL, 'new', contact_phones),
                   'note', jsonb_build_object('old', NULL, 'new', note),
                   'district', jsonb_build_object('old', NULL, 'new', district_code),
                   'backfilled', true),
               created_at
        FROM protected_persons ORDER BY created_at
    """)


def downgrade():
    # In the downgrade's one transaction, like the rest of it: the older schema has no place for the trail.
    op.drop_index(op.f("ix_protection_events_user_id"), table_name="protection_events")
    op.drop_table("protection_events")
