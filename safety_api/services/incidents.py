"""SOS incidents: raise (durable fan-out), operator workflow, escalation, cancel and duress."""
from datetime import timedelta

from geoalchemy2 import WKTElement
from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError

from notifications import messages
from safety_api.clock import utcnow
from safety_api.errors import Conflict, Forbidden
from safety_api.models import Incident, IncidentEvent, ProtectedPerson, User
from safety_api.models.incidents import PRIORITY_RANK
from safety_api.policy import check_caller, check_operate_incident
from safety_api.realtime import broadcast, events
from safety_api.services import access_log, deliveries, facilities, guardians, jobs
from safety_api.services.accounts import verify_secret
from safety_api.services.districts import district_code_at
from safety_api.services.incident_views import caller_view, operator_view, point_of

NEAREST_CCTV_RADIUS_M = 300
NEAREST_CCTV_COUNT = 5
CLOSED = ("resolved", "cancelled")


def raise_sos(session, *, caller: User | None, lat: float, lon: float, accuracy_m: float | None, trigger: str,
              idempotency_key: str | None, escalate_after_s: float, bell_device_id=None, walk_id=None,
              priority: str = "normal") -> tuple[Incident, bool]:
    """Create an incident with its first event and every push it owes, in one transaction; emit after commit.

    A replayed key is looked up first rather than left to the unique index: a walk's escalation runs this
    inside its own transaction, and an IntegrityError's rollback would undo the walk's changes with it."""
    if idempotency_key:
        existing = _by_key(session, caller.id if caller else None, idempotency_key, bell_device_id)
        if existing is not None:
            return existing, False
    district_code = district_code_at(session, lat=lat, lon=lon)
    protection = session.get(ProtectedPerson, caller.id) if caller else None
    if protection:
        priority = _max_priority(priority, "high")
    incident = Incident(caller_id=caller.id if caller else None, idempotency_key=idempotency_key, trigger=trigger,
                        priority=priority, district_code=district_code,
                        location=WKTElement(f"POINT({lon} {lat})", srid=4326), accuracy_m=accuracy_m,
                        nearest_cctvs=_nearest_cctvs(session, lat, lon), bell_device_id=bell_device_id,
                        walk_id=walk_id, last_fix={"lat": lat, "lon": lon, "accuracy_m": accuracy_m,
                                                   "t": utcnow().isoformat()})
    try:
        session.add(incident)
        session.flush()
        add_event(session, incident, "created", actor=caller, trigger=trigger, priority=priority,
                  district=incident.district_code)
        _plan_alert_pushes(session, incident, caller=caller, protection=protection, reason="created")
        jobs.enqueue(session, kind="incident.escalate", payload={"incident_id": str(incident.id)},
                     run_at=utcnow() + timedelta(seconds=escalate_after_s), dedupe_key=f"escalate:{incident.id}")
        created_view = operator_view(incident)  # built before commit: no reload of the row after it
        session.commit()
    except IntegrityError:  # the same key raced in from a parallel retry: that one won
        session.rollback()
        winner = _by_key(session, caller.id if caller else None, idempotency_key, bell_device_id)
        if winner is None:
            raise
        return winner, False
    broadcast.to_district(district_code, events.INCIDENT_CREATED, created_view)
    return incident, True


def _by_key(session, caller_id, key, bell_device_id=None) -> Incident | None:
    owner = Incident.caller_id == caller_id if caller_id else Incident.bell_device_id == bell_device_id
    return session.scalar(select(Incident).where(owner, Incident.idempotency_key == key))


def _nearest_cctvs(session, lat, lon) -> list:
    rows = facilities.nearby(session, lat=lat, lon=lon, radius_m=NEAREST_CCTV_RADIUS_M, kinds=["cctv"],
                             limit=NEAREST_CCTV_COUNT)
    return [{"id": str(r.id), "distance_m": round(r.distance_m, 1), "name": r.name, "camera_count": r.camera_count,
             "location": {"type": "Point", "coordinates": [r.lon, r.lat]}} for r in rows]


def _max_priority(a: str, b: str) -> str:
    return a if PRIORITY_RANK[a] <= PRIORITY_RANK[b] else b


def add_event(session, incident: Incident, kind: str, *, actor: User | None = None, **data):
    """Append to the audit trail (inside the caller's transaction)."""
    session.add(IncidentEvent(incident_id=incident.id, kind=kind, actor_id=actor.id if actor else None, data=data))


def on_duty_staff(district_code: str | None):
    """Who must be pushed, as a SELECT of ids: the district's on-duty operators, or the admins when there is
    no district. Left as a query so that their devices come in the same round trip."""
    if district_code is None:
        return select(User.id).where(User.role == "admin")
    return select(User.id).where(User.role == "operator", User.district_code == district_code, User.on_duty)


def _plan_alert_pushes(session, incident, *, caller, protection, reason, staff_district=...):
    view = operator_view(incident)
    critical = incident.priority != "normal" or incident.duress
    subject = f"incident:{incident.id}"
    district = incident.district_code if staff_district is ... else staff_district
    staff = deliveries.tokens_by_user(session, on_duty_staff(district))
    deliveries.plan(session, subject=subject, reason=f"staff.{reason}",
                    messages_by_user={u: messages.incident_alert(view, t, critical=critical) for u, t in staff.items()})
    if caller is None or reason != "created":
        return
    watchers = guardians.active_guardians(protected_id=caller.id)
    if protection:  # the protecting agency's officers are told as guardians are
        watchers = watchers.union(select(User.id).where(User.phone.in_(protection.contact_phones)))
    tokens = deliveries.tokens_by_user(session, watchers)
    deliveries.plan(session, subject=subject, reason="guardian.created", messages_by_user={
        u: messages.guardian_alert(view, t, person_name=caller.name) for u, t in tokens.items()})


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
    """Open (or given-status) incidents of the operator's district; admins see all; by priority, then age."""
    query = select(Incident)
    if user.role != "admin":
        query = query.where(Incident.district_code == user.district_code)
    if status == "open":
        query = query.where(Incident.status.not_in(CLOSED))
    elif status:
        query = query.where(Incident.status == status)
    rank = case(PRIORITY_RANK, value=Incident.priority, else_=9)
    return list(session.scalars(query.order_by(rank, Incident.created_at).limit(500)))


def acknowledge(session, *, user, incident_id) -> Incident:
    """Take the incident: the first operator wins, a second one gets 409."""
    incident = get_for_operator(session, user=user, incident_id=incident_id)
    won = session.execute(update(Incident).where(Incident.id == incident.id, Incident.status == "open")
                          .values(status="acknowledged", acknowledged_by=user.id, acknowledged_at=utcnow())
                          .returning(Incident.id)).first()
    if won is None:
        session.rollback()
        session.refresh(incident)
        if incident.acknowledged_by == user.id and incident.status == "acknowledged":
            return incident
        raise Conflict(f"Already {incident.status} by another operator.")
    session.refresh(incident)
    add_event(session, incident, "acknowledged", actor=user)
    return _commit_and_tell(session, incident)


def dispatch(session, *, user, incident_id, agency: str, note: str | None) -> Incident:
    """Record that help was sent (police, fire, ...)."""
    incident = _lock_open(session, user=user, incident_id=incident_id)
    if incident.status == "open":
        incident.acknowledged_by, incident.acknowledged_at = user.id, utcnow()
    incident.status, incident.dispatched_agency = "dispatched", agency
    add_event(session, incident, "dispatched", actor=user, agency=agency, note=note)
    return _commit_and_tell(session, incident)


def resolve(session, *, user, incident_id, outcome: str, note: str | None) -> Incident:
    """Close the incident with its outcome."""
    incident = _lock_open(session, user=user, incident_id=incident_id)
    incident.status, incident.outcome, incident.closed_at = "resolved", outcome, utcnow()
    incident.caller_status = "resolved" if incident.caller_status != "cancelled" else "cancelled"
    add_event(session, incident, "resolved", actor=user, outcome=outcome, note=note)
    return _commit_and_tell(session, incident)


def _lock_open(session, *, user, incident_id) -> Incident:
    incident = session.scalar(select(Incident).where(Incident.id == incident_id).with_for_update())
    check_operate_incident(user, incident)
    if incident.status in CLOSED:
        session.rollback()
        raise Conflict(f"The incident is already {incident.status}.")
    return incident


def _commit_and_tell(session, incident: Incident) -> Incident:
    session.commit()
    view = operator_view(incident)
    broadcast.to_district(incident.district_code, events.INCIDENT_UPDATED, view)
    if incident.escalated_at and incident.district_code:
        broadcast.to_central(events.INCIDENT_UPDATED, view)
    if incident.caller_id:
        broadcast.to_user(incident.caller_id, events.INCIDENT_UPDATED, caller_view(incident))
    return incident


def escalate(session, *, incident_id) -> bool:
    """The durable timer: still unacknowledged, so tell the central centre and push again. Fires once."""
    incident = session.scalar(select(Incident).where(Incident.id == incident_id).with_for_update())
    if incident is None or incident.status != "open" or incident.escalated_at is not None:
        return False
    incident.escalated_at, incident.priority = utcnow(), _max_priority(incident.priority, "high")
    add_event(session, incident, "escalated", reason="not acknowledged in time")
    _plan_alert_pushes(session, incident, caller=None, protection=None, reason="escalated")
    if incident.district_code is not None:  # the central centre too
        _plan_alert_pushes(session, incident, caller=None, protection=None, reason="escalated", staff_district=None)
    session.flush()
    view = operator_view(incident)
    # Emitted before the job's commit: a repeat after a crash re-emits, which viewers treat as an update.
    broadcast.to_district(incident.district_code, events.INCIDENT_UPDATED, view)
    broadcast.to_central(events.INCIDENT_UPDATED, view)
    return True


def cancel_with_pin(session, *, user, incident_id, pin: str) -> dict:
    """Cancel PIN cancels; duress PIN looks exactly the same to the phone but alerts operators."""
    incident = session.scalar(select(Incident).where(Incident.id == incident_id).with_for_update())
    check_caller(user, incident)
    # Check both hashes every time, so timing never tells which PIN was entered.
    is_cancel = verify_secret(user.cancel_pin_hash, pin)
    is_duress = verify_secret(user.duress_pin_hash, pin)
    if not (is_cancel or is_duress):
        session.rollback()
        raise Forbidden("Wrong PIN.")
    if incident.caller_status != "cancelled":
        if is_duress:
            incident.duress, incident.priority, incident.caller_status = True, "critical", "cancelled"
            add_event(session, incident, "duress", actor=user)
            _plan_alert_pushes(session, incident, caller=None, protection=None, reason="duress")
        elif incident.status not in CLOSED:
            incident.status, incident.caller_status, incident.closed_at = "cancelled", "cancelled", utcnow()
            incident.outcome = "cancelled_by_user"
            add_event(session, incident, "cancelled", actor=user)
        _commit_and_tell(session, incident)
    else:
        session.rollback()
    return {"status": "cancelled"}


def get_for_caller(session, *, user, incident_id) -> Incident:
    """The caller's own incident."""
    incident = session.get(Incident, incident_id)
    check_caller(user, incident)
    return incident


def raise_bell_sos(session, *, device, lat, lon, idempotency_key, escalate_after_s) -> tuple[Incident, bool]:
    """A bell's SOS, at its registered place unless it sends one."""
    if lat is None or lon is None:
        lon, lat = point_of(device.location)
    owner = session.get(User, device.owner_id) if device.owner_id else None
    return raise_sos(session, caller=owner, lat=lat, lon=lon, accuracy_m=None, trigger="device",
                     idempotency_key=idempotency_key, escalate_after_s=escalate_after_s,
                     bell_device_id=device.id, priority="high")
