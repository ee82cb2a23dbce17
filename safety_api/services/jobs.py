"""The durable job table: enqueue in the caller's transaction, claim with SKIP LOCKED, finish."""
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert

from safety_api.clock import utcnow
from safety_api.models import Job

_CLAIM = text("""
    UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = :worker,
                    locked_until = now() + make_interval(secs => :lease)
    WHERE id IN (
        SELECT id FROM jobs
        WHERE (status = 'pending' AND run_at <= now())
           OR (status = 'running' AND locked_until < now())   -- a worker died holding it
        ORDER BY run_at, id
        FOR UPDATE SKIP LOCKED
        LIMIT :limit)
    RETURNING id, kind, payload, attempts, max_attempts
""")


_RENEW = text("""
    UPDATE jobs SET locked_until = now() + make_interval(secs => :lease)
    WHERE id = :id AND status = 'running' AND locked_by = :worker
    RETURNING id
""")


DEFAULT_MAX_ATTEMPTS = 8


def enqueue(session, *, kind: str, payload: dict, run_at: datetime | None = None,
            dedupe_key: str | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS):
    """Add a job inside the caller's transaction; a repeated dedupe_key adds nothing."""
    stmt = insert(Job).values(kind=kind, payload=payload, run_at=run_at or utcnow(),
                              dedupe_key=dedupe_key, max_attempts=max_attempts)
    if dedupe_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
    session.execute(stmt)


def claim(session, *, worker: str, limit: int, lease_s: float) -> list:
    """Claim due jobs (and jobs whose lease expired) and commit the claim."""
    rows = session.execute(_CLAIM, {"worker": worker, "limit": limit, "lease": lease_s}).all()
    session.commit()
    return rows


def renew(session, *, job_id: int, worker: str, lease_s: float) -> bool:
    """Extend this worker's lease on a claimed job before running it; False if another worker took it over."""
    held = session.execute(_RENEW, {"id": job_id, "worker": worker, "lease": lease_s}).first() is not None
    session.commit()
    return held


def finish(session, *, job_id: int):
    """Mark a job done; the caller commits together with the job's own effects."""
    session.execute(text("UPDATE jobs SET status='done', finished_at=now(), locked_by=NULL, "
                         "locked_until=NULL, last_error=NULL WHERE id=:id"), {"id": job_id})


def retry_or_fail(session, *, job_id: int, attempts: int, max_attempts: int, error: str, delay_s: float):
    """Put a job back with a delay, or record it failed after its last attempt."""
    if attempts >= max_attempts:
        session.execute(text("UPDATE jobs SET status='failed', finished_at=now(), last_error=:e, "
                             "locked_by=NULL, locked_until=NULL WHERE id=:id"), {"id": job_id, "e": error[:2000]})
    else:
        session.execute(text("UPDATE jobs SET status='pending', run_at=:at, last_error=:e, locked_by=NULL, "
                             "locked_until=NULL WHERE id=:id"),
                        {"id": job_id, "e": error[:2000], "at": utcnow() + timedelta(seconds=delay_s)})
    session.commit()
