"""Group commit for location fixes: every caller validates its own fixes, then the fixes of all the callers
waiting at that moment are written in one transaction by one of a few writer threads.

A phone's `location` event costs a few milliseconds of Python; five round trips to PostgreSQL and two to
Redis per event, each a wait for the GIL among hundreds of socket threads, cost far more. Here one INSERT
stores a whole group's fixes, one commit makes them durable, one Redis round trip sets the live positions,
and each caller is answered after its group's commit, so an ack still means stored. Under load the groups
grow by themselves: whoever arrives while one group is being written joins the next.

Walks (`walk_ingest`) and SOS incidents (`sos_ingest`) each plug in how a group is written and published.
"""
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy.orm import Session

from safety_api.errors import Unavailable

log = logging.getLogger(__name__)
GROUP_MAX = 500  # callers per transaction
WRITERS = 2  # groups written at once: each waits on the database most of its time
WAIT_S = 15.0  # a caller gives up (503) when the database has not answered by then
ALARM_YIELD_S = 0.05  # the longest the writers hold back a group while an alarm is being raised


@dataclass(frozen=True)
class Person:
    """Who sent the fixes, as the writer needs them: plain values, no session attached."""

    id: object
    name: str
    role: str  # escort positions are judged by role before their booking id


@dataclass
class Submission:
    """One caller's validated fixes for one subject (a walk, an incident), and, once written, the answer or
    the error."""

    subject_id: object
    person: Person
    valid: list
    rejected: list
    now: datetime
    done: threading.Event = field(default_factory=threading.Event)
    result: dict | None = None
    error: BaseException | None = None


class AlarmLane:
    """While an alarm is being raised in this process, the location writers hold back their next group.

    A process that holds hundreds of phones spends most of its GIL writing their fixes; an SOS request
    that lands there waits for the GIL after each of its round trips. The writers are the one part of that
    load that can wait: a group held back a few milliseconds only delays some acks, and never for longer
    than ALARM_YIELD_S, so a flood of alarms cannot starve the fixes."""

    def __init__(self):
        self._raising = 0
        self._clear = threading.Condition()

    def __enter__(self):
        with self._clear:
            self._raising += 1

    def __exit__(self, *exc_info):
        with self._clear:
            self._raising -= 1
            if not self._raising:
                self._clear.notify_all()

    def wait_clear(self, timeout_s: float = ALARM_YIELD_S):
        with self._clear:
            self._clear.wait_for(lambda: not self._raising, timeout_s)


alarm_lane = AlarmLane()


def writer_for(app, name: str, factory: Callable[[], "GroupWriter"]) -> "GroupWriter":
    """The app's writer of this name (one per serving process), created on first use. Every fix comes through
    here, so the lock is taken only to create it, not to find it."""
    key = f"group_writer:{name}"
    writer = app.extensions.get(key)
    if writer is None:
        with _lock:
            writer = app.extensions.get(key)
            if writer is None:
                writer = app.extensions[key] = factory()
    return writer


_lock = threading.Lock()


class GroupWriter:
    """A few threads that each write whatever callers are waiting, one transaction per group.

    `write(session, group)` stores the group and commits, setting each submission's result (or error), and
    returns what the commit owes the live map; `publish(owed)` delivers it (best effort, never raises)."""

    def __init__(self, app, engine, *, name: str, write: Callable, publish: Callable, writers: int = WRITERS):
        self.app, self.engine, self.write, self.publish = app, engine, write, publish
        self._waiting: queue.SimpleQueue = queue.SimpleQueue()
        for n in range(writers):
            threading.Thread(target=self._run, name=f"{name}-writer-{n}", daemon=True).start()

    def submit(self, submission: Submission) -> dict:
        """Queue and wait for the group's commit; the caller's own error comes back as raised."""
        self._waiting.put(submission)
        if not submission.done.wait(WAIT_S):
            raise Unavailable("The location store is busy; send these fixes again.")
        if submission.error is not None:
            raise submission.error
        return submission.result

    def _run(self):
        while True:
            group = [self._waiting.get()]
            alarm_lane.wait_clear()  # an SOS being raised goes first; whoever arrives meanwhile joins this group
            while len(group) < GROUP_MAX:
                try:
                    group.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            self._write(group)

    def _write(self, group: list):
        """Commit the group, publish what the commits owe, then release its callers (an ack means stored)."""
        with self.app.app_context():  # emits and the position batcher belong to the app
            try:
                for owed in self._commit(group):
                    try:
                        self.publish(owed)
                    except Exception:  # the live map is best effort: PostgreSQL has the fixes
                        log.warning("live positions not published", exc_info=True)
            finally:
                for submission in group:
                    submission.done.set()

    def _commit(self, group: list) -> list:
        """One transaction for the group; if it fails, one per submission, so that one bad submission fails
        alone. Only a failed transaction is retried: a committed fix is never written again."""
        try:
            return [self._transaction(group)]
        except Exception:
            log.warning("a group of %d location submissions failed; writing them one by one", len(group),
                        exc_info=True)
        committed = []
        for submission in group:
            try:
                committed.append(self._transaction([submission]))
            except Exception as exc:  # reported to its caller, mapped to problem+json there
                submission.error = exc
        return committed

    def _transaction(self, group: list):
        with Session(self.engine, expire_on_commit=False) as session:
            return self.write(session, group)
