"""The outbox worker on the real database: claiming, retries, leases, concurrency, real processes."""
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from safety_api.clock import utcnow
from safety_api.models import Job
from safety_api.services import jobs
from safety_api.worker import RetryLater, Worker, backoff
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.support.live import WorkerProcess, process_env


def fail(_session, _payload, _worker):
    raise ValueError("boom")


class Runs:
    """Counts handler runs by job number and by worker, from any thread."""

    def __init__(self):
        self.by_job, self.workers, self._lock = Counter(), set(), threading.Lock()

    def __call__(self, _session, payload, worker):
        with self._lock:
            self.by_job[payload["n"]] += 1
            self.workers.add(worker.name)


@pytest.fixture
def runs():
    return Runs()


@pytest.fixture
def worker(app, db, runs):
    """A worker with test job kinds added: `count` records each run, `fail` always raises."""
    made = Worker(app, name="test-worker")
    made.handlers.update({"count": runs, "fail": fail})
    return made


def enqueue(db, kind="count", n=1, **kwargs):
    jobs.enqueue(db.session, kind=kind, payload={"n": n}, **kwargs)
    db.session.commit()


def job(db, **where) -> Job:
    db.session.expire_all()
    return db.session.scalars(select(Job).filter_by(**where)).one()


def make_due(db):
    """Pretend the backoff delay has passed."""
    db.session.execute(text("UPDATE jobs SET run_at = now() WHERE status = 'pending'"))
    db.session.commit()


def test_a_test_kind_does_not_leak_into_the_registry(app, worker):
    assert "count" not in Worker(app).handlers and "noop" in worker.handlers


def test_only_due_jobs_are_claimed_and_each_runs_once(db, worker, runs):
    enqueue(db, n=1)
    enqueue(db, n=2, run_at=utcnow() + timedelta(hours=1))
    assert worker.run_once() == 1
    assert worker.run_once() == 0
    assert runs.by_job == {1: 1}
    done, later = job(db, payload={"n": 1}), job(db, payload={"n": 2})
    assert (done.status, done.attempts, done.locked_by, done.last_error) == ("done", 1, None, None)
    assert done.finished_at is not None
    assert (later.status, later.attempts) == ("pending", 0)


def test_a_failing_job_retries_with_backoff_then_ends_failed(db, worker):
    enqueue(db, kind="fail", max_attempts=3)
    before = utcnow()
    assert worker.run_once() == 1
    first = job(db, kind="fail")
    assert (first.status, first.attempts, first.last_error) == ("pending", 1, "ValueError: boom")
    assert before <= first.run_at <= utcnow() + timedelta(seconds=2)  # backoff(1) is at most 2 s
    assert first.locked_by is None and first.locked_until is None

    for attempt in (2, 3):
        make_due(db)
        assert worker.run_once() == 1
        assert job(db, kind="fail").attempts == attempt
    failed = job(db, kind="fail")
    assert (failed.status, failed.last_error) == ("failed", "ValueError: boom")
    assert failed.finished_at is not None
    make_due(db)
    assert worker.run_once() == 0


def test_a_job_of_an_unknown_kind_fails_with_the_reason(db, worker):
    enqueue(db, kind="mystery", max_attempts=1)
    worker.run_once()
    failed = job(db, kind="mystery")
    assert failed.status == "failed" and "no handler for job kind 'mystery'" in failed.last_error


def test_a_failure_undoes_the_jobs_own_effects_and_spares_the_batch(db, worker):
    def half_done(session, payload, _w):
        jobs.enqueue(session, kind="count", payload={"n": 99})
        raise RuntimeError("half way")

    worker.handlers["half"] = half_done
    enqueue(db, kind="half", n=0)
    enqueue(db, n=1)
    assert worker.run_once() == 2
    assert job(db, kind="half").last_error == "RuntimeError: half way"
    assert job(db, payload={"n": 1}).status == "done"
    assert db.session.scalar(select(func.count()).select_from(Job)) == 2  # the follow-up rolled back


def test_effects_commit_with_the_job(db, worker):
    worker.handlers["chain"] = lambda session, payload, _w: jobs.enqueue(session, kind="count", payload={"n": 7})
    enqueue(db, kind="chain")
    worker.run_once()
    assert job(db, kind="chain").status == "done" and job(db, payload={"n": 7}).status == "pending"


def test_retry_later_reschedules_after_its_delay(db, worker):
    def not_yet(_session, _payload, _w):
        raise RetryLater("waiting for an answer", delay_s=30)

    worker.handlers["wait"] = not_yet
    enqueue(db, kind="wait")
    assert worker.run_once() == 1
    waiting = job(db, kind="wait")
    assert (waiting.status, waiting.last_error) == ("pending", "waiting for an answer")
    assert abs((waiting.run_at - utcnow()).total_seconds() - 30) < 5
    assert worker.run_once() == 0


def test_backoff_grows_and_is_capped():
    for attempt in range(12):
        samples = [backoff(attempt) for _ in range(50)]
        assert all(0 <= s <= min(300, 2 ** attempt) for s in samples)
    assert max(backoff(20) for _ in range(50)) <= 300


def test_a_job_whose_lease_expired_is_reclaimed(db, worker, runs):
    enqueue(db)
    assert len(jobs.claim(db.session, worker="died-mid-job", limit=10, lease_s=60)) == 1
    assert worker.run_once() == 0  # the lease still holds
    db.session.execute(text("UPDATE jobs SET locked_until = now() - interval '1 second'"))
    db.session.commit()
    assert worker.run_once() == 1
    reclaimed = job(db, kind="count")
    assert (reclaimed.status, reclaimed.attempts, reclaimed.locked_by) == ("done", 2, None)
    assert runs.by_job == {1: 1}


def test_a_repeated_dedupe_key_adds_nothing(db):
    for _ in range(2):
        enqueue(db, n=1, dedupe_key="walk:1:overdue")
    enqueue(db, n=2, dedupe_key="walk:2:overdue")
    enqueue(db, n=3)
    enqueue(db, n=4)
    assert db.session.scalar(select(func.count()).select_from(Job)) == 4
    db.session.execute(text("UPDATE jobs SET status = 'done'"))
    db.session.commit()
    enqueue(db, n=5, dedupe_key="walk:1:overdue")  # a key holds after its job is done
    assert db.session.scalar(select(func.count()).select_from(Job)) == 4


def wait_until_done(db, total: int, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        if db.session.scalar(select(func.count()).select_from(Job).where(Job.status == "done")) == total:
            return
        time.sleep(0.05)
    raise AssertionError(f"jobs not done in {timeout}s")


def test_two_workers_in_threads_run_every_job_exactly_once(app, db, runs, monkeypatch):
    monkeypatch.setitem(app.config, "WORKER_POLL_S", 0.01)
    monkeypatch.setitem(app.config, "WORKER_BATCH", 5)

    def count(session, payload, w):
        runs(session, payload, w)
        time.sleep(0.001)  # long enough for the other worker to claim meanwhile

    pair = [Worker(app, name=f"thread-{i}") for i in range(2)]
    for w in pair:
        w.handlers["count"] = count
    for n in range(200):
        jobs.enqueue(db.session, kind="count", payload={"n": n})
    db.session.commit()
    threads = [threading.Thread(target=w.run, daemon=True) for w in pair]
    for thread in threads:
        thread.start()
    try:
        wait_until_done(db, 200)
    finally:
        for w in pair:
            w.stop_event.set()
        for thread in threads:
            thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert runs.by_job == {n: 1 for n in range(200)}
    assert runs.workers == {"thread-0", "thread-1"}
    assert db.session.scalar(select(func.max(Job.attempts))) == 1


def wait_for_log(process, needle: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(process.log.name) as log:
            if needle in log.read():
                return
        assert process.proc.poll() is None, "the worker exited early"
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never logged")


@pytest.mark.e2e
def test_worker_processes_run_noop_jobs_and_stop_cleanly_on_sigterm(db):
    for n in range(100):
        jobs.enqueue(db.session, kind="noop", payload={"n": n})
    db.session.commit()
    env = process_env(TEST_DATABASE_URL, TEST_REDIS_URL, f"worker-{uuid.uuid4().hex[:8]}", WORKER_POLL_S="0.05",
                      LOG_LEVEL="INFO")
    processes = [WorkerProcess(env) for _ in range(2)]
    try:
        wait_until_done(db, 100)
        for process in processes:  # a SIGTERM before the loop starts would find no handler installed yet
            wait_for_log(process, "started")
        for process in processes:
            started = time.monotonic()
            assert process.stop() == 0, open(process.log.name).read()
            assert time.monotonic() - started < 5
    finally:
        for process in processes:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(5)
    assert db.session.scalar(select(func.max(Job.attempts))) == 1
