"""A bell's Idempotency-Key lasts while its incident is open as the owner sees it (`caller_closed_at` unset),
not while it is open to the operators: after a duress PIN the bell's replay is answered as after a cancel.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    # Every closed incident has its caller's view closed too (0006), so no two rows can collide under the
    # narrower condition.
    op.drop_index("uq_incidents_bell_key", table_name="incidents")
    op.create_index("uq_incidents_bell_key", "incidents", ["bell_device_id", "idempotency_key"], unique=True,
                    postgresql_where=sa.text("bell_device_id IS NOT NULL AND caller_closed_at IS NULL"))


def downgrade():
    # An incident open behind a duress PIN and a later alarm of the same bell with its key would collide under
    # the old condition: the older one lets go of the key, as a reopened incident does.
    op.execute("""
        UPDATE incidents i SET idempotency_key = NULL
        WHERE bell_device_id IS NOT NULL AND caller_closed_at IS NOT NULL
          AND status NOT IN ('resolved', 'cancelled')
          AND EXISTS (SELECT 1 FROM incidents j WHERE j.bell_device_id = i.bell_device_id
                      AND j.idempotency_key = i.idempotency_key AND j.id <> i.id
                      AND j.status NOT IN ('resolved', 'cancelled'))
    """)
    op.drop_index("uq_incidents_bell_key", table_name="incidents")
    op.create_index("uq_incidents_bell_key", "incidents", ["bell_device_id", "idempotency_key"], unique=True,
                    postgresql_where=sa.text("bell_device_id IS NOT NULL AND status NOT IN ('resolved', 'cancelled')"))
