"""Retention: location data that is no incident's evidence is deleted once `FIX_RETENTION_DAYS` have passed,
by one hourly job (`fixes.purge`) that queues its own next run.

Fixes go one by one (`incident_id IS NULL`). An ended walk that escalated to no SOS goes whole: its row holds
the walker's start and destination (usually home), its route, its last fix and the monitors' last position,
and its alerts hold where they were raised, all location data as much as its fixes are; nothing in the walk
is needed once it is over. A walk tied to an incident is kept as it is, with the incident.
"""
from datetime import datetime, timedelta

from sqlalchemy import exists, select

from safety_api.clock import utcnow
from safety_api.models import Incident, LocationFix, Walk
from safety_api.services import jobs
from safety_api.services.walk_monitor import ENDED, moment, seconds

WALK_BATCH = 500  # walks per transaction: each takes its alerts and chosen guardians with it (ON DELETE CASCADE)


def purge_fixes(session, *, now: datetime, retention_days: float, batch: int = 5000) -> int:
    """Delete fixes older than the retention period that are no incident's evidence, a batch at a time."""
    cutoff, total = now - timedelta(days=retention_days), 0
    while True:
        doomed = (select(LocationFix.id).where(LocationFix.incident_id.is_(None), LocationFix.t < cutoff)
                  .order_by(LocationFix.t).limit(batch).scalar_subquery())
        removed = session.execute(LocationFix.__table__.delete().where(LocationFix.id.in_(doomed))).rowcount
        session.commit()  # short transactions: the purge never holds many row locks at once
        total += removed
        if removed < batch:
            return total


def purge_walks(session, *, now: datetime, retention_days: float, batch: int = WALK_BATCH) -> int:
    """Delete walks that ended more than the retention period ago and escalated to no SOS, a batch at a time.
    (The access log keeps its rows about them: it names ids, with no foreign key, and outlives what it names.)"""
    cutoff, total = now - timedelta(days=retention_days), 0
    while True:
        doomed = (select(Walk.id).where(Walk.status.in_(ENDED), Walk.ended_at < cutoff,
                                        ~exists().where(Incident.walk_id == Walk.id))
                  .limit(batch).scalar_subquery())
        removed = session.execute(Walk.__table__.delete().where(Walk.id.in_(doomed))).rowcount
        session.commit()
        total += removed
        if removed < batch:
            return total


def schedule_purge(session, *, now: datetime, every_s: float, after_slot: int = 0):
    """Keep one purge queued for the next slot; repeated calls add nothing."""
    slot = max(int(seconds(now) // every_s) + 1, after_slot + 1)
    jobs.enqueue(session, kind="fixes.purge", payload={"slot": slot}, run_at=moment(slot * every_s),
                 dedupe_key=f"fixes-purge:{int(every_s)}:{slot}")


def purge_job(session, payload, worker):
    """Worker entry for `fixes.purge` (the retention purge): fixes, ended walks, then finished jobs, then queue
    the next slot."""
    cfg = worker.app.config
    purge_fixes(session, now=utcnow(), retention_days=cfg["FIX_RETENTION_DAYS"])
    purge_walks(session, now=utcnow(), retention_days=cfg["FIX_RETENTION_DAYS"])
    jobs.purge_finished(session, now=utcnow(), retention_days=cfg["JOB_RETENTION_DAYS"])
    schedule_purge(session, now=utcnow(), every_s=cfg["FIX_PURGE_INTERVAL_S"], after_slot=payload.get("slot", 0))
