"""Walk monitors, service side: fixes (from walk_ingest) and clock ticks go through the pure detectors
of geo.track (detect), small named checks here choose what to act on (decide), and durable pushes plus
socket events carry it out (deliver).

Every change to a walk's monitor state happens under `SELECT ... FOR UPDATE` of the walk row, so two
api processes, or an api process and a worker, never race and the outcome is the same whichever
process got the fix. The clock-driven monitors run as one chain of jobs per walk (`walk.timers`);
each link carries the walk's `timer_seq` and acts only while it is current, so each fires once.
"""
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone

from geoalchemy2.shape import to_shape
from sqlalchemy import select, update
from sqlalchemy.orm import defer, object_session

from geo import track
from geo.corridor import RouteCorridor
from notifications import messages
from safety_api.models import GuardianLink, User, Walk, WalkAlert, WalkGuardian
from safety_api.realtime import broadcast, events, rooms
from safety_api.services import deliveries, jobs

DEFAULT_ACCURACY_M = 30.0  # a fix sent without accuracy counts as an ordinary city fix
ENDED = ("arrived", "finished")
# A walk's fixes are those taken after it started, give or take a phone clock a few minutes slow; an older one
# says where the phone was before the walk (hours before, perhaps), never where the walker is.
BEFORE_START_SKEW = timedelta(minutes=5)
CORRIDOR_CACHE_SIZE = 4096
# Loaded only when the corridor is not cached yet: the hot path needs state, not geometry.
_GEOMETRY = (defer(Walk.route), defer(Walk.origin), defer(Walk.destination), defer(Walk.route_properties))


@dataclass(frozen=True)
class Notice:
    """A socket event to send once the transaction that caused it has committed."""

    event: str
    payload: dict
    to: tuple  # ((namespace, room), ...)


def lock_walk(session, walk_id, *, light: bool = False) -> Walk | None:
    """Load the walk and hold its row until commit: the one door to its monitor state."""
    query = select(Walk).where(Walk.id == walk_id).with_for_update(of=Walk)
    if light:
        query = query.options(*_GEOMETRY)
    return session.scalar(query.execution_options(populate_existing=True))


def lock_options() -> tuple:
    """Loader options for locking walks to fold fixes in: state now, geometry only if the corridor is not cached."""
    return _GEOMETRY


def walk_opened(walk: Walk) -> datetime:
    """The earliest time a fix of this walk may carry."""
    return walk.started_at - BEFORE_START_SKEW


def clock_offset_s(walk: Walk, heard: list, *, now: datetime) -> float:
    """Seconds the walker's phone clock is known to run slow, this upload (phone times `heard`) included."""
    state = track.receive(track.MonitorState.from_dict(walk.monitor_state), heard, now=seconds(now))
    return track.clock_offset(state, monitor_config(walk))


def monitor_config(walk: Walk) -> track.MonitorConfig:
    """The detectors' thresholds for this walk, as fixed when it started."""
    return track.MonitorConfig(**walk.settings["monitor"])


_corridors: OrderedDict = OrderedDict()
_corridors_lock = threading.Lock()


def corridor_of(walk: Walk) -> RouteCorridor:
    """Start point, planned route, destination as one corridor; cached per process (a route never changes)."""
    with _corridors_lock:
        found = _corridors.get(walk.id)
        if found is not None:
            _corridors.move_to_end(walk.id)
            return found
    start, goal = to_shape(walk.origin), to_shape(walk.destination)
    built = corridor_for((start.x, start.y), to_shape(walk.route).coords, (goal.x, goal.y))
    with _corridors_lock:
        _corridors[walk.id] = built
        while len(_corridors) > CORRIDOR_CACHE_SIZE:
            _corridors.popitem(last=False)
    return built


def corridor_for(origin_lonlat, route_lonlat, destination_lonlat) -> RouteCorridor:
    """The walker goes from the door to the street, along the route, and from the street to the door."""
    return RouteCorridor.from_coords([tuple(origin_lonlat), *route_lonlat, tuple(destination_lonlat)])


def seconds(moment: datetime) -> float:
    return moment.timestamp()


def moment(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


_STATE_FIELDS = tuple(f.name for f in fields(track.MonitorState))


def state_dict(state: track.MonitorState) -> dict:
    """MonitorState.to_dict() without dataclasses.asdict's deep copy (a third of a fold's time); same dict."""
    out = {name: getattr(state, name) for name in _STATE_FIELDS}
    out["raised"] = list(state.raised)
    return out


def _track_fix(fix, offset_s: float = 0.0) -> track.Fix:
    accuracy = fix.accuracy_m if fix.accuracy_m is not None else DEFAULT_ACCURACY_M
    return track.Fix(lat=fix.lat, lon=fix.lon, accuracy_m=accuracy, t=seconds(fix.t) + offset_s)


def fold(session, walk: Walk, fresh: list, *, now: datetime, walker, heard=None) -> list:
    """Run observe() over a walk's new fixes, late ones first (they never alert), then act on what it found.
    `heard`: the phone times of every fix of the upload, those refused included (default: the new ones).
    The caller holds the walk's row lock and commits; returns the socket notices to send after."""
    config, corridor, now_s = monitor_config(walk), corridor_of(walk), seconds(now)
    # The upload itself says the phone is alive; a phone clock that is consistently slow is put right before
    # judging the fixes (the trail keeps the phone's own times), else every fix would be "late".
    before = track.MonitorState.from_dict(walk.monitor_state)
    state = track.receive(before, [seconds(f.t) for f in fresh] if heard is None else heard, now=now_s)
    offset = track.clock_offset(state, config)
    on_time, late = track.dedupe_and_order([_track_fix(f, offset) for f in fresh], last_t=state.last_t, now=now_s,
                                           stale_s=config.stale_s, max_future_s=config.max_future_s)
    found = []
    for fix in late + on_time:
        state, alerts = track.observe(state, fix, corridor=corridor, config=config, now=now_s)
        found += alerts
    walk.monitor_state = state_dict(state)
    notices = []
    if track.SIGNAL_LOST in before.raised and track.SIGNAL_LOST not in state.raised:
        notices += _settle_signal_lost(session, walk, now=now, walker=walker)
    notices += act(session, walk, found, now=now, walker=walker)
    if walk.status == "active":
        _rearm_if_sooner(session, walk, state, config, now)
    return notices


def _settle_signal_lost(session, walk: Walk, *, now: datetime, walker) -> list:
    """The phone is heard again: its open signal_lost prompts need no answer any more (their check-in jobs
    then find them settled and do nothing: the walker is not turned into an SOS for a silence that ended),
    and whoever saw the prompt is told."""
    settled = session.execute(
        update(WalkAlert).where(WalkAlert.walk_id == walk.id, WalkAlert.kind == track.SIGNAL_LOST,
                                WalkAlert.status == "open")
        .values(status="closed", settled_at=now).returning(WalkAlert.id)).scalars().all()
    if not settled:
        return []
    payload = {"walk_id": str(walk.id), "alert": "signal_restored", "settled": sorted(settled),
               "at": now.isoformat(), "message": f"{walker.name}님의 위치 신호가 다시 잡혔습니다."}
    return [Notice(events.WALK_ALERT, payload, walk_rooms(walk))]


def _about_the_present(alert: track.Alert, now_s: float, stale_s: float) -> bool:
    """A late or stale fix never raises an alert about now."""
    return alert.t >= now_s - stale_s


def decide(alerts: list, *, status: str, now_s: float, stale_s: float) -> list:
    """The alerts to act on: only on a walk still watched, only about the present, each kind once;
    arrival ends the walk, so nothing else found in the same breath matters."""
    if status != "active":
        return []
    keep = {}
    for alert in alerts:
        if _about_the_present(alert, now_s, stale_s):
            keep.setdefault(alert.kind, alert)
    if track.ARRIVED in keep:
        return [keep[track.ARRIVED]]
    return list(keep.values())


def act(session, walk: Walk, alerts: list, *, now: datetime, walker=None) -> list:
    """Record each decided alert; prompt the walker with a check-in deadline, or end the walk on arrival."""
    chosen = decide(alerts, status=walk.status, now_s=seconds(now), stale_s=monitor_config(walk).stale_s)
    if not chosen:
        return []
    walker = walker or session.get(User, walk.walker_id)
    guardian_ids = chosen_guardian_ids(session, walk_id=walk.id)
    pending = _open_prompt_kinds(session, walk)
    notices = []
    for alert in chosen:
        if alert.kind in pending:  # one prompt of a kind at a time: its answer (or its expiry) covers both
            continue
        row = WalkAlert(walk_id=walk.id, kind=alert.kind, t=moment(alert.t), raised_at=now, detail=alert.detail)
        session.add(row)
        if alert.kind == track.ARRIVED:
            row.status, row.settled_at = "closed", now
            ended = end(session, walk, "arrived", now=now, guardian_ids=guardian_ids)
            push(session, walk, "arrived", guardian_ids, person_name=walker.name)
        else:
            row.status, ended = "open", []
            row.checkin_by = now + timedelta(seconds=walk.settings["checkin_window_s"])
            session.flush()
            jobs.enqueue(session, kind="walk.checkin_expired", payload={"walk_id": str(walk.id), "alert_id": row.id},
                         run_at=row.checkin_by, dedupe_key=f"walk-checkin:{row.id}")
            push(session, walk, alert.kind, [walk.walker_id])
        notices += [Notice(events.WALK_ALERT, alert_payload(walk, row, walker.name), walk_rooms(walk, guardian_ids)),
                    *ended]
    return notices


def _open_prompt_kinds(session, walk: Walk) -> set:
    return set(session.scalars(select(WalkAlert.kind).where(WalkAlert.walk_id == walk.id, WalkAlert.status == "open")))


def alert_payload(walk: Walk, row: WalkAlert, person_name: str) -> dict:
    """The `walk.alert` event: what happened, and by when the walker must answer."""
    payload = messages.walk_alert_payload({"id": walk.id}, row.kind, person_name=person_name,
                                          at=row.raised_at.isoformat())
    return {**payload, "alert_id": row.id, "t": row.t.isoformat(),
            "checkin_by": row.checkin_by.isoformat() if row.checkin_by else None}


def walk_rooms(walk: Walk, guardian_ids=None) -> tuple:
    """Where a walk event goes: the walker's own devices, and the watch rooms of the guardians allowed to watch
    *now* (chosen for the walk, link still accepted), read in the caller's transaction unless given. A guardian
    whose link ended keeps its socket but is no longer addressed. (A walker's device that watches is also in
    the walker's room, so the walker's own watch room is left out here: no event twice.)"""
    if guardian_ids is None:
        session = object_session(walk)
        guardian_ids = chosen_guardian_ids(session, walk_id=walk.id) if session is not None else ()
    return ((events.MOBILE, rooms.user(walk.walker_id)),
            *((events.MOBILE, rooms.walk_watcher(walk.id, g)) for g in guardian_ids))


def position_rooms(walk: Walk, guardian_ids) -> tuple:
    """Who gets the walk's live positions: the walker's devices that watch it and the allowed guardians."""
    return tuple(rooms.walk_watcher(walk.id, viewer) for viewer in (walk.walker_id, *guardian_ids))


def push(session, walk: Walk, kind: str, user_ids, *, person_name=None):
    """Durable pushes (rows + jobs in this transaction): a prompt for the walker, news for guardians."""
    tokens = deliveries.tokens_by_user(session, list(user_ids))
    view = {"id": str(walk.id), "status": walk.status}
    deliveries.plan(session, subject=f"walk:{walk.id}", reason=f"walk.{kind}", messages_by_user={
        u: messages.walk_alert(view, kind, t, person_name=person_name) for u, t in tokens.items()})


def chosen_guardian_ids(session, *, walk_id) -> list:
    """The guardians chosen for this walk whose link the walker has not since ended."""
    return [g for ids in allowed_guardians(session, [walk_id]).values() for g in ids]


def allowed_guardians(session, walk_ids) -> dict:
    """walk id -> the guardians chosen for it whose link is still accepted, for many walks in one query
    (the ingest asks once per group, with the walks locked)."""
    found: dict = {}
    if not walk_ids:
        return found
    rows = session.execute(allowed_guardians_of(walk_ids).order_by(WalkGuardian.walk_id, WalkGuardian.guardian_id))
    for walk_id, guardian_id in rows:
        found.setdefault(walk_id, []).append(guardian_id)
    return found


def allowed_guardians_of(walk_ids):
    """The SELECT of (walk_id, guardian_id): the guardians chosen for these walks whose link is still accepted."""
    return (select(WalkGuardian.walk_id, WalkGuardian.guardian_id)
            .join(Walk, Walk.id == WalkGuardian.walk_id)
            .join(GuardianLink, (GuardianLink.guardian_id == WalkGuardian.guardian_id)
                  & (GuardianLink.protected_id == Walk.walker_id))
            .where(WalkGuardian.walk_id.in_(list(walk_ids)), GuardianLink.status == "active"))


def watch_rooms_of(session, *, protected_id, guardian_id) -> list:
    """The watch rooms a guardian can be in for this person's walks that are not over (to close them when
    their link ends; events to ended walks are addressed by walk_rooms anyway)."""
    walk_ids = session.scalars(
        select(WalkGuardian.walk_id).join(Walk, Walk.id == WalkGuardian.walk_id)
        .where(WalkGuardian.guardian_id == guardian_id, Walk.walker_id == protected_id,
               Walk.status.in_(("active", "escalated"))))
    return [rooms.walk_watcher(walk_id, guardian_id) for walk_id in walk_ids]


def end(session, walk: Walk, status: str, *, now: datetime, guardian_ids=None) -> list:
    """Close the walk: open prompts lapse, and the timer chain stops at its next link."""
    walk.status, walk.ended_at, walk.timer_due = status, now, None
    session.execute(update(WalkAlert).where(WalkAlert.walk_id == walk.id, WalkAlert.status == "open")
                    .values(status="closed", settled_at=now))
    payload = {"walk_id": str(walk.id), "status": status, "at": now.isoformat()}
    return [Notice(events.WALK_ENDED, payload, walk_rooms(walk, guardian_ids))]


def tell(notices: list):
    """Send the socket events of a committed change (best effort: pushes are the durable path)."""
    for notice in notices:
        for namespace, room in notice.to:
            broadcast.to_room(namespace, room, notice.event, notice.payload)


def next_due(state: track.MonitorState, *, expected_arrival_s: float, config, now_s: float) -> float:
    """When check_timers() could next have something to say; never sooner than a second from now.
    Mirrors geo.track's signal_lost and overdue rules; if it is ever early, the link simply re-arms."""
    due = []
    if track.SIGNAL_LOST not in state.raised:
        last = track.last_heard(state)
        due.append(max(last + config.signal_lost_s, state.signal_after or 0.0))
    if track.OVERDUE not in state.raised:
        due.append(state.overdue_after if state.overdue_after is not None
                   else expected_arrival_s + config.overdue_grace_s)
    return max(min(due, default=now_s + config.signal_lost_s), now_s + 1.0)


def arm(session, walk: Walk, due: datetime):
    """Queue the next link of the walk's timer chain; earlier links become no-ops."""
    walk.timer_seq = (walk.timer_seq or 0) + 1
    walk.timer_due = due
    jobs.enqueue(session, kind="walk.timers", payload={"walk_id": str(walk.id), "seq": walk.timer_seq},
                 run_at=due, dedupe_key=f"walk-timers:{walk.id}:{walk.timer_seq}")


def _due(walk: Walk, state, config, now: datetime) -> datetime:
    return moment(next_due(state, expected_arrival_s=seconds(walk.expected_arrival), config=config,
                           now_s=seconds(now)))


def _rearm_if_sooner(session, walk: Walk, state, config, now: datetime):
    """Fixes mostly push deadlines later (nothing to do); a returning signal can bring one sooner."""
    due = _due(walk, state, config, now)
    if walk.timer_due is None or due < walk.timer_due - timedelta(seconds=1):
        arm(session, walk, due)


def rearm(session, walk: Walk, now: datetime):
    """Re-arm after the state changed outside a fix (a check-in)."""
    _rearm_if_sooner(session, walk, track.MonitorState.from_dict(walk.monitor_state), monitor_config(walk), now)


def run_timers(session, *, walk_id, seq: int, now: datetime) -> bool:
    """One link of the chain: signal_lost and overdue, then the next link. Stale links do nothing."""
    walk = lock_walk(session, walk_id, light=True)
    if walk is None or walk.status != "active" or walk.timer_seq != seq:
        session.rollback()
        return False
    config = monitor_config(walk)
    state, alerts = track.check_timers(track.MonitorState.from_dict(walk.monitor_state), now=seconds(now),
                                       expected_arrival=seconds(walk.expected_arrival), config=config)
    walk.monitor_state = state_dict(state)
    notices = act(session, walk, alerts, now=now)
    if walk.status == "active":
        arm(session, walk, _due(walk, state, config, now))
    session.commit()
    tell(notices)
    return True

