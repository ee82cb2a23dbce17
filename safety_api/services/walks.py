"""Walk-home monitoring (안심귀가): start a walk on a planned route, show it to those allowed, answer its
prompts, escalate an unanswered one to an SOS, and finish it (retention: `retention`).

The monitors themselves (fixes, timers, alerts) live in walk_monitor.
"""
import uuid
from datetime import datetime, timedelta

from geoalchemy2 import WKTElement
from geoalchemy2.shape import to_shape
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from geo import track
from geo.projection import haversine_m
from notifications.push import PushMessage
from safety_api.clock import to_seoul, utcnow
from safety_api.errors import Conflict, Invalid, NotFound
from safety_api.models import Incident, IncidentEvent, LocationFix, User, Walk, WalkAlert, WalkGuardian
from safety_api.policy import check_view_walk, check_walker, check_watch_walk, operated_incidents
from safety_api.realtime import broadcast, events, rooms
from safety_api.services import (
    access_log,
    deliveries,
    guardians,
    incidents,
    retention,
    routes,
    sos_raise,
    walk_sos,
)
from safety_api.services import walk_monitor as monitor
from safety_api.services.walk_monitor import Notice, lock_walk, seconds, tell, walk_rooms

MIN_WALK_M = 80.0  # closer than this, the walker is already at the arrival circle
TRAIL_LIMIT = 5000  # about 80 minutes of fixes at one a second


def start(session, *, walker: User, origin: tuple, destination: tuple, profile: str, guardian_ids: list,
          route_settings: dict, settings: dict, now: datetime, night: bool) -> tuple[Walk, dict]:
    """Plan the route, start the monitors' clock, and tell the chosen guardians (push + walk.started)."""
    if haversine_m(origin[1], origin[0], destination[1], destination[0]) < MIN_WALK_M:
        raise Invalid("You are already at your destination.", errors=[{"field": "to", "message": "Too close."}])
    chosen = guardians.require_active_guardians(session, protected_id=walker.id, guardian_ids=guardian_ids)
    route = routes.plan_route(session, settings=route_settings, origin=origin, destination=destination,
                              profile=profile, night=night)
    feature = routes.as_feature(route)
    expected = now + timedelta(seconds=expected_arrival_s(route.duration_s, settings))
    walk = Walk(id=uuid.uuid4(), walker_id=walker.id, status="active", profile=profile,
                origin=_point(origin), destination=_point(destination), route=_line(route.coords),
                route_properties=feature["properties"], started_at=now, expected_arrival=expected,
                settings=settings, monitor_state=track.MonitorState.start(seconds(now)).to_dict(), timer_seq=0)
    session.add(walk)
    session.add_all([WalkGuardian(walk_id=walk.id, guardian_id=g) for g in chosen])
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        # Name the walk: a phone whose first answer was lost must be able to resume or finish it.
        active = session.scalar(select(Walk.id).where(Walk.walker_id == walker.id, Walk.status == "active"))
        raise Conflict(f"You already have a walk in progress ({active}); finish it first.",
                       errors=[{"field": "walk_id", "message": str(active)}]) from None
    for guardian_id in chosen:  # walk.started below gives them the route: from where the walker is to (usually) home
        access_log.record(session, viewer_id=guardian_id, subject_user_id=walker.id, subject_kind="walk",
                          subject_id=walk.id, purpose="walk.started")
    monitor.arm(session, walk, monitor.moment(monitor.next_due(
        track.MonitorState.from_dict(walk.monitor_state), expected_arrival_s=seconds(expected),
        config=monitor.monitor_config(walk), now_s=seconds(now))))
    tokens = deliveries.tokens_by_user(session, chosen)
    deliveries.plan(session, subject=f"walk:{walk.id}", reason="walk.started", messages_by_user={
        u: started_messages(walk, t, person_name=walker.name) for u, t in tokens.items()})
    told = {"walk_id": str(walk.id), "walker": {"id": str(walker.id), "name": walker.name}, "route": feature,
            "started_at": now.isoformat(), "expected_arrival": expected.isoformat()}
    session.commit()
    for guardian_id in chosen:
        broadcast.to_user(guardian_id, events.WALK_STARTED, told)
    return walk, feature


def _point(lat_lon: tuple) -> WKTElement:
    return WKTElement(f"POINT({lat_lon[1]} {lat_lon[0]})", srid=4326)


def _line(coords_lonlat) -> WKTElement:
    return WKTElement("LINESTRING(" + ", ".join(f"{lon} {lat}" for lon, lat in coords_lonlat) + ")", srid=4326)


def started_messages(walk: Walk, tokens, *, person_name: str) -> list:
    """The push telling a guardian that a walk began. (Belongs with notifications.messages' builders.)"""
    eta = to_seoul(walk.expected_arrival).strftime("%H:%M")
    data = {"type": "walk", "id": str(walk.id), "event": "started", "status": "active"}
    return [PushMessage(token=token, platform=platform, data=dict(data), title="안심귀가 시작",
                        body=f"{person_name}님이 안심귀가를 시작했습니다. 도착 예정 {eta}", urgency="normal",
                        collapse_key=f"walk-{walk.id}", ttl_s=3600) for token, platform in tokens]


def expected_arrival_s(duration_s: float, settings: dict) -> float:
    """Seconds from the start to the expected arrival: the route's walking time plus a margin."""
    return duration_s * (1 + settings["arrival_margin_ratio"]) + settings["arrival_margin_s"]


def route_feature(walk: Walk) -> dict:
    """The planned route as the GeoJSON Feature the walk started with."""
    coords = [list(c) for c in to_shape(walk.route).coords]
    return {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords},
            "properties": walk.route_properties}


def trail_of(session, walk_id, limit: int = TRAIL_LIMIT, *, incident_ids=None) -> list:
    """Where the walker has been, in time order (late fixes in their place); with `incident_ids`, only the
    fixes filed under those incidents (their evidence)."""
    own = select(LocationFix).where(LocationFix.subject_kind == "walk", LocationFix.subject_id == walk_id)
    if incident_ids is not None:
        own = own.where(LocationFix.incident_id.in_(list(incident_ids)))
    newest = own.order_by(LocationFix.t.desc()).limit(limit).subquery()
    rows = session.execute(select(newest.c.lat, newest.c.lon, newest.c.accuracy_m, newest.c.t).order_by(newest.c.t))
    return [{"lat": lat, "lon": lon, "accuracy_m": accuracy, "t": t.isoformat()} for lat, lon, accuracy, t in rows]


def view(session, walk: Walk, *, sos=None) -> dict:
    """The walk with its route, alerts, open prompt, last fix and trail. `sos`: the walker and the chosen
    guardians see all of it; staff pass the walk's incidents they operate, and see the walk as far as it was
    theirs (staff_until)."""
    start, goal = to_shape(walk.origin), to_shape(walk.destination)
    alerts = list(session.scalars(select(WalkAlert).where(WalkAlert.walk_id == walk.id).order_by(WalkAlert.id)))
    prompt = next((a for a in alerts if a.status == "open"), None)
    incident_id = session.scalar(select(Incident.id).where(Incident.walk_id == walk.id)
                                 .order_by(Incident.created_at.desc(), Incident.id).limit(1))
    last_fix, trail = walk.last_fix, None
    status, ended_at, escalated_at = walk.status, walk.ended_at, walk.escalated_at
    if sos is not None:
        until, theirs = staff_until(sos), max(sos, key=lambda i: i.created_at)
        incident_id = theirs.id  # not a later SOS of the walk's, which may be another district's
        trail = trail_of(session, walk.id, incident_ids=[i.id for i in sos])
        if until is not None:  # the walk as it stood at the close: whether and when the walker got home is not theirs
            alerts = [a for a in alerts if a.raised_at <= until]
            prompt = prompt if prompt in alerts else None
            last_fix = last_fix if last_fix and datetime.fromisoformat(last_fix["t"]) <= until else \
                (trail[-1] if trail else None)
            if ended_at is None or ended_at > until:
                status, ended_at = "escalated", None
            if escalated_at is None or escalated_at > until:
                escalated_at = theirs.created_at  # the walk became this SOS
    return {
        "id": str(walk.id), "status": status, "walker_id": str(walk.walker_id), "profile": walk.profile,
        "from": {"lat": start.y, "lon": start.x}, "to": {"lat": goal.y, "lon": goal.x},
        "route": route_feature(walk), "started_at": walk.started_at.isoformat(),
        "expected_arrival": walk.expected_arrival.isoformat(), "ended_at": _iso(ended_at),
        "escalated_at": _iso(escalated_at), "incident_id": str(incident_id) if incident_id else None,
        "guardian_ids": [str(g) for g in session.scalars(select(WalkGuardian.guardian_id)
                                                         .where(WalkGuardian.walk_id == walk.id))],
        "last_fix": last_fix, "alerts": [alert_view(a) for a in alerts],
        "checkin": {"alert_id": prompt.id, "kind": prompt.kind, "checkin_by": prompt.checkin_by.isoformat()}
        if prompt else None,
        "trail": trail if trail is not None else trail_of(session, walk.id),
    }


def staff_until(sos: list) -> datetime | None:
    """Until when the walk was the operators' who operate these incidents of it: None while one of them is open
    (the walker is theirs now), else the latest close. What the walker did after that is not theirs
    (docs/monitoring.md): only fixes filed under those incidents, alerts raised until then, and the last fix
    only if taken by then."""
    if any(i.closed_at is None for i in sos):
        return None
    return max(i.closed_at for i in sos)


def alert_view(alert: WalkAlert) -> dict:
    return {"id": alert.id, "kind": alert.kind, "status": alert.status, "t": alert.t.isoformat(),
            "raised_at": alert.raised_at.isoformat(), "checkin_by": _iso(alert.checkin_by),
            "settled_at": _iso(alert.settled_at), "detail": alert.detail}


def _iso(value):
    return value.isoformat() if value else None


def _is_chosen(session, walk: Walk | None, user: User) -> bool:
    return walk is not None and user.id != walk.walker_id and \
        user.id in monitor.chosen_guardian_ids(session, walk_id=walk.id)


def get_for_viewer(session, *, viewer: User, walk_id) -> dict:
    """The walk for its walker, its chosen guardians, or the operators of its SOS (as far as it was theirs);
    third parties are logged."""
    walk = session.get(Walk, walk_id)
    chosen = _is_chosen(session, walk, viewer)
    sos = []
    if walk is not None and viewer.role in ("operator", "admin"):
        sos = walk_sos.incidents_of(session, walk.id)
    check_view_walk(viewer, walk, chosen_guardian=chosen, incidents=sos)
    access_log.record(session, viewer_id=viewer.id, subject_user_id=walk.walker_id, subject_kind="walk",
                      subject_id=walk.id, purpose="walk.read")
    whole = viewer.id == walk.walker_id or chosen
    body = view(session, walk, sos=None if whole else operated_incidents(viewer, sos))
    session.commit()
    return body


def watch(session, *, viewer_id, walk_id) -> dict:
    """May this person watch the walk live? Logs the watch and answers with where the walker is now."""
    walk = session.get(Walk, walk_id)
    viewer = session.get(User, viewer_id)
    if viewer is None:
        raise NotFound("No such walk.")
    check_watch_walk(viewer, walk, chosen_guardian=_is_chosen(session, walk, viewer))
    if walk.status in monitor.ENDED:
        raise Conflict(f"This walk has ended ({walk.status}).")
    access_log.record(session, viewer_id=viewer.id, subject_user_id=walk.walker_id, subject_kind="walk",
                      subject_id=walk.id, purpose="walk.watch")
    answer = {"ok": True, "walk": {"id": str(walk.id), "status": walk.status, "last_fix": walk.last_fix,
                                   "expected_arrival": walk.expected_arrival.isoformat(),
                                   "route": route_feature(walk)}}
    session.commit()
    return answer


def finish(session, *, user: User, walk_id, now: datetime) -> dict:
    """The walker ends the walk; finishing an ended walk just says how it ended."""
    walk = lock_walk(session, walk_id)
    check_walker(user, walk)
    notices = monitor.end(session, walk, "finished", now=now) if walk.status in ("active", "escalated") else []
    status = walk.status
    session.commit()
    tell(notices)
    return {"status": status}


def answer_checkin(session, *, user: User, walk_id, ok: bool, now: datetime) -> dict:
    """'I am fine' closes the open prompts and restarts their clocks; 'not fine' raises the SOS at once."""
    walk = lock_walk(session, walk_id)
    check_walker(user, walk)
    if walk.status != "active":
        session.rollback()
        raise Conflict("This walk already became an SOS; cancel that with your PIN if you are safe."
                       if walk.status == "escalated" else f"This walk has ended ({walk.status}).")
    if not ok:
        incident = escalate(session, walk, reason="the walker answered not fine", now=now)
        return {"status": "escalated", "answered": 0, "incident_id": str(incident.id)}
    prompts = list(session.scalars(select(WalkAlert).where(WalkAlert.walk_id == walk.id, WalkAlert.status == "open")))
    for prompt in prompts:
        prompt.status, prompt.settled_at = "answered", now
    kinds = sorted({p.kind for p in prompts})
    if kinds:
        config = monitor.monitor_config(walk)
        state = track.acknowledge(track.MonitorState.from_dict(walk.monitor_state), now=seconds(now),
                                  config=config, kinds=kinds)
        walk.monitor_state = monitor.state_dict(state)
        monitor.rearm(session, walk, now)
    told = Notice(events.WALK_ALERT, {"walk_id": str(walk.id), "alert": "checked_in", "answered": kinds,
                                      "at": now.isoformat(), "message": f"{user.name}님이 괜찮다고 응답했습니다."},
                  walk_rooms(walk))
    session.commit()
    tell([told] if kinds else [])
    return {"status": "active", "answered": len(prompts)}


def expire_checkin(session, *, walk_id, alert_id: int, now: datetime) -> bool:
    """The check-in window closed: an unanswered prompt becomes an SOS (walk_escalation). Fires once."""
    walk = lock_walk(session, walk_id)
    alert = session.get(WalkAlert, alert_id)
    if walk is None or alert is None or alert.walk_id != walk.id:
        return False
    unanswered = alert.status == "open" and walk.status == "active"
    # A rerun after a crash mid-way (the incident committed, the telling lost) tells again; another prompt that
    # the same escalation settled finds it escalated too, and must not tell a second time.
    half_done = alert.status == "escalated" and walk.status == "escalated" and _escalated_by(session, walk, alert)
    if not (unanswered or half_done):
        session.rollback()
        return False
    escalate(session, walk, reason=f"no check-in after {alert.kind}", now=now, alert_id=alert.id)
    return True


def _escalated_by(session, walk: Walk, alert: WalkAlert) -> bool:
    """Whether this prompt is the one whose expiry escalated the walk: its incident's `walk_escalated` event
    names it (`alert_id`: null when the walker answered "not fine"; absent from events older than the name,
    which count for any prompt)."""
    data = session.scalar(select(IncidentEvent.data).join(Incident).where(  # by the caller's key's unique index
        Incident.caller_id == walk.walker_id, Incident.idempotency_key == escalation_key(session, walk),
        IncidentEvent.kind == "walk_escalated").limit(1))
    return data is None or "alert_id" not in data or data["alert_id"] == alert.id


def escalate(session, walk: Walk, *, reason: str, now: datetime, alert_id: int | None = None) -> Incident:
    """Turn the walk into an SOS incident linked to it; its trail becomes the incident's evidence."""
    walker = session.get(User, walk.walker_id)
    if walk.status == "active":
        walk.status, walk.escalated_at, walk.timer_due = "escalated", now, None
        session.execute(update(WalkAlert).where(WalkAlert.walk_id == walk.id, WalkAlert.status == "open")
                        .values(status="escalated", settled_at=now))
    lat, lon, accuracy = _where(walk)

    def as_evidence(incident):
        """Committed with the incident, or not at all: its audit event and the walk's trail as its evidence."""
        incidents.add_event(session, incident, "walk_escalated", walk_id=str(walk.id), reason=reason,
                            alert_id=alert_id)
        _link_trail(session, walk, incident)

    # raise_sos commits the walk's change with the incident; the key makes a rerun find the same incident.
    incident, created = sos_raise.raise_sos(
        session, caller=walker, lat=lat, lon=lon, accuracy_m=accuracy, trigger="walk_escalation",
        idempotency_key=escalation_key(session, walk), escalate_after_s=walk.settings["escalate_after_s"],
        walk_id=walk.id, with_incident=as_evidence)
    if not created:  # a rerun: the incident and its evidence are in; fixes stored since then join it
        _link_trail(session, walk, incident)
    notices = _escalated_notices(session, walk, incident, reason)
    session.commit()
    tell(notices)
    return incident


def escalation_key(session, walk: Walk) -> str:
    """The Idempotency-Key of the walk's present escalation: a walk watched again after its SOS closed for the
    walker (walk_sos.resume) may escalate again, to a new incident. The SOS already over for the walker are
    counted, so a rerun of an escalation (its incident still open for them) finds that incident."""
    over = session.scalar(select(func.count()).select_from(Incident).where(
        Incident.walk_id == walk.id, Incident.caller_closed_at.is_not(None)))
    return sos_raise.walk_escalation_key(walk.id, over + 1)


def _link_trail(session, walk: Walk, incident: Incident):
    session.execute(update(LocationFix).where(LocationFix.subject_kind == "walk", LocationFix.subject_id == walk.id,
                                              LocationFix.incident_id.is_(None)).values(incident_id=incident.id))


def _where(walk: Walk) -> tuple:
    """Where the SOS is raised: the walker's last fix, or the start while there is none taken since the walk
    began (an older one, stored before such fixes were refused, says where the phone was hours ago), its phone
    clock's known lag allowed for as when the fixes were taken in (walk_ingest._split_by_span)."""
    lag = timedelta(seconds=monitor.clock_offset_s(walk, [], now=utcnow()))
    if walk.last_fix and datetime.fromisoformat(walk.last_fix["t"]) >= monitor.walk_opened(walk) - lag:
        return walk.last_fix["lat"], walk.last_fix["lon"], walk.last_fix.get("accuracy_m")
    start = to_shape(walk.origin)
    return start.y, start.x, None


def _escalated_notices(session, walk: Walk, incident: Incident, reason: str) -> list:
    """Operators get the route and the trail at once; the walker and watchers learn that help is coming."""
    base = {"walk_id": str(walk.id), "incident_id": str(incident.id), "reason": reason,
            "at": _iso(walk.escalated_at)}
    control = {**base, "district": incident.district_code, "route": route_feature(walk),
               "trail": trail_of(session, walk.id, incident_ids=[incident.id]), "last_fix": walk.last_fix}
    room = rooms.incident_operators(incident.district_code, escalated=incident.escalated_at is not None)
    return [Notice(events.WALK_ESCALATED, control, ((events.CONTROL, room),)),
            Notice(events.WALK_ESCALATED, base, walk_rooms(walk))]


def timers_job(session, payload, worker):
    """Worker entry for `walk.timers`; it also keeps the retention purge scheduled while walks run."""
    monitor.run_timers(session, walk_id=payload["walk_id"], seq=payload["seq"], now=utcnow())
    retention.schedule_purge(session, now=utcnow(), every_s=worker.app.config["FIX_PURGE_INTERVAL_S"])


def checkin_job(session, payload, _worker):
    """Worker entry for `walk.checkin_expired`."""
    expire_checkin(session, walk_id=payload["walk_id"], alert_id=payload["alert_id"], now=utcnow())
