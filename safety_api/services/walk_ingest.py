"""Walk fixes in, by group commit: every caller validates its own fixes, then the fixes of all the
callers waiting at that moment are written in one transaction by one of a few writer threads.

One statement locks their walks (`FOR UPDATE`, in id order, so two processes never deadlock), one
INSERT stores every fix (a resent fix is a duplicate by (walk, t)), the monitors fold each walk's new
fixes in, one commit; then one Redis round trip sets the live positions and the positions join the
watchers' next batch. A caller returns after its group's commit, so an ack still means stored. Under
load the groups grow by themselves: whoever arrives while one group is being written joins the next.
"""
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from safety_api.errors import DomainError, Unavailable
from safety_api.models import Incident, LocationFix, Walk
from safety_api.policy import check_walker
from safety_api.realtime import events, rooms
from safety_api.realtime.positions import batcher
from safety_api.services import fixes
from safety_api.services.walk_monitor import ENDED, fold, lock_options, tell

log = logging.getLogger(__name__)
GROUP_MAX = 500  # fixes' callers per transaction
WRITERS = 2  # groups written at once: each waits on the database most of its time
WAIT_S = 15.0  # a caller gives up (503) when the database has not answered by then
# Set the live position only if it is newer than the one there: atomic, unlike GET then SET.
LIVE_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['t'] >= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class Person:
    """The walker as the group writer needs them: plain values, no session attached."""

    id: object
    name: str


@dataclass
class Submission:
    """One caller's validated fixes for one walk, and, once written, the answer or the error."""

    walk_id: object
    person: Person
    valid: list
    rejected: list
    now: datetime
    done: threading.Event = field(default_factory=threading.Event)
    result: dict | None = None
    error: BaseException | None = None


def record_fixes(session, redis_client, *, user, walk_id, raw_fixes, now: datetime) -> dict:
    """Validate the walker's fixes, have them written with everyone else's, answer with the counts."""
    valid, rejected = fixes.validate(raw_fixes, now=now)
    person = Person(user.id, user.name)
    session.rollback()  # hand the connection back while waiting: hundreds of sockets may wait at once
    return writer_for(current_app, session.get_bind(), redis_client).submit(
        Submission(walk_id=walk_id, person=person, valid=valid, rejected=rejected, now=now))


_writers_lock = threading.Lock()


def writer_for(app, engine, redis_client) -> "GroupWriter":
    """The app's writer (one per serving process), created on first use."""
    with _writers_lock:
        writer = app.extensions.get("walk_fix_writer")
        if writer is None:
            writer = app.extensions["walk_fix_writer"] = GroupWriter(app._get_current_object(), engine, redis_client)
        return writer


class GroupWriter:
    """A few threads that each write whatever callers are waiting, one transaction per group. Groups
    written at once never deadlock: each locks its walks in id order."""

    def __init__(self, app, engine, redis_client, writers: int = WRITERS):
        self.app, self.engine, self.redis = app, engine, redis_client
        self.live_if_newer = redis_client.register_script(LIVE_IF_NEWER)
        self._waiting: queue.SimpleQueue = queue.SimpleQueue()
        for n in range(writers):
            threading.Thread(target=self._run, name=f"walk-fixes-writer-{n}", daemon=True).start()

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
                for published, notices in self._commit(group):
                    self._publish(published)
                    try:
                        tell(notices)
                    except Exception:  # the socket notice is best effort: the pushes are durable jobs
                        log.warning("walk notices not sent", exc_info=True)
            finally:
                for submission in group:
                    submission.done.set()

    def _commit(self, group: list) -> list:
        """One transaction for the group; if it fails, one per submission, so that one bad submission fails
        alone. Only a failed transaction is retried: a committed fix is never written again."""
        try:
            return [self._transaction(group)]
        except Exception:
            log.warning("a group of %d walk submissions failed; writing them one by one", len(group), exc_info=True)
        committed = []
        for submission in group:
            try:
                committed.append(self._transaction([submission]))
            except Exception as exc:  # reported to its caller, mapped to problem+json there
                submission.error = exc
        return committed

    def _transaction(self, group: list) -> tuple[list, list]:
        with Session(self.engine, expire_on_commit=False) as session:
            return write_group(session, group)

    def _publish(self, published: list):
        """Live positions in one Redis round trip; the watchers' batches in memory."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for walk_key, newest, _ in published:
                self.live_if_newer(keys=[f"live:walk:{walk_key}"], client=pipe,
                                   args=[json.dumps(newest.as_dict()), newest.t.isoformat(), fixes.LIVE_TTL_S])
            pipe.execute()
        except Exception:  # Redis down: PostgreSQL has the fixes; the live map catches up later
            log.warning("live positions not set", exc_info=True)
        for _, _, targets in published:
            for namespace, room, event, item in targets:
                batcher.add(namespace=namespace, room=room, event=event, item=item)


def write_group(session, group: list) -> tuple[list, list]:
    """Lock, insert, fold and commit one group; returns (positions to publish, socket notices)."""
    walks = {w.id: w for w in session.scalars(
        select(Walk).where(Walk.id.in_({s.walk_id for s in group})).order_by(Walk.id)
        .with_for_update(of=Walk).options(*lock_options()))}
    plans, rows, incidents = [], [], {}
    for submission in group:
        walk = walks.get(submission.walk_id)
        try:
            check_walker(submission.person, walk)
        except DomainError as exc:
            submission.error = exc
            continue
        if walk.status == "escalated" and walk.id not in incidents:
            incidents[walk.id] = _incident_of(session, walk.id)
        valid, after_end = _split_after_end(walk, submission.valid)
        rows += [_row(walk, submission.person, f, incidents.get(walk.id)) for f in valid]
        plans.append((submission, walk, valid, after_end))
    stored = _insert(session, rows)
    notices, newest = [], {}
    for submission, walk, valid, after_end in plans:
        fresh = [f for f in valid if (walk.id, f.t) in stored]
        stored.difference_update((walk.id, f.t) for f in fresh)  # a fix sent twice in one group counts once
        if walk.status == "active":
            notices += fold(session, walk, fresh, now=submission.now, walker=submission.person)
        if _advance_last_fix(walk, fresh):
            newest[walk.id] = walk
        submission.result = _counts(submission, valid, fresh, after_end)
    published = [(str(w.id), _last(w), _targets(w, incidents.get(w.id))) for w in newest.values()]
    session.commit()
    return published, notices


def _row(walk: Walk, person: Person, fix: fixes.Fix, incident) -> dict:
    return {"subject_kind": "walk", "subject_id": walk.id, "user_id": person.id, "lat": fix.lat, "lon": fix.lon,
            "accuracy_m": fix.accuracy_m, "t": fix.t, "incident_id": incident.id if incident else None}


def _insert(session, rows: list) -> set:
    """Store every fix of the group in one statement; returns the (walk, t) pairs that were new."""
    if not rows:
        return set()
    stmt = insert(LocationFix).on_conflict_do_nothing(constraint="uq_location_fixes_subject_t") \
        .returning(LocationFix.subject_id, LocationFix.t)
    return {(walk_id, t) for walk_id, t in session.execute(stmt, rows)}


def _counts(submission: Submission, valid: list, fresh: list, after_end: list) -> dict:
    errors = submission.rejected + [{"t": f.t.isoformat(), "reason": "after the walk ended"} for f in after_end]
    return {"accepted": len(fresh), "rejected": len(errors), "duplicates": len(valid) - len(fresh), "errors": errors}


def _split_after_end(walk: Walk, valid: list) -> tuple[list, list]:
    """Late fixes of an ended walk still fill its trail; fixes from after its end do not belong to it."""
    if walk.status not in ENDED:
        return valid, []
    return [f for f in valid if f.t <= walk.ended_at], [f for f in valid if f.t > walk.ended_at]


def _incident_of(session, walk_id):
    return session.execute(select(Incident.id, Incident.district_code).where(Incident.walk_id == walk_id)
                           .limit(1)).first()


def _advance_last_fix(walk: Walk, fresh: list) -> bool:
    """Keep the newest fix on the walk; a late fix never replaces a newer one."""
    newest = max(fresh, key=lambda f: f.t, default=None)
    if newest is None or (walk.last_fix and datetime.fromisoformat(walk.last_fix["t"]) >= newest.t):
        return False
    walk.last_fix = newest.as_dict()
    return True


def _last(walk: Walk) -> fixes.Fix:
    last = walk.last_fix
    return fixes.Fix(last["lat"], last["lon"], last["accuracy_m"], datetime.fromisoformat(last["t"]))


def _targets(walk: Walk, incident) -> list:
    """Where the newest position goes: the walk's watchers and, once escalated, the incident's operators."""
    item = {"kind": "walk", "id": str(walk.id), **walk.last_fix}
    targets = [(events.MOBILE, rooms.walk(walk.id), events.WALK_POSITION, item)]
    if incident is not None:  # as an "sos" item, so the console moves the incident's pin
        room = rooms.district(incident.district_code) if incident.district_code else rooms.CENTRAL
        targets.append((events.CONTROL, room, events.POSITIONS,
                        {**item, "kind": "sos", "id": str(incident.id), "walk_id": str(walk.id)}))
    return targets
