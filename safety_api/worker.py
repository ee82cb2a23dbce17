"""The worker: claims durable jobs and runs their handlers; any number may run at once."""
import gc
import logging
import os
import random
import signal
import socket
import threading
from typing import Callable

from safety_api.extensions import db
from safety_api.services import jobs

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """Raised by a handler whose work is not done yet; the job runs again after `delay_s`.

    What the handler recorded before raising (a delivery's receipt of this try) is kept: it commits with the
    rescheduling, so the two cannot disagree, and not at all if another worker took the job over meanwhile."""

    def __init__(self, reason: str, delay_s: float):
        super().__init__(reason)
        self.delay_s = delay_s


def job_handlers() -> dict[str, Callable]:
    """Handlers by job kind: each takes (session, payload, context) and leaves the commit to us."""
    from safety_api.worker_jobs import HANDLERS
    return HANDLERS


def failure_handlers() -> dict[str, Callable]:
    """What a kind owes when its job ends failed, by kind: each takes (session, payload, error) and runs in the
    transaction that records the failure."""
    from safety_api.worker_jobs import ON_FAILED
    return ON_FAILED


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2 ** attempt))


class Worker:
    """Polls the job table; stops between jobs when asked."""

    def __init__(self, app, *, name: str | None = None):
        self.app = app
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.stop_event = threading.Event()
        self.handlers = dict(job_handlers())  # a copy: adding a kind to one worker leaves the registry alone
        self.on_failed = dict(failure_handlers())
        self.lease_s = app.config["JOB_LEASE_S"]

    def run(self):
        """Loop until stopped, sleeping only when there is nothing due."""
        log.info("worker %s started", self.name)
        while not self.stop_event.is_set():
            try:
                worked = self.run_once()
            except Exception:  # a dead database must not kill the loop; it retries after a pause
                log.exception("worker loop error")
                worked = 0
            if not worked:
                self.stop_event.wait(self.app.config["WORKER_POLL_S"])
        log.info("worker %s stopped", self.name)

    def run_once(self) -> int:
        """Claim and run one batch; return how many jobs were claimed."""
        with self.app.app_context():
            rows = jobs.claim(db.session, worker=self.name, limit=self.app.config["WORKER_BATCH"],
                              lease_s=self.lease_s, kinds=self.handlers)
            begun = 0
            try:
                for row in rows:
                    if self.stop_event.is_set():
                        break
                    begun += 1
                    self._run_job(row)
            finally:
                # Claims never begun (stopping, or the loop broke on an error) are given back at once: waiting
                # out their lease would hold a fresh SOS's pushes back for a minute on every restart.
                self._release([row.id for row in rows[begun:]])
                db.session.remove()
            return len(rows)

    def keep_retention_scheduled(self):
        """Queue the retention purge (it then queues its own next run), and the overrun timers of escorts started
        without one (by an api of the previous release); with the dedupe keys, every worker that starts asks for
        the same ones."""
        from safety_api.clock import utcnow
        from safety_api.services import escort_clock, retention
        from safety_api.services.escort_rules import policy_from_config
        with self.app.app_context():
            try:
                retention.schedule_purge(db.session, now=utcnow(), every_s=self.app.config["FIX_PURGE_INTERVAL_S"])
                escort_policy = policy_from_config(self.app.config)
                escort_clock.arm_missing_overrun_timers(db.session, policy=escort_policy)
                escort_clock.arm_missing_late_timers(db.session, policy=escort_policy)
                db.session.commit()
            except Exception:  # the database is away at start: the loop waits for it; walks' timers queue it too
                db.session.rollback()
                log.warning("retention purge not scheduled at start", exc_info=True)
            finally:
                db.session.remove()

    def _release(self, job_ids):
        if not job_ids:
            return
        try:
            db.session.rollback()
            jobs.release(db.session, job_ids=job_ids, worker=self.name)
        except Exception:  # the database is away: the leases still run out, as before
            log.exception("could not give back %d claimed jobs", len(job_ids))

    def _run_job(self, row):
        session = db.session
        # A batch may outlast its lease (pushes timing out one after another); a job whose lease ran out may have
        # been taken over, and two workers must never send the same push. Starting renews the lease and counts
        # the attempt, so only a run that begins uses one.
        started = jobs.start(session, job_id=row.id, worker=self.name, lease_s=self.lease_s)
        if started is None:
            return
        if not started.runnable:
            # Its last allowed run never ended: that worker died (or hung past its lease) running it.
            self._retry_or_fail(row, started, "its last attempt never ended (its worker died or outlasted its "
                                              "lease)", delay_s=0)
            return
        try:
            self.handlers[row.kind](session, row.payload, self)
        except RetryLater as later:
            self._retry_or_fail(row, started, str(later), delay_s=later.delay_s)
        except Exception as exc:  # isolate one job's failure from the rest of the batch
            session.rollback()
            log.exception("job %s (%s) failed", row.id, row.kind)
            self._retry_or_fail(row, started, f"{exc.__class__.__name__}: {exc}", delay_s=backoff(started.attempts))
        else:
            self._commit_if_held(row, jobs.finish(session, job_id=row.id, worker=self.name))

    def _retry_or_fail(self, row, started, error: str, *, delay_s: float):
        session = db.session
        status = jobs.retry_or_fail(session, job_id=row.id, worker=self.name, attempts=started.attempts,
                                    max_attempts=started.max_attempts, error=error, delay_s=delay_s)
        if status == "failed" and row.kind in self.on_failed:
            # In the same transaction: a job never ends failed while what it owed (a delivery) still looks
            # pending to the people waiting on it.
            self.on_failed[row.kind](session, row.payload, error)
        self._commit_if_held(row, status is not None)

    def _commit_if_held(self, row, held: bool):
        """Commit the job's outcome with its effects, or drop both if another worker holds the job now."""
        if held:
            db.session.commit()
        else:
            db.session.rollback()
            log.warning("job %s (%s) was taken over while this worker ran it; its outcome here is dropped",
                        row.id, row.kind)


def main(app=None):
    """Run one worker in the foreground until SIGTERM or SIGINT; refuse to start without a push sender that can
    deliver, rather than take jobs and fail every push one retry after another."""
    from safety_api import create_app
    from safety_api.services import deliveries
    app = app or create_app()
    try:
        deliveries.sender_for(app.config)
    except deliveries.PushSettingsError as exc:
        log.critical("worker not started: %s", exc)
        raise SystemExit(f"worker not started: {exc}") from None
    worker = Worker(app)
    worker.keep_retention_scheduled()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop_event.set())
    worker.run()
    # The process ends here: spare it the interpreter's final collection of a large heap,
    # which takes seconds on a busy machine and would hold up a rolling restart.
    gc.freeze()
