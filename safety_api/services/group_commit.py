"""Group commit for location fixes: every caller validates its own fixes, then the fixes of all the callers
waiting at that moment are written in one transaction by one of a few writer threads.

A phone's `location` event costs a few milliseconds of Python; five round trips to PostgreSQL and two to
Redis per event, each a wait for the GIL among hundreds of socket threads, cost far more. Here one INSERT
stores a whole group's fixes, one commit makes them durable, one Redis round trip sets the live positions,
and each caller is answered after its group's commit, so an ack still means stored. Under load the groups
grow by themselves: whoever arrives while one group is being written joins the next.

Walks (`walk_ingest`) and SOS incidents (`sos_ingest`) each plug in how a group is written and published.
"""
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Session
from sqlalchemy.types import DateTime, Float, String

from safety_api.errors import Unavailable
from safety_api.services.fixes import LIVE_TTL_S

log = logging.getLogger(__name__)
GROUP_MAX = 500  # callers per transaction
WRITERS = 2  # groups written at once: each waits on the database most of its time
WAIT_S = 15.0  # a caller gives up (503) when the database has not answered by then
# Set the live position only if it is newer than the one there: atomic, unlike GET then SET.
LIVE_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['t'] >= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


# One statement text whatever the group's size: PostgreSQL and psycopg prepare it once. A multi-row VALUES
# list is a new statement for every row count, parsed and planned afresh (a quarter of the api's CPU).
_INSERT_FIXES = text("""
    INSERT INTO location_fixes (subject_kind, subject_id, user_id, lat, lon, accuracy_m, t, incident_id)
    SELECT * FROM unnest(:subject_kind, :subject_id, :user_id, :lat, :lon, :accuracy_m, :t, :incident_id)
    ON CONFLICT ON CONSTRAINT uq_location_fixes_subject_t DO NOTHING
    RETURNING subject_id, t
""").bindparams(
    bindparam("subject_kind", type_=ARRAY(String)), bindparam("subject_id", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("user_id", type_=ARRAY(UUID(as_uuid=True))), bindparam("lat", type_=ARRAY(Float)),
    bindparam("lon", type_=ARRAY(Float)), bindparam("accuracy_m", type_=ARRAY(Float)),
    bindparam("t", type_=ARRAY(DateTime(timezone=True))), bindparam("incident_id", type_=ARRAY(UUID(as_uuid=True))))
_COLUMNS = ("subject_kind", "subject_id", "user_id", "lat", "lon", "accuracy_m", "t", "incident_id")


def insert_fixes(session, rows: list[dict]) -> set:
    """Store a group's fixes in one statement; returns the (subject_id, t) pairs that were new (a resent fix
    is a duplicate by (kind, subject, t))."""
    if not rows:
        return set()
    columns = {name: [row[name] for row in rows] for name in _COLUMNS}
    return {(subject_id, t) for subject_id, t in session.execute(_INSERT_FIXES, columns)}


def set_live_positions(redis_client, live_if_newer, kind: str, newest: list):
    """The newest position of each subject, (subject_id, Fix) pairs, in one Redis round trip; the script
    (LIVE_IF_NEWER, registered on this client) never lets a late fix replace a newer one."""
    pipe = redis_client.pipeline(transaction=False)
    for subject_id, fix in newest:
        live_if_newer(keys=[f"live:{kind}:{subject_id}"], client=pipe,
                      args=[json.dumps(fix.as_dict()), fix.t.isoformat(), LIVE_TTL_S])
    pipe.execute()


@dataclass(frozen=True)
class Person:
    """Who sent the fixes, as the writer needs them: plain values, no session attached."""

    id: object
    name: str


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


def writer_for(app, name: str, factory: Callable[[], "GroupWriter"]) -> "GroupWriter":
    """The app's writer of this name (one per serving process), created on first use."""
    with _lock:
        key = f"group_writer:{name}"
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
