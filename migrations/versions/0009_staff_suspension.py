"""Staff accounts an admin can suspend or move (a departing operator, a scout under investigation), the audit trail
of what admins do to accounts, and the district that owns each protection (so that moving the operator who set it
up does not hand it to another district).

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
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor_id", UUID(as_uuid=True)),
        sa.Column("data", JSONB(), server_default="{}", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(f"kind IN {KINDS}", name=op.f("ck_account_events_kind")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_account_events_user_id_users")),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_account_events_actor_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_events")),
    )
    op.create_index(op.f("ix_account_events_user_id"), "account_events", ["user_id"])
    # The district in charge of a protection: its setter's, at the time it was set up (NULL: an admin's, or a
    # setter whose account is gone; only admins change those).
    op.add_column("protected_persons", sa.Column("district_code", sa.String(5), nullable=True))
    op.create_foreign_key(op.f("fk_protected_persons_district_code_districts"), "protected_persons", "districts",
                          ["district_code"], ["code"])
    op.execute("UPDATE protected_persons p SET district_code = u.district_code FROM users u WHERE u.id = p.created_by")


def downgrade():
    # The older schema cannot hold a suspension: dropping the column would let every suspended account log in
    # again. Reinstate or delete them first, on purpose.
    suspended = op.get_bind().execute(sa.text("SELECT count(*) FROM users WHERE suspended_at IS NOT NULL")).scalar()
    if suspended:
        raise RuntimeError(f"{suspended} suspended account(s) would be able to log in again under revision 0008: "
                           "reinstate or delete them before downgrading past 0009")
    op.drop_constraint(op.f("fk_protected_persons_district_code_districts"), "protected_persons", type_="foreignkey")
    op.drop_column("protected_persons", "district_code")
    op.drop_index(op.f("ix_account_events_user_id"), table_name="account_events")
    op.drop_table("account_events")
    op.drop_column("users", "suspended_at")
