"""The outbox worker on the real database: claiming, retries, leases, concurrency, real processes."""
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from notifications.push import PushMessage, PushOutcome
from safety_api.clock import utcnow
from safety_api.models import Delivery, Job
from safety_api.services import accounts, deliveries, devices, jobs, staff
from safety_api.worker import RetryLater, Worker, backoff
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.factories import create_user
from tests.support.fake_fcm import FakeFCM
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


def expire_leases(db):
    """Pretend every claim's lease ran out (its worker died, stopped, or took too long)."""
    db.session.execute(text("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE status = 'running'"))
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


def test_a_job_of_a_kind_this_worker_does_not_know_waits_for_one_that_does(app, db, worker, runs):
    """A rolling deploy: the new api enqueues a new kind while an old worker runs. The old one must not burn
    the job's attempts and fail it; the new one runs it."""
    enqueue(db, kind="new-kind", max_attempts=1)
    assert worker.run_once() == 0
    assert (job(db, kind="new-kind").status, job(db, kind="new-kind").attempts) == ("pending", 0)
    newer = Worker(app, name="newer")
    newer.handlers["new-kind"] = runs
    assert newer.run_once() == 1
    assert job(db, kind="new-kind").status == "done" and runs.by_job[1] == 1


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
    assert len(jobs.claim(db.session, worker="claimed-then-died", limit=10, lease_s=60, kinds=["count"])) == 1
    assert worker.run_once() == 0  # the lease still holds
    expire_leases(db)
    assert worker.run_once() == 1
    reclaimed = job(db, kind="count")
    # An attempt is a run begun: the claim that never ran used none.
    assert (reclaimed.status, reclaimed.attempts, reclaimed.locked_by) == ("done", 1, None)
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
            assert time.monotonic() - started < 15  # SIGTERM to exit, interpreter shutdown on a loaded machine included
    finally:
        for process in processes:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(5)
    assert db.session.scalar(select(func.max(Job.attempts))) == 1


# --- Retry budgets, leases lost mid-run, and the pushes they owe ---

class WorkerKilled(BaseException):
    """Stands for a SIGKILL: nothing after it in the worker runs (a BaseException escapes its handlers)."""


def run_through_deaths(db, worker, kind: str, *, rounds: int):
    """Run the worker again and again as if each run killed it (its lease then runs out), until the job of
    `kind` is no longer running or `rounds` have passed."""
    for _ in range(rounds):
        try:
            worker.run_once()
        except WorkerKilled:
            pass
        expire_leases(db)
        if job(db, kind=kind).status != "running":
            return


class Sender:
    """A stand-in for PushSender that answers every send with `status`; `during` runs while a send is on the
    wire (another worker taking the job over, the worker being killed)."""

    def __init__(self, status="retry", *, during=None):
        self.status, self.during, self.sent = status, during, 0

    def send(self, messages):
        self.sent += len(messages)
        if self.during is not None:
            self.during()
        return [PushOutcome(m.token, self.status, error=None if self.status == "delivered" else "UnavailableError")
                for m in messages]


def push_with(sender):
    """A push.deliver handler that sends through `sender`."""
    return lambda session, payload, _w: deliveries.deliver(session, delivery_id=payload["delivery_id"], sender=sender)


def plan_push(db):
    """One delivery to a registered phone and its push.deliver job, as an SOS plans them; returns the recipient."""
    recipient = create_user(db.session)
    devices.register_device(db.session, user=recipient, token="tok-1", platform="android")
    deliveries.plan(db.session, subject="incident:test", reason="sos.raised",
                    messages_by_user={recipient.id: [PushMessage(token="tok-1", platform="android")]})
    db.session.commit()
    return recipient


@pytest.mark.parametrize("left", ["signed out everywhere", "handed on", "account deleted"])
def test_a_push_whose_phone_left_its_recipient_before_the_send_is_withdrawn_unsent(db, worker, left):
    """A guardian's alert waits in backoff; meanwhile the phone stops being the guardian's. Its next holder must
    not get the ward's alert: nothing is sent and the receipt says why."""
    sender = Sender("delivered")
    worker.handlers["push.deliver"] = push_with(sender)
    recipient = plan_push(db)
    if left == "signed out everywhere":
        accounts.sign_out_everywhere(db.session, user=recipient, escalate_after_s=60)
    elif left == "handed on":
        devices.register_device(db.session, user=create_user(db.session), token="tok-1", platform="android")
    else:
        db.session.delete(recipient)
        db.session.commit()
    assert worker.run_once() == 1
    assert sender.sent == 0
    assert (delivery(db).status, job(db, kind="push.deliver").status) == ("withdrawn", "done")


def test_a_push_that_may_have_gone_before_its_phone_left_is_not_called_withdrawn(db, worker):
    """Its worker died mid-send (the delivery reads `sending`), then the phone was handed on: nothing more is
    sent, and the receipt does not claim that nothing was."""
    sender = Sender("delivered")
    worker.handlers["push.deliver"] = push_with(sender)
    plan_push(db)
    db.session.execute(text("UPDATE deliveries SET status = 'sending', attempts = 1"))
    devices.register_device(db.session, user=create_user(db.session), token="tok-1", platform="android")
    assert worker.run_once() == 1
    ended = delivery(db)
    assert sender.sent == 0 and ended.status == "failed" and "left its recipient" in ended.last_error


def delivery(db) -> Delivery:
    db.session.expire_all()
    return db.session.scalars(select(Delivery)).one()


def in_another_thread(app, work):
    """Run `work(app)` in a thread of its own (its own session) and wait for it; return what it returned."""
    result = []

    def run():
        with app.app_context():
            result.append(work())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert result, "the other worker failed"
    return result[0]


def test_claims_a_stopping_worker_never_ran_use_no_attempt(db, worker, runs):
    def count_then_stop(session, payload, w):
        runs(session, payload, w)
        w.stop_event.set()  # SIGTERM in the middle of a batch

    worker.handlers["count"] = count_then_stop
    for n in (1, 2, 3):
        enqueue(db, n=n)
    assert worker.run_once() == 3
    assert sum(runs.by_job.values()) == 1
    # ...and the two it never began are given back at once, due for any worker, not after their lease.
    left = [job(db, payload={"n": n}) for n in (1, 2, 3)]
    assert sorted((j.status, j.attempts, j.locked_by) for j in left) == [
        ("done", 1, None), ("pending", 0, None), ("pending", 0, None)]
    other = Worker(worker.app, name="other")
    other.handlers["count"] = runs
    assert other.run_once() == 2 and sum(runs.by_job.values()) == 3


def test_a_push_taken_over_after_its_lease_expired_is_tried_on_the_deliverys_budget(db, worker):
    """The reviewer's case: every round one worker claims the job and its lease runs out unrun (a batch of slow
    sends ahead of it), another takes it over and sends. The claims that never ran must cost the delivery none
    of its tries: it is sent MAX_ATTEMPTS times, then ends failed, visibly, in its receipts."""
    sender = Sender("retry")
    worker.handlers["push.deliver"] = push_with(sender)
    plan_push(db)
    for _ in range(2 * deliveries.MAX_ATTEMPTS):
        if job(db, kind="push.deliver").status != "pending":
            break
        assert len(jobs.claim(db.session, worker="outlasted-its-lease", limit=10, lease_s=60,
                               kinds=["push.deliver"])) == 1
        expire_leases(db)
        assert worker.run_once() == 1
        make_due(db)
    ended, push = job(db, kind="push.deliver"), delivery(db)
    assert (push.status, push.attempts, sender.sent) == ("failed", deliveries.MAX_ATTEMPTS, deliveries.MAX_ATTEMPTS)
    assert ended.status == "done" and ended.attempts == deliveries.MAX_ATTEMPTS
    assert [r.status for r in deliveries.receipts(db.session, subject="incident:test")] == ["failed"]


def test_a_worker_that_lost_its_push_leaves_the_outcome_to_the_one_that_took_it_over(app, db, worker):
    """A's send outlasts its lease; B takes the job over and delivers the push meanwhile. A's late "retry" must
    neither put the delivery back to pending nor the job back in the queue: no third send."""
    taker = Worker(app, name="took-over")
    taken_sender = Sender("delivered")
    taker.handlers["push.deliver"] = push_with(taken_sender)

    def take_over():
        expire_leases(db)
        return taker.run_once()

    taken = []
    slow_sender = Sender("retry", during=lambda: taken.append(in_another_thread(app, take_over)))
    worker.handlers["push.deliver"] = push_with(slow_sender)
    plan_push(db)
    assert worker.run_once() == 1 and taken == [1]
    make_due(db)
    assert worker.run_once() == 0 and taker.run_once() == 0
    push, ended = delivery(db), job(db, kind="push.deliver")
    assert (push.status, push.attempts) == ("delivered", 2)
    assert (ended.status, ended.locked_by) == ("done", None)
    # Two sends: the one on the wire when A lost its lease, and B's. At-least-once, never a third.
    assert (slow_sender.sent, taken_sender.sent) == (1, 1)


@pytest.mark.parametrize("late", ["finishes", "fails"])
def test_a_job_taken_over_while_it_ran_keeps_the_outcome_of_the_worker_that_holds_it(app, db, worker, late):
    """A runs a job past its lease and B takes it over and finishes it. A's late outcome must not count: neither
    A's effects (they would commit twice) nor A's failure (it would put a done job back in the queue)."""
    taker = Worker(app, name="took-over")
    taker.handlers["slow"] = lambda session, payload, _w: jobs.enqueue(session, kind="count", payload={"n": 2})

    def take_over():
        expire_leases(db)
        return taker.run_once()

    def slow(session, payload, _w):
        assert in_another_thread(app, take_over) == 1
        jobs.enqueue(session, kind="count", payload={"n": 1})
        if late == "fails":
            raise ValueError("too late")

    worker.handlers["slow"] = slow
    enqueue(db, kind="slow")
    assert worker.run_once() == 1
    ended = job(db, kind="slow")
    assert (ended.status, ended.attempts, ended.last_error) == ("done", 2, None)
    assert [j.payload for j in db.session.scalars(select(Job).filter_by(kind="count"))] == [{"n": 2}]
    make_due(db)
    assert worker.run_once() == 1 and job(db, kind="slow").status == "done"  # only B's follow-up ran


def test_a_job_that_kills_its_worker_ends_failed_after_its_last_attempt(db, worker, runs):
    def kills(session, payload, w):
        runs(session, payload, w)
        raise WorkerKilled

    worker.handlers["kills"] = kills
    enqueue(db, kind="kills", max_attempts=3)
    run_through_deaths(db, worker, "kills", rounds=6)
    failed = job(db, kind="kills")
    assert runs.by_job == {1: 3}
    assert (failed.status, failed.attempts, failed.locked_by) == ("failed", 3, None)
    assert "never ended" in failed.last_error


def test_a_push_whose_send_kills_its_worker_is_tried_on_its_budget_then_failed(db, worker):
    def killed():
        raise WorkerKilled

    sender = Sender("retry", during=killed)
    worker.handlers["push.deliver"] = push_with(sender)
    plan_push(db)
    run_through_deaths(db, worker, "push.deliver", rounds=2 * deliveries.MAX_ATTEMPTS + 2)
    push, ended = delivery(db), job(db, kind="push.deliver")
    assert (push.status, push.attempts, sender.sent) == ("failed", deliveries.MAX_ATTEMPTS, deliveries.MAX_ATTEMPTS)
    assert ended.status in ("done", "failed") and ended.locked_by is None


def test_a_push_job_that_ends_failed_fails_its_delivery_in_the_same_transaction(db, worker):
    def unreadable(_session, _payload, _w):
        raise RuntimeError("the payload is unreadable")

    worker.handlers["push.deliver"] = unreadable
    plan_push(db)
    db.session.execute(text("UPDATE jobs SET max_attempts = 2"))
    db.session.commit()
    for _ in range(2):
        assert worker.run_once() == 1
        make_due(db)
    ended, push = job(db, kind="push.deliver"), delivery(db)
    assert (ended.status, ended.last_error) == ("failed", "RuntimeError: the payload is unreadable")
    assert (push.status, push.attempts) == ("failed", 0)
    assert "RuntimeError: the payload is unreadable" in push.last_error
    assert [r.status for r in deliveries.receipts(db.session, subject="incident:test")] == ["failed"]


@pytest.mark.parametrize("retry_after", ["inf", "1e400", "99999999999999", "nan", "-5"])
def test_an_absurd_retry_after_postpones_a_push_by_a_bounded_delay(app, db, worker, monkeypatch, retry_after):
    """FCM's Retry-After goes into the job's run_at: an infinite or huge one must neither overflow (the job would
    stay running, the batch abandoned) nor park an SOS push for ever. Real sender, a stand-in FCM server."""
    with FakeFCM() as fcm:
        monkeypatch.setitem(app.config, "FCM_ENDPOINT", fcm.url)
        fcm.fail_token("tok-1", "QUOTA_EXCEEDED", retry_after=retry_after)
        plan_push(db)
        assert worker.run_once() == 1
        assert len(fcm.sent()) == 1
    waiting, push = job(db, kind="push.deliver"), delivery(db)
    assert (waiting.status, waiting.locked_by, push.status, push.attempts) == ("pending", None, "pending", 1)
    assert utcnow() <= waiting.run_at <= utcnow() + timedelta(seconds=deliveries.MAX_RETRY_AFTER_S + 5)


@pytest.mark.parametrize("delay_s", [float("inf"), 1e300, float("nan")])
def test_retry_later_with_an_unbounded_delay_is_capped(db, worker, delay_s):
    def not_yet(_session, _payload, _w):
        raise RetryLater("waiting", delay_s=delay_s)

    worker.handlers["wait"] = not_yet
    enqueue(db, kind="wait")
    assert worker.run_once() == 1
    waiting = job(db, kind="wait")
    assert (waiting.status, waiting.locked_by) == ("pending", None)
    assert waiting.run_at <= utcnow() + timedelta(seconds=jobs.MAX_DELAY_S + 5)


def by_token(db) -> dict:
    db.session.expire_all()
    return {d.token: d.status for d in db.session.scalars(select(Delivery))}


@pytest.mark.parametrize("lost", ["guardian link ended", "operator suspended", "operator moved", "operator off duty"])
def test_a_push_waiting_for_its_send_goes_only_to_who_still_may_receive_it(app, db, worker, lost):
    """An SOS alert is planned for the district's operators and the caller's guardians, then waits (a retry in
    backoff, a busy worker). Whoever lost the right to it in between (the rows are changed behind the services'
    backs, as a race with the send would leave them) is not sent the caller's position; the others are."""
    from safety_api.services import guardians, sos_raise
    sender = Sender("delivered")
    worker.handlers["push.deliver"] = push_with(sender)
    caller, guardian = create_user(db.session), create_user(db.session)
    operator = create_user(db.session, role="operator")
    staff.set_duty(db.session, user=operator, on_duty=True, escalate_after_s=60)
    link = guardians.invite(db.session, protected=caller, guardian_phone=guardian.phone)
    guardians.accept(db.session, guardian=guardian, link_id=link.id)
    for person, token in ((guardian, "guardian-phone"), (operator, "operator-phone")):
        devices.register_device(db.session, user=person, token=token, platform="android")
    sos_raise.raise_sos(db.session, caller=caller, lat=37.4705, lon=126.9190, accuracy_m=10, trigger="button",
                        idempotency_key=None, escalate_after_s=3600)
    change = {"guardian link ended": "UPDATE guardian_links SET status = 'pending' WHERE id = :link",
              "operator suspended": "UPDATE users SET suspended_at = now() WHERE id = :operator",
              "operator moved": "UPDATE users SET district_code = '11680' WHERE id = :operator",
              "operator off duty": "UPDATE users SET on_duty = false WHERE id = :operator"}[lost]
    db.session.execute(text(change), {"link": link.id, "operator": operator.id})
    db.session.commit()
    while worker.run_once():
        pass
    lost_token = "guardian-phone" if lost.startswith("guardian") else "operator-phone"
    kept_token = ({"guardian-phone", "operator-phone"} - {lost_token}).pop()
    assert by_token(db) == {lost_token: "withdrawn", kept_token: "delivered"}
    assert sender.sent == 1


def test_a_push_lives_for_its_time_to_live_from_when_it_was_planned_not_from_each_retry(db, worker):
    """An SOS alert (15 minutes to live) that waited out an FCM outage goes with what is left of its life, and
    once that is spent it is given up, visibly, instead of popping up as a new alarm long after."""
    class Recording(Sender):
        def send(self, messages):
            self.ttls = [m.ttl_s for m in messages]
            return super().send(messages)

    sender = Recording("delivered")
    worker.handlers["push.deliver"] = push_with(sender)
    recipient = plan_push(db)
    db.session.execute(text("UPDATE deliveries SET message = jsonb_set(message, '{ttl_s}', '900'), "
                            "created_at = now() - interval '10 minutes'"))
    db.session.commit()
    assert worker.run_once() == 1
    assert 295 <= sender.ttls[0] <= 300 and delivery(db).status == "delivered"

    deliveries.plan(db.session, subject="incident:test", reason="sos.raised", messages_by_user={
        recipient.id: [PushMessage(token="tok-1", platform="android", ttl_s=900)]})
    db.session.execute(text("UPDATE deliveries SET created_at = now() - interval '16 minutes' "
                            "WHERE status = 'pending'"))
    db.session.commit()
    sender.sent = 0
    assert worker.run_once() == 1
    db.session.expire_all()
    late = db.session.scalars(select(Delivery).order_by(Delivery.id.desc())).first()
    assert sender.sent == 0 and late.status == "failed" and "time to live" in late.last_error


def test_the_retention_purge_deletes_finished_jobs_past_their_time_and_is_queued_when_a_worker_starts(app, db,
                                                                                                         worker):
    for n, (status, days) in enumerate([("done", 40), ("failed", 40), ("done", 5), ("pending", 40)]):
        enqueue(db, n=n)
        db.session.execute(text("UPDATE jobs SET status = :s, finished_at = now() - make_interval(days => :d) "
                                "WHERE payload->>'n' = :n"), {"s": status, "d": days, "n": str(n)})
    db.session.commit()
    assert jobs.purge_finished(db.session, now=utcnow(), retention_days=30, batch=1) == 2
    left = sorted(db.session.execute(select(Job.status, Job.payload["n"].as_integer())).all())
    assert left == [("done", 2), ("pending", 3)]
    worker.keep_retention_scheduled()
    worker.keep_retention_scheduled()  # a second worker starting asks for the same one
    assert db.session.scalar(select(func.count()).select_from(Job).where(Job.kind == "fixes.purge")) == 1


def test_older_news_waiting_for_a_retry_is_not_sent_over_newer_news_to_the_same_phone(db, worker):
    """An escort's `confirmed` waited out a failure while its `cancelled` went out: the phone keeps one
    notification per booking, and must be left showing the cancellation."""
    sender = Sender("delivered")
    worker.handlers["push.deliver"] = push_with(sender)
    scout = create_user(db.session, role="scout")
    devices.register_device(db.session, user=scout, token="scout-phone", platform="android")
    for body in ("confirmed", "cancelled"):
        deliveries.plan(db.session, subject="escort:b-1", reason=f"escort.{body}", messages_by_user={
            scout.id: [PushMessage(token="scout-phone", platform="android", body=body, collapse_key="escort-b-1")]})
    deliveries.plan(db.session, subject="escort:b-2", reason="escort.confirmed", messages_by_user={
        scout.id: [PushMessage(token="scout-phone", platform="android", collapse_key="escort-b-2")]})
    db.session.commit()
    while worker.run_once():
        pass
    db.session.expire_all()
    states = [(d.reason, d.subject, d.status) for d in db.session.scalars(select(Delivery).order_by(Delivery.id))]
    assert states == [("escort.confirmed", "escort:b-1", "withdrawn"), ("escort.cancelled", "escort:b-1", "delivered"),
                      ("escort.confirmed", "escort:b-2", "delivered")]
    assert sender.sent == 2


def test_news_expanded_late_by_a_busy_worker_is_still_older_news(db, worker):
    """Escort pushes are expanded into deliveries when a worker runs their push.user job: a busy worker may
    expand the `confirmed` after another expanded the later `cancelled`. Newer is by when the news happened."""
    sender = Sender("delivered")
    worker.handlers["push.deliver"] = push_with(sender)
    scout = create_user(db.session, role="scout")
    devices.register_device(db.session, user=scout, token="scout-phone", platform="android")
    confirmed_at = utcnow() - timedelta(seconds=30)
    for event, planned_at in (("cancelled", confirmed_at + timedelta(seconds=10)), ("confirmed", confirmed_at)):
        deliveries.expand_user_push(db.session, user_ids=[scout.id], title=event, body=event, planned_at=planned_at,
                                    data={"type": "escort", "id": "b-1", "event": event})
    db.session.commit()
    while worker.run_once():
        pass
    db.session.expire_all()
    assert {d.reason: d.status for d in db.session.scalars(select(Delivery))} == {
        "escort.cancelled": "delivered", "escort.confirmed": "withdrawn"}
