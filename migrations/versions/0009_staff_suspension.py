"""Staff accounts an admin can suspend (a departing operator, a scout under investigation), and the audit trail of
what admins do to accounts.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KINDS = "('created', 'suspended', 'reinstated', 'moved')"


def upgrade():
    op.add_column("users", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "account_events",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor_id", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("data", JSONB(), server_default="{}", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(f"kind IN {KINDS}", name=op.f("ck_account_events_kind")),
    )
    op.create_index("ix_account_events_user_id", "account_events", ["user_id"])


def downgrade():
    op.drop_index("ix_account_events_user_id", table_name="account_events")
    op.drop_table("account_events")
    op.drop_column("users", "suspended_at")
