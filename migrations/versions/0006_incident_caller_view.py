"""Incidents: the caller's view closes at a recorded moment; Idempotency-Keys scoped to the phone or the bell.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("incidents", sa.Column("caller_closed_at", sa.DateTime(timezone=True), nullable=True))
    # Closed to the caller already: by a duress PIN (its event's time) or by the cancel or the resolution.
    op.execute("""
        UPDATE incidents i SET caller_closed_at = coalesce(
            (SELECT min(e.created_at) FROM incident_events e WHERE e.incident_id = i.id AND e.kind = 'duress'),
            i.closed_at)
        WHERE i.caller_status IN ('cancelled', 'resolved')
    """)
    op.drop_constraint("uq_incidents_idempotency", "incidents", type_="unique")
    op.create_index("uq_incidents_caller_key", "incidents", ["caller_id", "idempotency_key"], unique=True,
                    postgresql_where=sa.text("bell_device_id IS NULL"))
    op.create_index("uq_incidents_bell_key", "incidents", ["bell_device_id", "idempotency_key"], unique=True,
                    postgresql_where=sa.text("bell_device_id IS NOT NULL AND status NOT IN ('resolved', 'cancelled')"))


def downgrade():
    # The older key is one per caller, a bell's incidents counted as their owner's: two bells of one owner both
    # sending key "1", or a bell whose counter restarted (0008), would collide. The phone's own incident keeps
    # the key, else the newest; the others let go of it (it only recognised a retry, long over).
    op.execute("""
        UPDATE incidents SET idempotency_key = NULL WHERE id IN (
            SELECT id FROM (
                SELECT id, row_number() OVER (PARTITION BY caller_id, idempotency_key
                                              ORDER BY bell_device_id IS NULL DESC, created_at DESC, id) AS rank
                FROM incidents WHERE caller_id IS NOT NULL AND idempotency_key IS NOT NULL) keyed
            WHERE rank > 1)
    """)
    op.drop_index("uq_incidents_bell_key", table_name="incidents")
    op.drop_index("uq_incidents_caller_key", table_name="incidents")
    op.create_unique_constraint("uq_incidents_idempotency", "incidents", ["caller_id", "idempotency_key"])
    op.drop_column("incidents", "caller_closed_at")
