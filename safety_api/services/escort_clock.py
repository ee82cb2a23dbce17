"""An escort's clock: when it may start, when a confirmed one that has not started is late (its late timer, set with
the booking: `escort_live.late_job`), and when it is over at the latest (its overrun timer, set at its start, which
closes one that nobody completed: `escort_live.overrun_job`)."""
from datetime import datetime

from sqlalchemy import text

from notifications.messages import seoul_time
from safety_api.errors import Conflict
from safety_api.services import jobs
from safety_api.services.escort_rules import Policy

# The timer that closes an escort nobody completed, due at its closing time (set at start).
OVERRUN = "escort.overrun"
# The timer that flags a confirmed escort still not started `late` after its meeting time.
LATE = "escort.late"


def check_start_time(booking, *, policy: Policy, now: datetime):
    """An escort starts from `start_lead` before its meeting until its time is over (`busy_until`). Started hours
    early, it stayed in progress, taking and streaming the scouts' positions, long after the walk; started after
    its time, it is a meeting that did not happen (a no-show), and its scouts may be walking someone else."""
    earliest = booking.meet_at - policy.start_lead
    if now < earliest:
        raise Conflict(f"The escort can start from {seoul_time(earliest.isoformat())} (Asia/Seoul), "
                       f"{int(policy.start_lead.total_seconds() // 60)} minutes before the meeting.")
    if now >= booking.busy_until:
        raise Conflict("This escort's time is over; record a no-show, and the citizen can book again.")


def set_overrun_timer(session, booking, *, policy: Policy, now: datetime):
    """At the start, in its transaction: when the escort closes by itself if nobody completes it. That is the end
    of its time (`busy_until`; started late, the start plus the walk, if later), and `overrun_grace` after."""
    end = max(booking.busy_until, now + (booking.ends_at - booking.meet_at))
    jobs.enqueue(session, kind=OVERRUN, payload={"booking_id": str(booking.id)}, run_at=end + policy.overrun_grace,
                 dedupe_key=f"{OVERRUN}:{booking.id}")


def set_late_timer(session, booking, *, policy: Policy):
    """With the booking: `late` after the meeting, a confirmed escort that has not started is flagged. Before, a
    citizen waiting alone at night for scouts who did not come was noticed by nobody but the citizen."""
    jobs.enqueue(session, kind=LATE, payload={"booking_id": str(booking.id)}, run_at=booking.meet_at + policy.late,
                 dedupe_key=f"{LATE}:{booking.id}")


_ARM_MISSING_OVERRUNS = text("""
    INSERT INTO jobs (kind, payload, run_at, dedupe_key)
    SELECT CAST(:kind AS text), jsonb_build_object('booking_id', id::text),
           greatest(busy_until + make_interval(secs => :grace_s), now()), CAST(:kind AS text) || ':' || id
    FROM escort_bookings WHERE status = 'in_progress'
    ON CONFLICT (dedupe_key) DO NOTHING
""")


def arm_missing_overrun_timers(session, *, policy: Policy) -> int:
    """Give every escort in progress without an overrun timer its timer (a worker's start; the caller commits):
    an api process of the release before the timers, still serving during a rolling deploy, starts escorts
    without one, and they would stay in progress for good."""
    return session.execute(_ARM_MISSING_OVERRUNS, {"kind": OVERRUN,
                                                   "grace_s": policy.overrun_grace.total_seconds()}).rowcount


_ARM_MISSING_LATE = text("""
    INSERT INTO jobs (kind, payload, run_at, dedupe_key)
    SELECT CAST(:kind AS text), jsonb_build_object('booking_id', id::text), meet_at + make_interval(secs => :late_s),
           CAST(:kind AS text) || ':' || id
    FROM escort_bookings WHERE status IN ('requested', 'confirmed') AND meet_at + make_interval(secs => :late_s) > now()
    ON CONFLICT (dedupe_key) DO NOTHING
""")


def arm_missing_late_timers(session, *, policy: Policy) -> int:
    """Give every booking still to be walked its late timer (a worker's start; the caller commits): bookings made
    by an api process of the release before it, which has none."""
    return session.execute(_ARM_MISSING_LATE, {"kind": LATE, "late_s": policy.late.total_seconds()}).rowcount


def closes_at(session, booking) -> datetime:
    """When an escort in progress is over at the latest: its overrun timer's time, set at its start (for one
    started before that timer existed, `busy_until`)."""
    return jobs.due_at(session, dedupe_key=f"{OVERRUN}:{booking.id}") or booking.busy_until


def under_way(session, booking, *, now: datetime) -> bool:
    """Whether the escort is being walked now: in progress and before its closing time. Its timer may run late (a
    worker's backlog); the time is the rule, for the scouts' positions and for the citizen's account deletion."""
    return booking.status == "in_progress" and now < closes_at(session, booking)
