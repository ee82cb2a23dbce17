"""Escort fixes. A location fix is unique per sender too: an escort's two scouts report the same subject (the
booking), and the second scout's fix at the same timestamp was dropped as a duplicate of the first's. A booking
remembers the citizen's Idempotency-Key, so that a phone retrying a booking gets it back rather than a 409 from
the citizen's own overlap rule. And the escorts already under way get the timer that closes an escort nobody
completes, which an escort now gets at its start.

The constraint keeps its name, uq_location_fixes_subject_t, so that the api processes of the previous release,
which name it in their ON CONFLICT, keep storing fixes during a rolling deploy; the code now names its columns.
`user_id` comes last, so that the index still serves a subject's fixes in time order. A walk's and an SOS's
fixes all come from one person (the walker, the caller), so their duplicates are found as before.

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Built beside the old constraint (CONCURRENTLY: every phone writes this table), then swapped in by one ALTER, so
# that no moment goes without one.
_BUILD = "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name} ON location_fixes ({columns})"
_SWAP = ("ALTER TABLE location_fixes DROP CONSTRAINT uq_location_fixes_subject_t, "
         "ADD CONSTRAINT uq_location_fixes_subject_t UNIQUE USING INDEX {name}")


def upgrade():
    op.add_column("escort_bookings", sa.Column("idempotency_key", sa.String(length=128), nullable=True))
    op.create_index("uq_escort_bookings_citizen_key", "escort_bookings", ["citizen_id", "idempotency_key"],
                    unique=True, postgresql_where=sa.text("idempotency_key IS NOT NULL"))
    # At their time plus the default ESCORT_OVERRUN_GRACE_MINUTES; at once for those long past it (left open for
    # good before). Workers of the previous release do not claim a kind they do not know; those its api processes
    # start meanwhile get theirs from the next worker to start (escort.arm_missing_overrun_timers).
    op.execute("INSERT INTO jobs (kind, payload, run_at, dedupe_key) "
               "SELECT 'escort.overrun', jsonb_build_object('booking_id', id::text), "
               "greatest(busy_until + interval '30 minutes', now()), 'escort.overrun:' || id "
               "FROM escort_bookings WHERE status = 'in_progress' ON CONFLICT (dedupe_key) DO NOTHING")
    # The autocommit block commits the above first. An index left invalid by an interrupted build is dropped and
    # built again; the swap comes last, so that location_fixes, which every phone writes, is locked only for it.
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS uq_location_fixes_subject_t_user")
        op.execute(_BUILD.format(name="uq_location_fixes_subject_t_user",
                                 columns="subject_kind, subject_id, t, user_id"))
    op.execute("SET LOCAL lock_timeout = '10s'")  # behind a long reader, fail the deploy rather than queue every fix
    op.execute(_SWAP.format(name="uq_location_fixes_subject_t_user"))


def downgrade():
    op.execute("DELETE FROM jobs WHERE kind = 'escort.overrun' AND status = 'pending'")  # no worker would run them
    op.drop_index("uq_escort_bookings_citizen_key", table_name="escort_bookings")
    op.drop_column("escort_bookings", "idempotency_key")
    # The older rule keeps one fix per subject and moment: of two scouts' fixes at the same `t`, the first stored.
    op.execute("DELETE FROM location_fixes f USING location_fixes first "
               "WHERE f.subject_kind = first.subject_kind AND f.subject_id = first.subject_id AND f.t = first.t "
               "AND f.id > first.id")
    # In the downgrade's one transaction (not CONCURRENTLY), so that a downgrade refused further down (0009) is
    # undone whole.
    op.execute(_BUILD.replace(" CONCURRENTLY", "").format(name="uq_location_fixes_subject_t_only",
                                                          columns="subject_kind, subject_id, t"))
    op.execute(_SWAP.format(name="uq_location_fixes_subject_t_only"))
