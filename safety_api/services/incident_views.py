"""How an incident looks to operators and to its caller."""
from geoalchemy2.shape import to_shape
from sqlalchemy import and_, or_, select

from safety_api.models import (
    Incident,
    IncidentEvent,
    LocationFix,
    ProtectedPerson,
    User,
)

# The detail is read again at every change of the selected incident: an SOS streaming for hours (or a walk's
# SOS with the walk's fixes) must not send them all each time. As a walk's trail (services.walks.TRAIL_LIMIT).
TRAIL_LIMIT = 5000


def point_of(geography) -> tuple[float, float]:
    """(lon, lat) of a stored geography point."""
    point = to_shape(geography)
    return point.x, point.y


def operator_view(incident: Incident) -> dict:
    """The incident as operators see it (duress visible, priority, caller, the bell that raised it). `revision`
    orders views of one incident; the caller's view never carries it (after a duress PIN it would tell that work
    goes on)."""
    lon, lat = point_of(incident.location)
    return {
        "id": str(incident.id), "status": incident.status, "trigger": incident.trigger,
        "priority": incident.priority, "duress": incident.duress, "district": incident.district_code,
        "location": {"type": "Point", "coordinates": [lon, lat]}, "accuracy_m": incident.accuracy_m,
        "created_at": incident.created_at.isoformat(),
        "acknowledged_by": str(incident.acknowledged_by) if incident.acknowledged_by else None,
        "acknowledged_at": _iso(incident.acknowledged_at), "escalated_at": _iso(incident.escalated_at),
        "dispatched_agency": incident.dispatched_agency, "outcome": incident.outcome,
        "closed_at": _iso(incident.closed_at), "nearest_cctvs": incident.nearest_cctvs,
        "last_fix": incident.last_fix, "walk_id": str(incident.walk_id) if incident.walk_id else None,
        "caller_id": str(incident.caller_id) if incident.caller_id else None,
        "bell": _bell(incident),
        "revision": incident.revision,
    }


def _bell(incident: Incident) -> dict | None:
    """The bell that raised the incident, by the name admins gave it: a lost or abused bell is found (and its
    key revoked) by what operators see on its alarms."""
    if incident.bell_device_id is None:
        return None
    bell = incident.bell_device
    return {"id": str(bell.id), "name": bell.name} if bell is not None else None


def caller_view(incident: Incident) -> dict:
    """The incident as its caller sees it: frozen when it closed for them (`caller_closed_at`), so after a
    duress PIN it reads exactly as after the cancel PIN, whatever the operators do next."""
    lon, lat = point_of(incident.location)
    closed = incident.caller_closed_at
    acknowledged = incident.acknowledged_at is not None and (closed is None or incident.acknowledged_at <= closed)
    return {"id": str(incident.id), "status": incident.caller_status, "trigger": incident.trigger,
            "location": {"type": "Point", "coordinates": [lon, lat]}, "accuracy_m": incident.accuracy_m,
            "created_at": incident.created_at.isoformat(), "acknowledged": acknowledged}


def detail_view(session, incident: Incident) -> dict:
    """Operator view plus timeline, trail, caller and the caller's earlier incidents."""
    view = operator_view(incident)
    events = session.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == incident.id)
                             .order_by(IncidentEvent.id))
    view["events"] = [{"kind": e.kind, "actor_id": str(e.actor_id) if e.actor_id else None, "data": e.data,
                       "at": e.created_at.isoformat()} for e in events]
    own = and_(LocationFix.subject_kind == "sos", LocationFix.subject_id == incident.id)
    if incident.walk_id is not None:  # raised by a walk: the walk's fixes filed under it are its trail too
        own = or_(own, and_(LocationFix.subject_kind == "walk", LocationFix.subject_id == incident.walk_id,
                            LocationFix.incident_id == incident.id))
    view["trail"], view["trail_truncated"] = _trail(session, own)
    view["caller"] = _caller(session, incident)
    view["earlier_incidents"] = _earlier(session, incident)
    return view


def _trail(session, own) -> tuple[list, bool]:
    """The newest TRAIL_LIMIT fixes in time order, and whether older ones were left out."""
    newest = list(session.scalars(select(LocationFix).where(own).order_by(LocationFix.t.desc())
                                  .limit(TRAIL_LIMIT + 1)))
    kept = newest[:TRAIL_LIMIT][::-1]
    return [{"lat": f.lat, "lon": f.lon, "accuracy_m": f.accuracy_m, "t": f.t.isoformat()} for f in kept], \
        len(newest) > TRAIL_LIMIT


def _caller(session, incident):
    if incident.caller_id is None:
        return None
    user = session.get(User, incident.caller_id)
    protection = session.get(ProtectedPerson, incident.caller_id)
    return {"id": str(user.id), "name": user.name, "phone": user.phone,
            "protection": {"agency": protection.agency, "case_reference": protection.case_reference}
            if protection else None}


def _earlier(session, incident) -> list:
    if incident.caller_id is None:
        return []
    rows = session.scalars(select(Incident).where(Incident.caller_id == incident.caller_id,
                                                  Incident.id != incident.id,
                                                  Incident.created_at < incident.created_at)
                           .order_by(Incident.created_at.desc()).limit(20))
    return [{"id": str(r.id), "created_at": r.created_at.isoformat(), "status": r.status, "trigger": r.trigger,
             "outcome": r.outcome, "district": r.district_code} for r in rows]


def _iso(moment):
    return moment.isoformat() if moment else None
