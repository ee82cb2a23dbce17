"""SOS incidents after they are raised (raising: `sos_raise`): operator workflow, escalation, cancel and duress."""
import logging

from sqlalchemy import (
    String,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.expression import ColumnElement

from notifications import messages
from safety_api.clock import utcnow
from safety_api.errors import Conflict, Forbidden, NotFound, Unavailable
from safety_api.models import Incident, IncidentEvent, User
from safety_api.models.accounts import not_suspended, on_shift
from safety_api.models.incidents import PRIORITY_RANK
from safety_api.policy import check_caller, check_operate_incident
from safety_api.realtime import broadcast, events, rooms
from safety_api.services import access_log, deliveries, jobs, walk_monitor, walk_sos
from safety_api.services.accounts import verify_secret
from safety_api.services.incident_views import caller_view, operator_view

log = logging.getLogger(__name__)

CLOSED = ("resolved", "cancelled")
ACTIVE = ("open", "acknowledged", "dispatched")
CLOSED_LIST_LIMIT = 500  # closed incidents pile up for ever: a list of them (or of all) is the newest only
# Why an incident went to the central centre (its "escalated" event says which).
NOT_TAKEN_IN_TIME = "not acknowledged in time"
NOBODY_ON_SHIFT = "nobody on shift in the district"


def max_priority(a: str, b: str) -> str:
    return a if PRIORITY_RANK[a] <= PRIORITY_RANK[b] else b


def add_event(session, incident: Incident, kind: str, *, actor: User | None = None, **data):
    """Append to the audit trail (inside the caller's transaction) and count the change in the incident's
    `revision`, which viewers order what they hear by. The database adds one under the row's lock, so two
    transactions never give two states the same revision, whichever lock the caller took."""
    session.add(IncidentEvent(incident_id=incident.id, kind=kind, actor_id=actor.id if actor else None, data=data))
    revision = session.execute(update(Incident).where(Incident.id == incident.id)
                               .values(revision=Incident.revision + 1).returning(Incident.revision)
                               .execution_options(synchronize_session=False)).scalar_one()
    set_committed_value(incident, "revision", revision)


def on_duty_staff(district_code):
    """Who must be pushed, as a SELECT of ids: the district's on-duty operators, or the admins when there is
    no district. The district may be a value or a SQL expression (`read_scene` passes its subquery)."""
    district = district_code if isinstance(district_code, ColumnElement) else literal(district_code, String)
    return select(User.id).where(or_(and_(district.is_(None), User.role == "admin", not_suspended()),
                                     and_(User.role == "operator", User.district_code == district, on_shift())))


def staff_alerts(incident: Incident, view: dict, staff_devices: dict, *, event: str = "created") -> dict:
    critical = incident.priority != "normal" or incident.duress
    return {user: messages.incident_alert(view, tokens, critical=critical, event=event)
            for user, tokens in staff_devices.items()}


def _plan_staff_alert(session, incident: Incident, *, reason: str, district=...):
    """Push the incident, as it is now, to the on-duty staff of its district (or of `district`)."""
    staff = deliveries.tokens_by_user(session, on_duty_staff(incident.district_code if district is ... else district))
    deliveries.plan(session, subject=f"incident:{incident.id}", reason=f"staff.{reason}",
                    messages_by_user=staff_alerts(incident, operator_view(incident), staff, event=reason))


def get_for_operator(session, *, user, incident_id) -> Incident:
    """Load an incident the user may operate on (404/403 otherwise)."""
    incident = session.get(Incident, incident_id)
    check_operate_incident(user, incident)
    return incident


def read_for_operator(session, *, user, incident_id) -> Incident:
    """An operator opens an incident: the read of the caller's positions goes into the access log."""
    incident = get_for_operator(session, user=user, incident_id=incident_id)
    if incident.caller_id is not None:
        access_log.record(session, viewer_id=user.id, subject_user_id=incident.caller_id, subject_kind="sos",
                          subject_id=incident.id, purpose="incident.read")
        session.commit()
    return incident


def list_for_operator(session, *, user, status: str | None) -> list:
    """Incidents of the operator's district (admins: every district). The active ones (`open`: every status
    not closed; or one active status) come whole, by priority then age: a console takes such a list as the
    truth and drops what it does not name, so a cut list would hide the newest SOS. Closed ones (and `None`:
    every status) are the newest `CLOSED_LIST_LIMIT`, newest first. The list carries each caller's position,
    so the read is logged too (once an hour per incident)."""
    query = select(Incident).options(joinedload(Incident.bell_device))  # the views' `bell`, in the same read
    if user.role != "admin":
        query = query.where(Incident.district_code == user.district_code)
    if status == "open":
        query = query.where(Incident.status.not_in(CLOSED))
    elif status:
        query = query.where(Incident.status == status)
    if status == "open" or status in ACTIVE:
        query = query.order_by(case(PRIORITY_RANK, value=Incident.priority, else_=9), Incident.created_at)
    else:
        query = query.order_by(Incident.created_at.desc(), Incident.id).limit(CLOSED_LIST_LIMIT)
    found = list(session.scalars(query))
    _log_reads(session, user, found, purpose="incident.list")
    session.commit()
    return found


def _log_reads(session, user, found: list, *, purpose: str):
    access_log.record_recent(session, viewer_id=user.id, subject_kind="sos", purpose=purpose,
                             subjects=[(i.caller_id, i.id) for i in found if i.caller_id is not None])


def acknowledge(session, *, user, incident_id) -> Incident:
    """Take the incident: the first operator wins, a second one gets 409."""
    incident = get_for_operator(session, user=user, incident_id=incident_id)
    _hold_operator(session, user, incident)
    # The first acknowledgement's time stays: the caller's view was frozen against it (a duress incident can be
    # reopened and taken again). It is read from the database's clock once the row is ours, as a PIN's time is
    # (`_locked`): an acknowledgement that waited for a duress PIN's commit is later than it, so the
    # phone reads "not acknowledged" exactly as it would after the cancel PIN, which the same wait refuses.
    won = session.execute(update(Incident).where(Incident.id == incident.id, Incident.status == "open")
                          .values(status="acknowledged", acknowledged_by=user.id,
                                  acknowledged_at=func.coalesce(Incident.acknowledged_at, func.clock_timestamp()))
                          .returning(Incident.id)).first()
    if won is None:
        session.rollback()
        session.refresh(incident)
        if incident.acknowledged_by == user.id and incident.status == "acknowledged":
            return incident
        if incident.status in CLOSED:
            raise Conflict(f"The incident is already {incident.status}.")
        taker = "you" if incident.acknowledged_by == user.id else "another operator"
        raise Conflict(f"Already {incident.status} by {taker}.")
    session.refresh(incident)
    add_event(session, incident, "acknowledged", actor=user)
    _log_reads(session, user, [incident], purpose="incident.act")
    return _commit_and_tell(session, incident, tell_caller=incident.caller_closed_at is None)


def _hold_operator(session, user, incident: Incident):
    """Hold the operator's row FOR SHARE until the acknowledgement commits, refusing one suspended or moved out
    of the incident's district since the request's gate read them. A suspension or a move (which lock the row
    for update, then the incidents the person took) then either waits for this acknowledgement and releases
    it with the rest, or came first and is seen here: an alarm is never left held by someone who cannot act."""
    may = select(User.id).where(User.id == user.id, not_suspended(),
                                or_(User.role == "admin", User.district_code == incident.district_code))
    if session.scalar(may.with_for_update(read=True)) is None:
        session.rollback()
        raise Forbidden("You can no longer act on this district's incidents.")


def dispatch(session, *, user, incident_id, agency: str, note: str | None, revision: int | None = None) -> Incident:
    """Record that help was sent (police, fire, ...)."""
    incident, now, _walk = _lock_open(session, user=user, incident_id=incident_id, revision=revision)
    if incident.status == "open":
        incident.acknowledged_by, incident.acknowledged_at = user.id, incident.acknowledged_at or now
    incident.status, incident.dispatched_agency = "dispatched", agency
    add_event(session, incident, "dispatched", actor=user, agency=agency, note=note)
    _log_reads(session, user, [incident], purpose="incident.act")
    return _commit_and_tell(session, incident, tell_caller=incident.caller_closed_at is None)


def resolve(session, *, user, incident_id, outcome: str, note: str | None, revision: int | None = None) -> Incident:
    """Close the incident with its outcome; a walk it was raised by is watched again (walk_sos.resume)."""
    incident, now, walk = _lock_open(session, user=user, incident_id=incident_id, revision=revision, with_walk=True)
    incident.status, incident.outcome, incident.closed_at = "resolved", outcome, now
    caller_view_open = incident.caller_closed_at is None  # after a duress PIN the phone keeps its "cancelled"
    resumed = []
    if caller_view_open:
        incident.caller_status, incident.caller_closed_at = "resolved", incident.closed_at
        resumed = walk_sos.resume(session, walk, now=now)
    add_event(session, incident, "resolved", actor=user, outcome=outcome, note=note)
    _log_reads(session, user, [incident], purpose="incident.act")
    return _commit_and_tell(session, incident, tell_caller=caller_view_open, walk_notices=resumed)


def _lock_open(session, *, user, incident_id, revision: int | None = None,
               with_walk: bool = False) -> tuple[Incident, object, object]:
    """The incident locked for an operator's act, the operator held first as for an acknowledgement (in the
    order a suspension locks: the person, then their incidents), and, `with_walk`, the walk it was raised by
    (locked before the incident: walk_sos.lock_walk_of). With the `revision` the operator saw, a change
    recorded since refuses the act: closing as a false alarm an incident that a duress PIN has just made
    critical must be a decision taken on what the PIN said."""
    incident = get_for_operator(session, user=user, incident_id=incident_id)
    _hold_operator(session, user, incident)
    walk = walk_sos.lock_walk_of(session, incident) if with_walk else None
    incident, now = _locked(session, incident_id)
    if incident.status in CLOSED:
        session.rollback()
        raise Conflict(f"The incident is already {incident.status}.")
    if revision is not None and incident.revision != revision:
        session.rollback()
        raise Conflict(f"The incident changed since revision {revision} (now {incident.revision}): "
                       "read it again before acting.")
    return incident, now, walk


def _commit_and_tell(session, incident: Incident, *, tell_caller: bool, walk_notices=()) -> Incident:
    """Commit, then tell the operators and, if `tell_caller`, the caller. The caller is told only while their
    view is open or as it closes: after a duress PIN the operators go on working, and the phone must not
    learn it. `walk_notices`: the walk it was raised by is watched again (walk_sos.resume)."""
    session.commit()
    _tell_operators(incident)
    if incident.caller_id and tell_caller:
        broadcast.to_user(incident.caller_id, events.INCIDENT_UPDATED, caller_view(incident))
    walk_monitor.tell(list(walk_notices))
    return incident


def release_taken_by(session, operator: User, *, escalate_after_s: float, now=None):
    """An operator who can no longer act (suspended, moved to another district) lets go of the incidents they
    acknowledged and have not dispatched: each is open again, its district's operators on shift are pushed
    again, and one never escalated gets a new escalation timer from now, so that no alarm waits on someone
    who is gone. Dispatched incidents keep their state: help is on its way, and the district's operators act
    on them as on any other. In the caller's transaction; returns what to tell once it has committed."""
    now = now or utcnow()
    taken = session.scalars(select(Incident).where(Incident.acknowledged_by == operator.id,
                                                   Incident.status == "acknowledged")
                            .order_by(Incident.id).with_for_update()).all()
    for incident in taken:
        incident.status, incident.acknowledged_by = "open", None
        add_event(session, incident, "released", operator=str(operator.id))
        _alert_again(session, incident, reason="released", escalate_after_s=escalate_after_s, now=now)

    def tell():
        for incident in taken:
            _tell_operators(incident)

    return tell


def _alert_again(session, incident: Incident, *, reason: str, escalate_after_s: float, now):
    """Push an incident that needs taking again (released, turned duress) to the operators on shift in its
    district. One that is open and was never escalated gets a new escalation timer from now: its first timer
    may have fired already, finding it taken or closed, and then nothing would escalate it. One escalated
    before is pushed to the central centre again too, since its district may have nobody on shift."""
    _plan_staff_alert(session, incident, reason=reason)
    if incident.escalated_at is None:
        if incident.status == "open":
            jobs.enqueue(session, kind="incident.escalate", payload={"incident_id": str(incident.id)},
                         delay_s=escalate_after_s,
                         dedupe_key=f"escalate:{incident.id}:{reason}:{now.isoformat()}")
    elif incident.district_code is not None:
        _plan_staff_alert(session, incident, reason=reason, district=None)


def _tell_operators(incident: Incident):
    """`incident.updated` to its district's room, and to the central centre's once it was escalated there."""
    broadcast.to_room(events.CONTROL, rooms.incident_operators(incident.district_code,
                                                               escalated=incident.escalated_at is not None),
                      events.INCIDENT_UPDATED, operator_view(incident))


def escalate(session, *, incident_id, reason: str = NOT_TAKEN_IN_TIME) -> bool:
    """The durable timer: still unacknowledged, so tell the central centre and push again. Fires once."""
    incident, now = _locked(session, incident_id)
    if incident is None or incident.status != "open" or incident.escalated_at is not None:
        return False
    incident.escalated_at, incident.priority = now, max_priority(incident.priority, "high")
    add_event(session, incident, "escalated", reason=reason)
    _plan_staff_alert(session, incident, reason="escalated")
    if incident.district_code is not None:  # the central centre too
        _plan_staff_alert(session, incident, reason="escalated", district=None)
    session.flush()
    # Emitted before the job's commit: a repeat after a crash re-emits, which viewers treat as an update.
    _tell_operators(incident)
    return True


def cancel_with_pin(session, *, user, incident_id, pin: str, escalate_after_s: float) -> dict:
    """Cancel PIN cancels; duress PIN looks exactly the same to the phone but alerts operators."""
    check_caller(user, session.get(Incident, incident_id))
    # Both hashes every time, so timing never tells which PIN was entered; before the row lock, which the
    # operators' acts and the location writer wait on.
    is_cancel = verify_secret(user.cancel_pin_hash, pin, in_turn=False)
    is_duress = verify_secret(user.duress_pin_hash, pin, in_turn=False)
    if not (is_cancel or is_duress):
        session.rollback()
        raise Forbidden("Wrong PIN.")
    walk = walk_sos.lock_walk_of(session, session.get(Incident, incident_id))  # for either PIN alike
    incident, now = _locked(session, incident_id)
    if incident is None:  # incidents are kept for good; only a database restored from before it would lack it
        session.rollback()
        raise NotFound("No such incident.")
    if is_duress and not incident.duress:
        _record_duress(session, incident, user=user, now=now, escalate_after_s=escalate_after_s, walk=walk)
    elif incident.duress and incident.caller_closed_at is None:
        # Heeded past the attempt limit, where the phone was refused and saw nothing change: either PIN now
        # closes the phone's view as a cancel would, while the operators go on with the duress.
        incident.caller_status, incident.caller_closed_at = "cancelled", now
        add_event(session, incident, "caller_closed", actor=user)
        _commit_and_tell(session, incident, tell_caller=True, walk_notices=walk_sos.resume(session, walk, now=now))
    elif is_cancel and incident.caller_closed_at is None and incident.status not in CLOSED:
        incident.status, incident.caller_status, incident.closed_at = "cancelled", "cancelled", now
        incident.caller_closed_at, incident.outcome = now, "cancelled_by_user"
        add_event(session, incident, "cancelled", actor=user)
        _commit_and_tell(session, incident, tell_caller=True, walk_notices=walk_sos.resume(session, walk, now=now))
    else:  # cancelled already (or duress already recorded): the same answer, nothing new
        session.rollback()
    return {"status": "cancelled"}


def heed_duress(session, *, user, incident_id, pin: str, escalate_after_s: float):
    """A PIN that the phone is refused for (its attempt limit is full, or the limiter is unreachable) is still
    checked against the duress PIN, and a match alerts the operators: whoever holds the phone may have filled
    the limit with wrong guesses, and the victim's duress PIN must never be lost to it. The phone gets the
    refusal any PIN gets, and its view of the incident stays as it was, as after a refused cancel PIN: nothing
    tells the PINs apart and no guess is confirmed (a PIN accepted later closes it, `cancel_with_pin`). Only the
    duress hash is checked, in the process's argon2 turn: past the limit a flood of attempts must not take the
    process."""
    incident = session.get(Incident, incident_id)
    if incident is None or incident.caller_id != user.id or incident.duress:
        session.rollback()
        return
    try:
        matched = verify_secret(user.duress_pin_hash, pin)
    except Unavailable:
        log.warning("a refused PIN for incident %s was not checked against the duress PIN: no argon2 turn",
                    incident_id)
        matched = False
    if not matched:
        session.rollback()
        return
    incident, now = _locked(session, incident_id)
    if incident is None or incident.duress:
        session.rollback()
        return
    _record_duress(session, incident, user=user, now=now, escalate_after_s=escalate_after_s,
                   close_callers_view=False)


def _locked(session, incident_id) -> tuple[Incident | None, object]:
    """The incident locked for a change, and the database's clock once it is: the one clock an incident's times
    are read from (created, acknowledged, escalated, closed, the phone's view closed), so that their order is
    the order of the changes, whatever the clocks of the hosts the api and the worker run on. The phone's view
    compares them (`caller_view`: acknowledged before it closed?)."""
    row = session.execute(select(Incident, func.clock_timestamp()).where(Incident.id == incident_id)
                          .with_for_update(of=Incident).execution_options(populate_existing=True)).first()
    return (row[0], row[1]) if row else (None, None)


def _record_duress(session, incident: Incident, *, user, now, escalate_after_s: float, walk=None,
                   close_callers_view: bool = True):
    """What the phone shows changes exactly as the cancel PIN would change it (the walk it was raised by, locked
    by the caller, is watched again as after a cancel), or, `close_callers_view` false, not at all, as for a
    refused cancel PIN; the rest is for the operators: critical, alerted, and open again if it had been
    closed."""
    closes_now = close_callers_view and incident.caller_closed_at is None
    resumed = []
    if closes_now:
        incident.caller_status, incident.caller_closed_at = "cancelled", now
        resumed = walk_sos.resume(session, walk, now=now)
    incident.duress, incident.priority = True, "critical"
    if incident.status in CLOSED:  # to be taken again: first on the list, acknowledged by nobody
        incident.status, incident.outcome, incident.closed_at, incident.acknowledged_by = "open", None, None, None
        add_event(session, incident, "reopened", actor=user, reason="duress")
    add_event(session, incident, "duress", actor=user)
    _alert_again(session, incident, reason="duress", escalate_after_s=escalate_after_s, now=now)
    _commit_and_tell(session, incident, tell_caller=closes_now, walk_notices=resumed)


def get_for_caller(session, *, user, incident_id) -> Incident:
    """The caller's own incident."""
    incident = session.get(Incident, incident_id)
    check_caller(user, incident)
    return incident
