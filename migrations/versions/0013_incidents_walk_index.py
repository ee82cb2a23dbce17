"""An index on incidents.walk_id: a walk's view and every fix group of an escalated walk look up the walk's
incident, and the incidents table is never purged.

Revision ID: 0013
Revises: 0012
"""
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    # CONCURRENTLY: the table is written by every SOS, and a plain build would hold them back while it runs.
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_incidents_walk_id ON incidents (walk_id) "
                   "WHERE walk_id IS NOT NULL")


def downgrade():
    # In the downgrade's one transaction (not CONCURRENTLY), so that a downgrade refused further down (0009)
    # is undone whole.
    op.execute("DROP INDEX IF EXISTS ix_incidents_walk_id")
