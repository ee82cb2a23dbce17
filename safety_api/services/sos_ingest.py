"""The caller's fixes during an SOS, by group commit (`group_commit`): one SELECT checks the group's
incidents, one INSERT stores every fix (a resent fix is a duplicate by (incident, t)), one UPDATE per
incident moves `last_fix` forward only (a late fix never replaces a newer one, with no row lock to wait on),
one commit; then one Redis round trip sets the live positions and the operators' next `positions` batch
carries them.
"""
import logging
from dataclasses import replace
from datetime import datetime

from flask import current_app
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB

from safety_api.errors import Conflict, DomainError
from safety_api.models import Incident
from safety_api.policy import check_caller
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
from safety_api.services.incidents import CLOSED

log = logging.getLogger(__name__)

# Forward only, by the phone's clock; a point stamped by the server's clock (the raising point, `source: raise`,
# or a replayed alarm's, `retry`) gives way to the phone's next fix even from a phone whose clock is behind,
# unless that fix predates the alarm by more than any clock could be off.
ADVANCE_LAST_FIX = text("""
    UPDATE incidents SET last_fix = :fix
    WHERE id = :id AND (last_fix IS NULL OR last_fix->>'t' < :t
                        OR (last_fix->>'source' IN ('raise', 'retry')
                            AND CAST(:t AS timestamptz) > created_at - interval '1 hour'))
""").bindparams(bindparam("fix", type_=JSONB))


def record_fixes(session, redis_client, *, user, incident_id, raw_fixes, now: datetime) -> dict:
    """Validate the caller's fixes, have them written with everyone else's, answer with the counts."""
    valid, rejected = fixes.validate(raw_fixes, now=now)
    person = Person(user.id, user.name, user.role)
    session.rollback()  # hand the connection back while waiting: hundreds of sockets may wait at once
    app = current_app._get_current_object()
    writer = writer_for(app, "sos-fixes", lambda: _sos_writer(app, session.get_bind(), redis_client))
    return writer.submit(Submission(subject_id=incident_id, person=person, valid=valid, rejected=rejected,
                                    now=now))


def record_retry_point(session, redis_client, *, user, incident_id, lat: float, lon: float,
                       accuracy_m: float | None, now: datetime):
    """A replayed SOS (the phone did not hear the answer and sent the alarm again) carries where the caller is
    now, which may be far from where the alarm was raised: a caller being driven away. Keep it as a fix of the
    incident, stamped by the server's clock (the alarm carries none), in the trail and, if newest, as
    `last_fix`. Written in the request rather than by the group writer, so that the replay's answer never
    waits behind the location load; it is best effort: whatever goes wrong, the replay is still answered
    with its incident, and the phone's own fixes follow."""
    valid, _rejected = fixes.validate([{"lat": lat, "lon": lon, "accuracy_m": accuracy_m, "t": now.isoformat()}],
                                      now=now)
    valid = [replace(fix, source="retry") for fix in valid]  # the server's clock: the phone's next fix replaces it
    submission = Submission(subject_id=incident_id, person=Person(user.id, user.name, user.role), valid=valid,
                            rejected=[], now=now)
    try:
        publish_positions(redis_client, write_group(session, [submission]))
    except Exception:  # noqa: BLE001 - the point is a bonus; the answer is the incident (a Redis outage included)
        session.rollback()
        log.warning("the retried SOS's point for %s was not stored or not published", incident_id, exc_info=True)


def write_group(session, group: list) -> list:
    """Check, insert, advance and commit one group; returns the newest new fix per incident to publish."""
    incidents = {row.id: row for row in session.execute(
        select(Incident.id, Incident.caller_id, Incident.status, Incident.caller_status, Incident.duress,
               Incident.district_code, Incident.escalated_at)
        .where(Incident.id.in_({s.subject_id for s in group})))}
    accepted, rows, hidden = [], [], []
    for submission in group:
        incident = incidents.get(submission.subject_id)
        try:
            check_caller(submission.person, incident)
            if incident.caller_status in CLOSED or incident.status in CLOSED:  # as the caller sees it
                raise Conflict("The incident is already "
                               f"{incident.caller_status if incident.caller_status in CLOSED else incident.status}.")
        except DomainError as exc:
            submission.error = exc
            if not (incident is not None and incident.duress and incident.status not in CLOSED
                    and isinstance(exc, Conflict)):
                continue
            # After a duress PIN the phone is answered as after a cancel, but its fixes are the operators'
            # best evidence of where the caller is taken: stored and shown all the same.
            hidden.append(id(submission))
        accepted.append((submission, incident))
        rows += [{"subject_kind": "sos", "subject_id": incident.id, "user_id": submission.person.id,
                  "lat": f.lat, "lon": f.lon, "accuracy_m": f.accuracy_m, "t": f.t, "incident_id": incident.id}
                 for f in submission.valid]
    stored = insert_fixes(session, rows)
    newest = {}
    for submission, incident in accepted:
        # dict by t: a fix repeated in the batch (fixes.validate keeps it) is new once, the other a duplicate
        fresh = list({f.t: f for f in submission.valid if (incident.id, f.t) in stored}.values())
        stored.difference_update((incident.id, f.t) for f in fresh)  # a fix sent twice in one group counts once
        for fix in fresh:
            if incident.id not in newest or newest[incident.id][1].t < fix.t:
                newest[incident.id] = (incident, fix)
        submission.result = {"accepted": len(fresh), "rejected": len(submission.rejected),
                             "duplicates": len(submission.valid) - len(fresh), "errors": submission.rejected}
        if id(submission) in hidden:
            submission.result = None  # the error stands, as for a cancelled incident
    if newest:
        session.execute(ADVANCE_LAST_FIX, [{"id": incident.id, "fix": fix.as_dict(), "t": fix.t.isoformat()}
                                   for incident, fix in newest.values()])
    session.commit()
    return list(newest.values())


def publish_positions(redis_client, newest: list):
    """Live positions in one Redis round trip; the operators' batches in memory."""
    if not newest:
        return
    # Only a position that became the caller's newest goes to the consoles: a batch resent late (a dropped ack, a
    # background upload) would move the operators' pin back to where the caller was. Redis down: PostgreSQL has
    # the fixes, and the batches still go out.
    became_live = [True] * len(newest)
    try:
        became_live = set_live_positions(redis_client, "sos", [(incident.id, fix) for incident, fix in newest])
    finally:
        for (incident, fix), live in zip(newest, became_live):
            if not live:
                continue
            room = rooms.incident_operators(incident.district_code, escalated=incident.escalated_at is not None)
            batcher.add(namespace=events.CONTROL, room=room, event=events.POSITIONS,
                        item={"kind": "sos", "id": str(incident.id), **fix.as_dict()})


def _sos_writer(app, engine, redis_client) -> GroupWriter:
    return GroupWriter(app, engine, name="sos-fixes", write=write_group,
                       publish=lambda newest: publish_positions(redis_client, newest))
