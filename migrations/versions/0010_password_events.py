"""Passwords can be changed (by the person, confirmed with the current one) and set (by an admin, or the
deployment's command line, for a staff account): both go into the staff audit trail.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BEFORE = "('created', 'suspended', 'reinstated', 'moved')"
AFTER = "('created', 'suspended', 'reinstated', 'moved', 'password_set', 'password_changed')"


def upgrade():
    op.drop_constraint(op.f("ck_account_events_kind"), "account_events", type_="check")
    op.create_check_constraint(op.f("ck_account_events_kind"), "account_events", f"kind IN {AFTER}")


def downgrade():
    # The older schema has no word for them; the trail keeps who created, suspended, reinstated or moved whom.
    op.execute("DELETE FROM account_events WHERE kind IN ('password_set', 'password_changed')")
    op.drop_constraint(op.f("ck_account_events_kind"), "account_events", type_="check")
    op.create_check_constraint(op.f("ck_account_events_kind"), "account_events", f"kind IN {BEFORE}")
