"""An index on walks.ended_at for the ended walks: the hourly retention purge looks for those ended more than
FIX_RETENTION_DAYS ago, and without it reads the whole table every hour.

Revision ID: 0015
Revises: 0014
"""
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    # CONCURRENTLY: every walk's start and end writes the table.
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_walks_ended ON walks (ended_at) "
                   "WHERE status IN ('arrived', 'finished')")


def downgrade():
    # In the downgrade's one transaction (not CONCURRENTLY), so that a downgrade refused further down (0009)
    # is undone whole.
    op.execute("DROP INDEX IF EXISTS ix_walks_ended")
