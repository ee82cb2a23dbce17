"""How meeting points and escort bookings look in answers and socket payloads (plain dicts)."""
from geoalchemy2.shape import to_shape
from sqlalchemy import select

from safety_api.clock import utcnow
from safety_api.models.escort import EscortBooking, EscortEvent, MeetingPoint
from safety_api.policy import sees_escort_destination


def point_of(geography) -> tuple[float, float]:
    """(lon, lat) of a stored point."""
    point = to_shape(geography)
    return point.x, point.y


def meeting_point_view(point: MeetingPoint, distance_m: float | None = None) -> dict:
    """A meeting point with its GeoJSON location and, for a nearby search, its distance."""
    lon, lat = point_of(point.location)
    view = {"id": str(point.id), "name": point.name, "name_en": point.name_en, "kind": point.kind,
            "district": point.district_code, "active": point.active,
            "location": {"type": "Point", "coordinates": [lon, lat]}}
    if distance_m is not None:
        view["distance_m"] = round(distance_m, 1)
    return view


def booking_view(booking: EscortBooking, *, viewer, now=None) -> dict:
    """The booking as this reader may see it: in full, or as an offer (policy.sees_escort_destination)."""
    if not sees_escort_destination(viewer, booking, now=now or utcnow()):
        return offer_view(booking)
    lon, lat = point_of(booking.destination)
    return {
        "id": str(booking.id), "status": booking.status, "district": booking.district_code,
        "meet_at": _iso(booking.meet_at), "ends_at": _iso(booking.ends_at),
        "meeting_point": meeting_point_view(booking.meeting_point),
        "to": {"lat": lat, "lon": lon},
        "citizen": {"id": str(booking.citizen_id), "name": booking.citizen.name},
        "scouts": _scouts(booking),
        "route": route_feature(booking),
        "created_at": _iso(booking.created_at), "started_at": _iso(booking.started_at),
        "finished_at": _iso(booking.finished_at), "unconfirmed_flagged_at": _iso(booking.flagged_at),
    }


def offer_view(booking: EscortBooking) -> dict:
    """What a scout deciding whether to accept needs: where and when to meet, how far and how long the walk is.

    No `to` and no route (the route ends at `to`, usually the citizen's home), no citizen (name or id), no
    audit trail (its actors include the citizen): those come with a slot of the pair."""
    return {
        "id": str(booking.id), "status": booking.status, "district": booking.district_code,
        "meet_at": _iso(booking.meet_at), "ends_at": _iso(booking.ends_at),
        "meeting_point": meeting_point_view(booking.meeting_point),
        "distance_m": round(booking.route_distance_m, 1), "duration_s": round(booking.route_duration_s),
        "scouts": _scouts(booking), "created_at": _iso(booking.created_at),
    }


def detail_view(session, booking: EscortBooking, *, viewer, now=None) -> dict:
    """The booking with its audit trail, for a reader who may see it in full (an offer stays an offer)."""
    now = now or utcnow()
    if not sees_escort_destination(viewer, booking, now=now):
        return offer_view(booking)
    view = booking_view(booking, viewer=viewer, now=now)
    rows = session.scalars(select(EscortEvent).where(EscortEvent.booking_id == booking.id).order_by(EscortEvent.id))
    view["events"] = [{"kind": e.kind, "actor_id": str(e.actor_id) if e.actor_id else None, "data": e.data,
                       "at": _iso(e.at)} for e in rows]
    return view


def _scouts(booking: EscortBooking) -> list:
    return [{"id": str(a.scout_id), "name": a.scout.name, "slot": a.slot}
            for a in booking.assignments if a.released_at is None]


def route_feature(booking: EscortBooking) -> dict:
    """The planned walk as a GeoJSON Feature; `source` says whether the route engine drew it."""
    coords = [list(c) for c in to_shape(booking.route).coords]
    return {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords},
            "properties": {"distance_m": round(booking.route_distance_m, 1),
                           "duration_s": round(booking.route_duration_s), "source": booking.route_source}}


def event_payload(booking: EscortBooking, event: str, title: str) -> dict:
    """The `escort.offered` / `escort.updated` socket payload."""
    return {"booking_id": str(booking.id), "event": event, "status": booking.status,
            "district": booking.district_code, "meet_at": _iso(booking.meet_at), "title": title,
            "scouts": [str(a.scout_id) for a in booking.assignments if a.released_at is None]}


def _iso(moment):
    return moment.isoformat() if moment is not None else None
