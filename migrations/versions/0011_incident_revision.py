"""Incidents carry a revision: one more at every change recorded in their audit trail, so that a console
orders what it hears by it (a status may rightly go back: a duress PIN reopens, a release hands back).

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("incidents", sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
    # Each event so far was one change: an incident already worked on starts where its trail says it is.
    op.execute("""
        UPDATE incidents i SET revision = e.n
        FROM (SELECT incident_id, count(*) AS n FROM incident_events GROUP BY incident_id) e
        WHERE e.incident_id = i.id AND e.n > 1
    """)


def downgrade():
    op.drop_column("incidents", "revision")
