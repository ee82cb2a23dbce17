"""Escort booking with safe-return scouts (안심귀가스카우트): book, pair up, walk home, and the timers.

The pair and the no-double-booking promises are the database's (see models/escort.py); the row
lock taken by `accept` only hands out slot numbers in order, so that a second scout is not refused
because of a race for slot 1.
"""
import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from geoalchemy2.shape import from_shape
from shapely.geometry import LineString
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from geo.projection import haversine_m
from notifications.messages import ESCORT_EVENTS, INFO_TTL_S, seoul_time
from safety_api.clock import utcnow
from safety_api.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unavailable
from safety_api.models import User
from safety_api.models.accounts import on_shift
from safety_api.models.escort import (
    PAIR,
    EscortAssignment,
    EscortBooking,
    EscortEvent,
    MeetingPoint,
)
from safety_api.policy import (
    check_change_booking,
)
from safety_api.realtime import broadcast, events
from safety_api.realtime.positions import batcher
from safety_api.services import access_log, jobs
from safety_api.services.escort_clock import check_start_time, set_late_timer, set_overrun_timer
from safety_api.services.escort_reads import log_reads
from safety_api.services.escort_rules import Policy, Violation, check_booking_time
from safety_api.services.escort_views import event_payload, point_of

DETOUR = 1.3  # walking routes wind about this much longer than the straight line
WALKING_MPS = 1.2  # an unhurried pace at night, in company
MIN_ESCORT_S = 300  # meeting and setting off take time even for the shortest walk
# How long the district's scouts, offered a booking, have to answer before the booking is flagged unconfirmed to
# its citizen and the operators: one made (or reopened) inside the flag's window is not flagged the moment the
# offer goes out, and one whose meeting is closer than this is not flagged at all (the flag would come after it).
OFFER_GRACE = timedelta(minutes=5)
TEXTS = {**ESCORT_EVENTS,  # events the notifications package has no text for yet
         "requested": ("귀가동행 예약", "{time} 귀가동행 예약이 접수되었습니다."),
         "accepted": ("귀가동행 수락", "{time} 귀가동행을 안심귀가스카우트 1명이 수락했습니다."),
         "unconfirmed": ("귀가동행 미확정", "{time} 귀가동행에 아직 스카우트 2명이 배정되지 않았습니다."),
         "reopened": ("귀가동행 스카우트 변경", "{time} 귀가동행 스카우트가 바뀌어 다시 배정하고 있습니다."),
         "timed_out": ("귀가동행 자동 종료", "{time} 귀가동행이 예정 시간을 넘겨 자동으로 종료되었습니다."),
         "late": ("귀가동행 지연",
                  "{time} 귀가동행이 약속 시간이 지나도록 시작되지 않았습니다. 관제센터에 알렸습니다.")}
FULL = "This booking already has its two scouts."
CONFLICTS = {  # constraint -> what the refused scout is told
    "ex_escort_assignments_scout_busy": "You already escort someone at an overlapping time.",
    "ck_escort_assignments_pair": FULL,
    "uq_escort_assignments_slot": FULL,
    "ex_escort_bookings_citizen_overlap": "You already have an escort booked at an overlapping time.",
    "uq_escort_bookings_citizen_key": "You already made a booking with this Idempotency-Key.",
}
# action -> (states it may start from, state it leads to, event name)
MOVES = {"start": (("confirmed",), "in_progress", "started"),
         "complete": (("in_progress",), "completed", "completed"),
         "no_show": (("confirmed",), "no_show", "no_show"),
         "cancel": (("requested", "confirmed"), "cancelled", "cancelled"),
         "time_out": (("in_progress",), "completed", "timed_out")}  # nobody's: the escort's time ran out
# Pushes about a meeting still to come: false once it has come (an offer, "the meeting starts soon", "no scouts
# yet", "two scouts will meet you"), so they live only until then (a retry must not bring them after it), and at
# least a minute. The others (started, completed, cancelled...) live as long as any notice (INFO_TTL_S).
UNTIL_THE_MEETING = ("offered", "reminder", "unconfirmed", "confirmed", "reopened")
MIN_PUSH_TTL_S = 60
# The lowest free slot (a scout removed by an admin frees theirs); a third scout gets slot 3, which the pair's
# check constraint refuses.
TAKE_SLOT_SQL = f"""
    INSERT INTO escort_assignments (booking_id, scout_id, slot, period)
    SELECT b.id, :scout,
           COALESCE((SELECT min(s) FROM generate_series(1, {PAIR}) s
                     WHERE s NOT IN (SELECT a.slot FROM escort_assignments a WHERE a.booking_id = b.id)), {PAIR} + 1),
           b.period
    FROM escort_bookings b WHERE b.id = :booking
    RETURNING slot"""
_TAKE_SLOT = text(TAKE_SLOT_SQL)


class RuleBroken(Invalid):
    """A 422 whose problem type names the service rule the meeting time breaks."""

    title = "Outside the escort service rules"

    def __init__(self, violation: Violation):
        super().__init__(violation.message, errors=[{"field": "meet_at", "message": violation.message}])
        self.kind = f"escort-{violation.rule}"


class KeyReused(Invalid):
    """A 422: the Idempotency-Key made another booking (draft-ietf-httpapi-idempotency-key-header)."""

    title, kind = "Idempotency-Key already used", "idempotency-key-reused"


@dataclass(frozen=True)
class PlannedRoute:
    coords: list  # (lon, lat) pairs
    distance_m: float
    duration_s: float
    source: str  # "engine" or "estimate"


def plan_escort_route(session, *, origin, destination, settings: dict | None) -> PlannedRoute:
    """The night-time safe route from the route engine, or an estimate when it has no street network."""
    if settings is not None and importlib.util.find_spec("safety_api.services.routes") is not None:
        from safety_api.services import routes
        try:
            found = routes.plan_route(session, settings=settings, origin=(origin[1], origin[0]),
                                      destination=(destination[1], destination[0]), profile="safe", night=True)
            return PlannedRoute([tuple(c) for c in found.coords], found.distance_m, found.duration_s, "engine")
        except (Unavailable, Invalid):  # no network loaded, or these points are beyond it
            pass
    return estimate_route(origin, destination)


def estimate_route(origin, destination) -> PlannedRoute:
    """A straight line, with the street network's usual detour and a night walking pace."""
    distance = float(haversine_m(origin[0], origin[1], destination[0], destination[1])) * DETOUR
    return PlannedRoute([tuple(origin), tuple(destination)], distance, distance / WALKING_MPS, "estimate")


def book(session, *, citizen: User, idempotency_key: str | None, meeting_point_id, meet_at: datetime, to: dict,
         **options) -> tuple[EscortBooking, bool]:
    """`create_booking` once per Idempotency-Key of the citizen: the key again answers the booking it made (and
    False), before any rule is judged, since a phone that timed out and retries must get its booking back, not a
    409 from its own overlap rule or a 422 for the minutes that passed. The key with another request is a 422."""
    request = {"meeting_point_id": meeting_point_id, "meet_at": meet_at, "to": to}
    earlier = _booked_with_key(session, citizen=citizen, key=idempotency_key, **request)
    if earlier is not None:
        return earlier, False
    try:
        return create_booking(session, citizen=citizen, idempotency_key=idempotency_key, **request, **options), True
    except Conflict:
        # A parallel retry with the key committed first (the citizen's row lock made this one wait for it): its
        # booking overlaps this one, or holds the key.
        earlier = _booked_with_key(session, citizen=citizen, key=idempotency_key, **request)
        if earlier is None:
            raise
        return earlier, False


def _booked_with_key(session, *, citizen: User, key: str | None, meeting_point_id, meet_at, to) -> EscortBooking | None:
    """The citizen's booking made with this key, if any; KeyReused when it was made for another request."""
    if key is None:
        return None
    booking = session.scalar(select(EscortBooking).where(EscortBooking.citizen_id == citizen.id,
                                                         EscortBooking.idempotency_key == key))
    if booking is None:
        return None
    if (booking.meeting_point_id, booking.meet_at, point_of(booking.destination)) != (
            meeting_point_id, meet_at, (to["lon"], to["lat"])):
        raise KeyReused("This Idempotency-Key made another booking; send a new key with a new booking.",
                        errors=[{"field": "Idempotency-Key", "message": "Used for another booking."}])
    return booking


def create_booking(session, *, citizen: User, policy: Policy, meeting_point_id, meet_at: datetime, to: dict,
                   route_settings: dict | None = None, now: datetime | None = None,
                   idempotency_key: str | None = None) -> EscortBooking:
    """Book an escort, offer it to the district's on-duty scouts and set its timers, in one transaction."""
    now = now or utcnow()
    point = session.get(MeetingPoint, meeting_point_id)
    if point is None or not point.active:
        raise Invalid("No such meeting point.", errors=[{"field": "meeting_point_id", "message": "Unknown."}])
    violation = check_booking_time(policy, district=point.district_code, meet_at=meet_at, now=now)
    if violation:
        raise RuleBroken(violation)
    route = plan_escort_route(session, origin=point_of(point.location), destination=(to["lon"], to["lat"]),
                              settings=route_settings)
    if route.distance_m > policy.max_walk_m:
        raise Invalid(f"Scouts walk at most {policy.max_walk_m:.0f} m; this walk is {route.distance_m:.0f} m.",
                      errors=[{"field": "to", "message": "Too far from the meeting point."}])
    ends_at = meet_at + timedelta(seconds=max(route.duration_s, MIN_ESCORT_S))
    booking = EscortBooking(
        citizen=citizen, district_code=point.district_code, meeting_point=point, meet_at=meet_at, ends_at=ends_at,
        busy_until=ends_at + policy.turnaround, destination=f"SRID=4326;POINT({to['lon']} {to['lat']})",
        route=from_shape(LineString(route.coords), srid=4326), route_distance_m=route.distance_m,
        route_duration_s=route.duration_s, route_source=route.source, idempotency_key=idempotency_key)
    take_turns(session, citizen)
    session.add(booking)
    _flush_or_conflict(session)
    record_event(session, booking, "requested", actor=citizen)
    scouts = staff_on_duty(session, "scout", booking.district_code)
    push(session, booking, "offered", scouts, staff=True)
    set_timer(session, booking, "escort.reminder", due=meet_at - policy.reminder)
    set_timer(session, booking, "escort.unconfirmed", due=max(meet_at - policy.unconfirmed, now + OFFER_GRACE))
    set_late_timer(session, booking, policy=policy)
    offered = event_payload(booking, "offered", TEXTS["offered"][0])
    session.commit()
    for scout_id in scouts:
        broadcast.to_user(scout_id, events.ESCORT_OFFERED, offered)
    broadcast.to_district(offered["district"], events.ESCORT_UPDATED, {**offered, "event": "requested"})
    return booking


def accept(session, *, scout: User, booking_id, now: datetime | None = None) -> EscortBooking:
    """Take a slot of the pair until the meeting time; the database refuses a third scout or a scout busy then
    (409)."""
    now = now or utcnow()
    booking = locked_booking(session, booking_id)
    with refusal_releases_lock(session):
        if holds(booking, scout.id):
            session.commit()
            return booking  # a retried accept
        take_turns(session, scout)  # after the booking's lock: always booking, then person
        if booking.district_code != scout.district_code:  # as the person is now: an admin may have moved them
            raise Forbidden("This booking belongs to another district.")
        if not scout.on_duty:
            raise Conflict("Go on duty before accepting escorts.")
        if booking.status not in ("requested", "confirmed"):  # a confirmed one is refused below, by the database
            raise Conflict(f"This booking is {booking.status}.")
        if now >= booking.meet_at:  # the citizen would be told of a pair after the time they waited for it
            raise Conflict("The meeting time has passed; this booking can no longer be accepted.")
        try:
            slot = session.scalar(_TAKE_SLOT, {"scout": scout.id, "booking": booking.id})
        except IntegrityError as exc:
            raise _conflict(exc) from None
    record_event(session, booking, "accepted", actor=scout, slot=slot)
    session.expire(booking, ["assignments"])
    event = "accepted"
    if len(held(booking)) == PAIR:
        booking.status, event = "confirmed", "confirmed"
        record_event(session, booking, "confirmed")
        push(session, booking, "confirmed", parties(booking))
        if booking.reminded_at is None:  # its timer may have come while the pair was incomplete, and done nothing
            rearm_timer(session, booking, "escort.reminder", now=now)
    log_reads(session, scout, [booking], now=now, purpose="escort.act")  # the answer tells where the citizen goes
    _commit_and_tell(session, booking, event)
    return booking


def start(session, *, user: User, booking_id, policy: Policy, now=None) -> EscortBooking:
    """The scouts met the citizen: confirmed -> in_progress, from `policy.start_lead` before the meeting until the
    escort's time is over. Nobody completing it, it closes by itself (the `escort.overrun` timer)."""
    return _move(session, user=user, booking_id=booking_id, action="start", now=now, policy=policy)


def complete(session, *, user: User, booking_id, now=None) -> EscortBooking:
    """The citizen is home: in_progress -> completed."""
    return _move(session, user=user, booking_id=booking_id, action="complete", now=now)


def no_show(session, *, user: User, booking_id, now=None) -> EscortBooking:
    """Nobody came to the meeting point: confirmed -> no_show, from the meeting time on."""
    return _move(session, user=user, booking_id=booking_id, action="no_show", now=now)


def cancel(session, *, user: User, booking_id, now=None) -> EscortBooking:
    """Cancel before the escort starts (the citizen, the district's operators, admins); frees the scouts."""
    return _move(session, user=user, booking_id=booking_id, action="cancel", now=now)


def _move(session, *, user, booking_id, action, now, policy: Policy | None = None) -> EscortBooking:
    allowed, target, event = MOVES[action]
    now = now or utcnow()
    booking = locked_booking(session, booking_id)
    with refusal_releases_lock(session):
        check_change_booking(user, booking, action)
        if booking.status == target:
            session.commit()
            return booking  # a retried request
        if booking.status not in allowed:
            raise Conflict(f"This booking is {booking.status}; it cannot {action.replace('_', '-')}.")
        if action == "no_show" and now < booking.meet_at:
            raise Conflict("A no-show can be recorded from the meeting time on.")
        if action == "start":
            check_start_time(booking, policy=policy, now=now)
    recipients = move_booking(session, booking, action=action, actor=user, now=now)
    if action == "start":
        set_overrun_timer(session, booking, policy=policy, now=now)
        _log_stream(session, booking)
    log_reads(session, user, [booking], now=now, purpose="escort.act")
    _commit_and_tell(session, booking, event, extra=recipients, ended=action == "complete")
    return booking


def _log_stream(session, booking):
    """From the start, the escort's positions go live to the district's control room: one access row per operator
    on shift there, for the stream (as a guardian's watch is one row for the session, not one per position)."""
    for operator_id in staff_on_duty(session, "operator", booking.district_code):
        access_log.record(session, viewer_id=operator_id, subject_user_id=booking.citizen_id, subject_kind="escort",
                          subject_id=booking.id, purpose="escort.stream")


def time_out(session, booking, *, now: datetime) -> tuple:
    """Close a locked escort still in progress past its closing time, in the caller's transaction: completed, event
    `timed_out` by no one, pushed to the parties and to the district's operators on shift, who may want to check
    on the pair. Returns (district, payload, user ids) to `tell` once committed."""
    move_booking(session, booking, action="time_out", actor=None, now=now)
    push(session, booking, "timed_out", staff_on_duty(session, "operator", booking.district_code), staff=True)
    return booking.district_code, event_payload(booking, "timed_out", TEXTS["timed_out"][0]), parties(booking)


def move_booking(session, booking, *, action, actor, now) -> list:
    """Make a checked move on a locked booking: its state and time, the scouts freed by a cancellation, the
    event, and the push to every party but the actor (returned: the freed scouts are no longer parties). No
    actor: the system's move (a timer's), pushed to every party."""
    _allowed, target, event = MOVES[action]
    recipients = [uid for uid in parties(booking) if actor is None or uid != actor.id]
    booking.status = target
    if action == "start":
        booking.started_at = now
    else:
        booking.finished_at = now
    if action == "cancel":
        session.execute(update(EscortAssignment).where(EscortAssignment.booking_id == booking.id,
                                                       EscortAssignment.released_at.is_(None))
                        .values(released_at=now))
        session.expire(booking, ["assignments"])
    record_event(session, booking, event, actor=actor)
    push(session, booking, event, recipients)
    return recipients


def set_timer(session, booking, kind, *, due: datetime, key: str | None = None):
    """Enqueue one of the booking's timers (`escort.reminder`, `escort.unconfirmed`) in the caller's transaction,
    unless it would come at or after the meeting time, when it has nothing left to say."""
    if due < booking.meet_at:
        jobs.enqueue(session, kind=kind, payload={"booking_id": str(booking.id)}, run_at=due,
                     dedupe_key=key or f"{kind}:{booking.id}")


def rearm_timer(session, booking, kind, *, now: datetime, delay: timedelta = timedelta(0)) -> bool:
    """Set a booking's timer again, due after `delay`, when its first one's time has passed: that one ran (or is
    about to) and found the booking in another state than the one it is for, which the booking has just come to.
    One still to come finds the booking as it is then, and needs no other; nor does a timer never set."""
    first = jobs.due_at(session, dedupe_key=f"{kind}:{booking.id}")
    if first is None or first > now or now + delay >= booking.meet_at:
        return False
    set_timer(session, booking, kind, due=now + delay, key=f"{kind}:{booking.id}:{now.isoformat()}")
    return True


def take_turns(session, person: User):
    """One person's claims on their time (a citizen's bookings, a scout's accepts) run one at a time.

    Two of them racing for overlapping periods would otherwise each wait on the other's row in the
    exclusion check, and PostgreSQL would end one with a deadlock (a 503) where the person is owed a 409.
    FOR NO KEY UPDATE still lets a new row's foreign key point at the person."""
    session.refresh(person, with_for_update={"key_share": True})


def locked_booking(session, booking_id, *, missing_ok=False) -> EscortBooking | None:
    """The booking, row-locked for this transaction (404 when missing, unless missing_ok)."""
    booking = session.scalar(select(EscortBooking).where(EscortBooking.id == booking_id)
                             .with_for_update(of=EscortBooking).execution_options(populate_existing=True))
    if booking is None and not missing_ok:
        session.rollback()
        raise NotFound("No such booking.")
    return booking


def held(booking) -> list:
    """The assignments still held (not released by a cancellation)."""
    return [a for a in booking.assignments if a.released_at is None]


def holds(booking, user_id) -> bool:
    """Whether this person is one of the booking's scouts."""
    return any(a.scout_id == user_id for a in held(booking))


def parties(booking) -> list:
    """The citizen and the scouts: who hears of every change."""
    return [booking.citizen_id, *(a.scout_id for a in held(booking))]


def staff_on_duty(session, role, district) -> list:
    """Ids of a district's scouts or operators on shift."""
    return list(session.scalars(select(User.id).where(User.role == role, User.district_code == district,
                                                      on_shift())))


def record_event(session, booking, kind, *, actor=None, **data):
    """Add an entry to the booking's audit trail in the caller's transaction."""
    session.add(EscortEvent(booking_id=booking.id, kind=kind, actor_id=actor.id if actor else None, data=data))


def push(session, booking, event, user_ids, *, staff: bool = False):
    """Queue one push to these people in the caller's transaction; the worker delivers it. `staff`: they are told
    as the district's staff on shift (offers to scouts, notices to operators), so the worker sends it only to
    those still on shift in the booking's district when it runs: an offer says where a citizen will wait at
    night, and a scout who went off duty, was moved or suspended meanwhile must not learn it."""
    ids = sorted({str(uid) for uid in user_ids})
    if not ids:
        return
    title, body = TEXTS[event]
    meet_at, planned_at = booking.meet_at.isoformat(), utcnow()
    ttl_s = INFO_TTL_S
    if event in UNTIL_THE_MEETING:
        ttl_s = min(INFO_TTL_S, max(MIN_PUSH_TTL_S, int((booking.meet_at - planned_at).total_seconds())))
    jobs.enqueue(session, kind="push.user", payload={
        "user_ids": ids, "title": title, "body": body.format(time=seoul_time(meet_at)),
        "data": {"type": "escort", "id": str(booking.id), "event": event, "status": booking.status,
                 "meet_at": meet_at},
        # When the news happened: its deliveries are made when a worker expands the job, perhaps after a
        # later push's; newer-than and time to live count from here.
        "planned_at": planned_at.isoformat(), "ttl_s": ttl_s,
        **({"on_shift_in": booking.district_code} if staff else {})})


def _commit_and_tell(session, booking, event, extra=(), ended: bool = False):
    payload = event_payload(booking, event, TEXTS[event][0])
    recipients, district = [*parties(booking), *extra], booking.district_code
    session.commit()
    if ended:  # positions this process queued before the end must not follow the news that it ended
        batcher.discard(kind="escort", subject_id=str(booking.id))
    tell(district, payload, recipients)


def tell(district, payload, user_ids):
    """After commit: `escort.updated` to each person's phones and to the district's operators."""
    for uid in dict.fromkeys(user_ids):
        broadcast.to_user(uid, events.ESCORT_UPDATED, payload)
    broadcast.to_district(district, events.ESCORT_UPDATED, payload)


@contextmanager
def refusal_releases_lock(session):
    """Roll back (releasing the booking's row lock) before a refusal leaves the service."""
    try:
        yield
    except (DomainError, IntegrityError):
        session.rollback()
        raise


def _flush_or_conflict(session):
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise _conflict(exc) from None


def _conflict(exc: IntegrityError) -> Conflict:
    name = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if name not in CONFLICTS:
        raise exc
    return Conflict(CONFLICTS[name])
