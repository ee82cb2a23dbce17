"""The durable job table: enqueue in the caller's transaction, claim with SKIP LOCKED, start, finish."""
import math
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert

from safety_api.models import Job

# A claim counts nothing: a claimed job may never run here (its lease runs out behind slow jobs and another
# worker takes it over, the worker is stopped mid-batch, or dies). Attempts are counted by `start`.
_CLAIM = text("""
    UPDATE jobs SET status = 'running', locked_by = :worker,
                    locked_until = now() + make_interval(secs => :lease)
    WHERE id IN (
        SELECT id FROM jobs
        WHERE ((status = 'pending' AND run_at <= now())
               OR (status = 'running' AND locked_until < now()))   -- a worker died holding it
          AND kind = ANY(:kinds)   -- a kind this worker cannot run waits for one that can (a rolling deploy)
        ORDER BY run_at, id
        FOR UPDATE SKIP LOCKED
        LIMIT :limit)
    RETURNING id, kind, payload
""")


# Renews the lease and counts the attempt in one step; a job whose allowed attempts have all begun is not
# counted again (`runnable` false: its last run never ended, so the worker running it died or hung).
_START = text("""
    WITH held AS (
        SELECT id, attempts < max_attempts AS runnable FROM jobs
        WHERE id = :id AND status = 'running' AND locked_by = :worker
        FOR UPDATE)
    UPDATE jobs SET locked_until = now() + make_interval(secs => :lease),
                    attempts = attempts + held.runnable::int
    FROM held WHERE jobs.id = held.id
    RETURNING jobs.attempts, jobs.max_attempts, held.runnable
""")


# Finishing and rescheduling only touch a job this worker still holds: one whose lease ran out mid-run may have
# been taken over, and the late outcome of the first worker must not overwrite the second's.
_FINISH = text("""
    UPDATE jobs SET status = 'done', finished_at = now(), locked_by = NULL, locked_until = NULL, last_error = NULL
    WHERE id = :id AND status = 'running' AND locked_by = :worker
    RETURNING id
""")

_FAIL = text("""
    UPDATE jobs SET status = 'failed', finished_at = now(), last_error = :e, locked_by = NULL, locked_until = NULL
    WHERE id = :id AND status = 'running' AND locked_by = :worker
    RETURNING id
""")

_RETRY = text("""
    UPDATE jobs SET status = 'pending', run_at = now() + make_interval(secs => :delay), last_error = :e,
                    locked_by = NULL, locked_until = NULL
    WHERE id = :id AND status = 'running' AND locked_by = :worker
    RETURNING id
""")


_BACKLOG = text("""
    SELECT kind, count(due_since) AS due, coalesce(extract(epoch FROM now() - min(due_since)), 0) AS oldest_due_s,
           count(*) FILTER (WHERE status = 'running' AND due_since IS NULL) AS running
    FROM (SELECT kind, status,
                 CASE WHEN status = 'pending' AND run_at <= now() THEN run_at
                      WHEN status = 'running' AND locked_until < now() THEN locked_until  -- its worker died
                 END AS due_since
          FROM jobs WHERE status IN ('pending', 'running')) j
    GROUP BY kind ORDER BY kind
""")


DEFAULT_MAX_ATTEMPTS = 8
# The longest a retry waits. Delays come from outside at times (an FCM Retry-After): an infinite or absurd one
# would overflow the datetime arithmetic and leave the job running, its batch abandoned.
MAX_DELAY_S = 86400.0


def enqueue(session, *, kind: str, payload: dict, run_at: datetime | None = None, delay_s: float = 0.0,
            dedupe_key: str | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS):
    """Add a job inside the caller's transaction, due at `run_at` or else `delay_s` from the database's now (the
    clock the claim reads: a timer measured from an api or worker host's own clock would fire early or late by
    that host's drift); a repeated dedupe_key adds nothing."""
    due = run_at if run_at is not None else func.now() + timedelta(seconds=bounded_delay(delay_s))
    stmt = insert(Job).values(kind=kind, payload=payload, run_at=due,
                              dedupe_key=dedupe_key, max_attempts=max_attempts)
    if dedupe_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
    session.execute(stmt)


_RELEASE = text("""
    UPDATE jobs SET status = 'pending', locked_by = NULL, locked_until = NULL
    WHERE id = ANY(:ids) AND status = 'running' AND locked_by = :worker
""")


def due_at(session, *, dedupe_key: str) -> datetime | None:
    """When the job with this key is, or was, due; None when there is none."""
    return session.scalar(select(Job.run_at).where(Job.dedupe_key == dedupe_key))


def claim(session, *, worker: str, limit: int, lease_s: float, kinds) -> list:
    """Claim due jobs of these kinds (and such jobs whose lease expired) and commit the claim."""
    rows = session.execute(_CLAIM, {"worker": worker, "limit": limit, "lease": lease_s, "kinds": list(kinds)}).all()
    session.commit()
    return rows


def release(session, *, job_ids, worker: str) -> int:
    """Give back claims this worker will not run (it is stopping): due again at once for any worker, instead of
    after their lease. A claim counted no attempt, so nothing else changes; and commit."""
    released = session.execute(_RELEASE, {"ids": list(job_ids), "worker": worker}).rowcount
    session.commit()
    return released


def start(session, *, job_id: int, worker: str, lease_s: float):
    """Begin running a claimed job: renew this worker's lease and count the attempt, and commit.

    Returns (attempts, max_attempts, runnable), or None if another worker took the job over (a batch may
    outlast its lease). `runnable` is false when every allowed attempt has begun already and the last never
    ended: the caller records the job failed instead of running it again (it may be what kills workers)."""
    started = session.execute(_START, {"id": job_id, "worker": worker, "lease": lease_s}).first()
    session.commit()
    return started


def finish(session, *, job_id: int, worker: str) -> bool:
    """Mark a job this worker holds done; the caller commits together with the job's own effects.

    False if the job is no longer this worker's: the caller must roll its effects back, the worker that took
    the job over is running (or ran) it."""
    return session.execute(_FINISH, {"id": job_id, "worker": worker}).first() is not None


def retry_or_fail(session, *, job_id: int, worker: str, attempts: int, max_attempts: int, error: str,
                  delay_s: float) -> str | None:
    """Put a job this worker holds back with a delay, or record it failed after its last attempt.

    Returns the job's new status ('pending' or 'failed'), or None if the job is no longer this worker's (the
    caller rolls back). The caller commits, so that whatever a failed job owes (a delivery marked failed)
    commits with it."""
    error = error[:2000]
    if attempts >= max_attempts:
        held = session.execute(_FAIL, {"id": job_id, "worker": worker, "e": error}).first()
        return "failed" if held else None
    delay_s = bounded_delay(delay_s)
    held = session.execute(_RETRY, {"id": job_id, "worker": worker, "e": error, "delay": delay_s}).first()
    return "pending" if held else None


def backlog(session) -> list:
    """(kind, due, oldest_due_s, running) per kind of job still to run: what the metrics show, so that workers
    all down or falling behind (an SOS's escalation waiting) is seen before anyone misses it."""
    return session.execute(_BACKLOG).all()


def purge_finished(session, *, now: datetime, retention_days: float, batch: int = 5000) -> int:
    """Delete jobs done or failed longer ago than the retention period, a batch at a time (short transactions).
    Their effects live elsewhere (deliveries keep the receipts); the job rows only grow the table the claim
    reads."""
    cutoff, total = now - timedelta(days=retention_days), 0
    while True:
        doomed = (select(Job.id).where(Job.status.in_(("done", "failed")), Job.finished_at < cutoff)
                  .order_by(Job.id).limit(batch).scalar_subquery())
        removed = session.execute(delete(Job).where(Job.id.in_(doomed))).rowcount
        session.commit()
        total += removed
        if removed < batch:
            return total


def bounded_delay(delay_s: float) -> float:
    """`delay_s` within [0, MAX_DELAY_S]; not a number (or infinite) counts as the longest."""
    return min(max(delay_s, 0.0), MAX_DELAY_S) if math.isfinite(delay_s) else MAX_DELAY_S
