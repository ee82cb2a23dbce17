"""A protection's contact phones reach only the accounts that held them when staff set the list: phones are not
verified at registration, so an account made for an officer's number afterwards (by anyone who knows it) must
not receive the protected person's SOS and position.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    # Existing protections keep reaching whoever holds their phones now, as they did.
    op.add_column("protected_persons", sa.Column("contacts_set_at", sa.DateTime(timezone=True),
                                                 server_default=sa.func.now(), nullable=False))


def downgrade():
    op.drop_column("protected_persons", "contacts_set_at")
