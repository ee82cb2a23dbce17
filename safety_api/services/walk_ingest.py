"""Walk fixes in, by group commit (`group_commit`): one statement locks the group's walks (`FOR UPDATE`, in
id order, so two processes never deadlock), one INSERT stores every fix (a resent fix is a duplicate by
(walk, t)), the monitors fold each walk's new fixes in, one commit; then one Redis round trip sets the live
positions and the positions join the watchers' next batch.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from safety_api.errors import DomainError
from safety_api.models import Incident, Walk
from safety_api.policy import check_walker
from safety_api.realtime import events, rooms
from safety_api.realtime.positions import batcher
from safety_api.services import fixes
from safety_api.services.fixes import insert_fixes, set_live_positions
from safety_api.services.group_commit import (
    GroupWriter,
    Person,
    Submission,
    writer_for,
)
from safety_api.services.sos_ingest import ADVANCE_LAST_FIX
from safety_api.services.walk_monitor import (
    ENDED,
    allowed_guardians,
    clock_offset_s,
    fold,
    lock_options,
    position_rooms,
    seconds,
    tell,
    walk_opened,
)


def record_fixes(session, redis_client, *, user, walk_id, raw_fixes, now: datetime) -> dict:
    """Validate the walker's fixes, have them written with everyone else's, answer with the counts."""
    valid, rejected = fixes.validate(raw_fixes, now=now)
    person = Person(user.id, user.name, user.role)
    session.rollback()  # hand the connection back while waiting: hundreds of sockets may wait at once
    app = current_app._get_current_object()
    writer = writer_for(app, "walk-fixes", lambda: _walk_writer(app, session.get_bind(), redis_client))
    return writer.submit(WalkSubmission(subject_id=walk_id, person=person, valid=valid, rejected=rejected, now=now,
                                        raw=raw_fixes))


@dataclass
class WalkSubmission(Submission):
    """A walk's submission keeps its raw fixes: validation sorts the valid ones by time, and the rare answer
    about fixes from before the walk's start or after its end must still name them by their index in the batch."""

    raw: list = field(default_factory=list)


def _walk_writer(app, engine, redis_client) -> GroupWriter:
    def publish(owed):
        """Live positions in one Redis round trip, the watchers' batches in memory, then the monitors' news."""
        published, notices = owed
        try:
            set_live_positions(redis_client, "walk", [(key, fix) for key, fix, _ in published])
        finally:  # Redis down: PostgreSQL has the fixes and the batches still go out
            for _, _, targets in published:
                for namespace, room, event, item in targets:
                    batcher.add(namespace=namespace, room=room, event=event, item=item)
            if any(notice.event == events.WALK_ENDED for notice in notices):
                batcher.flush()  # the arriving fix before the news that the walk ended, not a flush after it
            tell(notices)

    return GroupWriter(app, engine, name="walk-fixes", write=write_group, publish=publish)


def write_group(session, group: list) -> tuple[list, list]:
    """Lock, insert, fold and commit one group; returns (positions to publish, socket notices)."""
    walks = {w.id: w for w in session.scalars(
        select(Walk).where(Walk.id.in_({s.subject_id for s in group})).order_by(Walk.id)
        .with_for_update(of=Walk).options(*lock_options()))}
    plans, rows, incidents = [], [], {}
    for submission in group:
        walk = walks.get(submission.subject_id)
        try:
            check_walker(submission.person, walk)
        except DomainError as exc:
            submission.error = exc
            continue
        # Once escalated, always evidence: a walk finished after its SOS still files late fixes under the
        # incident, or retention would purge them.
        if walk.escalated_at is not None and walk.id not in incidents:
            incidents[walk.id] = _incidents_of(session, walk.id)
        # Every fix of the upload says the phone is alive, and how slow its clock is, refused or not.
        heard = [seconds(f.t) for f in submission.valid]
        valid, refused = _split_by_span(walk, submission.valid,
                                        clock_offset_s=clock_offset_s(walk, heard, now=submission.now))
        rows += [_row(walk, submission.person, f, incidents.get(walk.id, ())) for f in valid]
        plans.append((submission, walk, valid, refused, heard))
    stored = insert_fixes(session, rows)
    notices, newest, advances = [], {}, []
    for submission, walk, valid, refused, heard in plans:
        # dict by t: a fix repeated in the batch (fixes.validate keeps it) is new once, the other a duplicate
        fresh = list({f.t: f for f in valid if (walk.id, f.t) in stored}.values())
        stored.difference_update((walk.id, f.t) for f in fresh)  # a fix sent twice in one group counts once
        if walk.status == "active":
            notices += fold(session, walk, fresh, heard=heard, now=submission.now, walker=submission.person)
        if _advance_last_fix(walk, fresh):
            newest[walk.id] = walk
        advances += _advances(incidents.get(walk.id, ()), fresh)
        submission.result = _counts(submission, valid, fresh, refused)
    if advances:
        session.execute(ADVANCE_LAST_FIX, advances)
    # Who may see them is read here, with the walks locked, for every batch: a guardian whose link ended
    # since the last one is simply not addressed any more.
    allowed = allowed_guardians(session, list(newest))
    # Operators follow the walker while the SOS is the walk's present; late fixes of a finished walk are
    # evidence (stored with the incident above), not news for the console.
    published = [(str(w.id), _last(w), _targets(w, allowed.get(w.id, ()), _followed(w, incidents.get(w.id, ()))))
                 for w in newest.values()]
    session.commit()
    return published, notices


def _row(walk: Walk, person: Person, fix: fixes.Fix, sos: list) -> dict:
    filed = _filed_under(sos, fix)
    return {"subject_kind": "walk", "subject_id": walk.id, "user_id": person.id, "lat": fix.lat, "lon": fix.lon,
            "accuracy_m": fix.accuracy_m, "t": fix.t, "incident_id": filed.id if filed else None}


def _filed_under(sos: list, fix: fixes.Fix):
    """The incident (of the walk's, newest first) whose evidence the fix is: the newest one it belongs to. A walk
    watched again after its SOS closed may escalate again (walk_sos)."""
    return next((incident for incident in sos if _files_under(incident, fix)), None)


def _files_under(incident, fix: fixes.Fix) -> bool:
    """A walk's fix is its SOS's evidence if taken while the SOS was open (a late one included). Once the
    caller cancelled it or an operator resolved it, what the walker does next is an ordinary walk again:
    not the operators' to follow, and purged by retention like any other fix."""
    return incident is not None and (incident.closed_at is None or fix.t <= incident.closed_at)


def _followed(walk: Walk, sos: list) -> list:
    """The incidents whose operators follow the walker now: the walk's SOS still open for them (after a duress
    PIN too, though the walk is watched again as after a cancel), while the walk goes on."""
    if walk.status in ENDED:
        return []
    return [incident for incident in sos if incident.closed_at is None]


def _advances(sos: list, fresh: list) -> list:
    """The walk's SOS follows the walker too: its last_fix is what operators see on opening it. Each incident
    moves to the newest of the fixes filed under it, and one still open for the operators to the newest fix."""
    found = []
    for incident in sos:
        mine = [f for f in fresh if _files_under(incident, f)
                and (incident.closed_at is None or _filed_under(sos, f) is incident)]
        if mine:
            latest = max(mine, key=lambda f: f.t)
            found.append({"id": incident.id, "fix": latest.as_dict(), "t": latest.t.isoformat()})
    return found


def _counts(submission: Submission, valid: list, fresh: list, refused: dict) -> dict:
    errors = submission.rejected
    if refused:
        errors = sorted(errors + _refused_errors(submission, refused), key=lambda e: e["index"])
    return {"accepted": len(fresh), "rejected": len(errors), "duplicates": len(valid) - len(fresh), "errors": errors}


def _refused_errors(submission, refused: dict) -> list:
    """{index, reason} for the fixes of the batch taken outside the walk's time, as for any rejected fix. Only a
    batch with such fixes gets here, so re-reading the raw fixes one at a time costs the hot path nothing."""
    skipped = {e["index"] for e in submission.rejected}
    found = []
    for index, raw in enumerate(submission.raw):
        if index not in skipped:
            valid, _ = fixes.validate([raw], now=submission.now)
            if valid and valid[0].t in refused:
                found.append({"index": index, "reason": refused[valid[0].t]})
    return found


def _split_by_span(walk: Walk, valid: list, *, clock_offset_s: float = 0.0) -> tuple[list, dict]:
    """The fixes taken while the walk was on, and {t: reason} for the others: taken before it started, or after
    it ended. Late fixes of an ended walk still fill its trail. A phone clock a little slow is allowed for
    (walk_opened), and one known to be slow by more (clock_offset_s, from the monitor's receipts) is put right:
    its fixes are refused only until that is known, and the phone counts as heard meanwhile (`fold`)."""
    opened, ended = walk_opened(walk), walk.ended_at if walk.status in ENDED else None
    opened -= timedelta(seconds=clock_offset_s)
    if not valid or (valid[0].t >= opened and (ended is None or valid[-1].t <= ended)):  # sorted by t: the usual
        return valid, {}
    kept, refused = [], {}
    for f in valid:
        if f.t < opened:
            refused[f.t] = "before the walk started"
        elif ended is not None and f.t > ended:
            refused[f.t] = "after the walk ended"
        else:
            kept.append(f)
    return kept, refused


def _incidents_of(session, walk_id) -> list:
    """The walk's SOS incidents, newest first: usually one (walk_sos)."""
    return session.execute(select(Incident.id, Incident.district_code, Incident.escalated_at, Incident.closed_at)
                           .where(Incident.walk_id == walk_id)
                           .order_by(Incident.created_at.desc(), Incident.id)).all()


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


def _targets(walk: Walk, guardian_ids, followed: list) -> list:
    """Where the newest position goes: the watch rooms of the walker and of the guardians allowed now (one
    emit to all of them) and, while its SOS is open, the incident's operators."""
    item = {"kind": "walk", "id": str(walk.id), **walk.last_fix}
    targets = [(events.MOBILE, position_rooms(walk, guardian_ids), events.WALK_POSITION, item)]
    for incident in followed:  # as an "sos" item, so the console moves the incident's pin
        room = rooms.incident_operators(incident.district_code, escalated=incident.escalated_at is not None)
        targets.append((events.CONTROL, room, events.POSITIONS,
                        {**item, "kind": "sos", "id": str(incident.id), "walk_id": str(walk.id)}))
    return targets
