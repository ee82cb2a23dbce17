"""Escorts when someone leaves: a citizen deleting their account, a scout suspended or moved to another district.

Their bookings must not vanish or stay promised by someone who is gone: the scouts, the citizen and the
district's operators are told, and a booking that lost a scout is offered again."""
from datetime import datetime

from sqlalchemy import and_, delete, select

from safety_api.clock import utcnow
from safety_api.errors import Conflict
from safety_api.models import User
from safety_api.models.escort import OPEN_STATES, EscortAssignment, EscortBooking
from safety_api.realtime import broadcast, events
from safety_api.services.escort import (
    OFFER_GRACE,
    TEXTS,
    holds,
    move_booking,
    parties,
    push,
    rearm_timer,
    record_event,
    staff_on_duty,
    take_turns,
    tell,
    time_out,
)
from safety_api.services.escort_clock import under_way
from safety_api.services.escort_views import event_payload


def cancel_for_account_deletion(session, *, citizen: User, now: datetime | None = None):
    """Before a citizen's account is deleted, cancel their bookings still requested or confirmed as their own
    cancel would, commit and tell; refuse (409) while an escort of theirs is under way (`escort_clock.under_way`). One
    still in progress past its closing time, which its timer has not closed yet, is closed as the timer would.

    The deletion takes the bookings with it (a cascade) and would tell no one: the scouts would go to the meeting
    point at night for a booking that no longer exists, and the district's console would lose it without a word.
    Their pushes name only the scouts (a push.user job, no foreign key), so they go out after the citizen is gone.
    This commits on its own, before the deletion's transaction: should the deletion then fail, the bookings stay
    cancelled, as the citizen asked to leave (and a booking the citizen makes in between, racing their own
    deletion, goes with the account untold)."""
    now = now or utcnow()
    take_turns(session, citizen)  # a booking of theirs being made now commits first, and is found below
    bookings = session.scalars(
        select(EscortBooking).where(EscortBooking.citizen_id == citizen.id, EscortBooking.status.in_(OPEN_STATES))
        .order_by(EscortBooking.id).with_for_update(of=EscortBooking).execution_options(populate_existing=True)).all()
    if any(under_way(session, booking, now=now) for booking in bookings):
        session.rollback()
        raise Conflict("Your escort is under way; delete the account once it has ended.")
    tellings = []
    for booking in bookings:
        if booking.status == "in_progress":
            tellings.append(time_out(session, booking, now=now))
            continue
        recipients = move_booking(session, booking, action="cancel", actor=citizen, now=now)
        tellings.append((booking.district_code, event_payload(booking, "cancelled", TEXTS["cancelled"][0]),
                         [*parties(booking), *recipients]))
    session.commit()
    for district, payload, user_ids in tellings:
        tell(district, payload, user_ids)


def withdraw_scout(session, scout_id, *, district: str, now: datetime | None = None):
    """Take a scout off the bookings of `district` whose meeting is still to come (an admin suspended them or
    moved them to another district), in the caller's transaction. Each needs a scout again: it is `requested`,
    offered to the district's scouts on shift, and its citizen, its other scout and the district's operators on
    shift are told. A booking whose meeting time has come keeps its pair, so that the scout who is there can
    start it or record a no-show; one under way keeps its pair: it is walking someone home now. The booking's
    event names no reason and no admin: the citizen reads it, and the account's own trail keeps both.

    The caller has locked the scout's row and taken them off shift (so they are offered nothing here); the
    bookings are locked after the person, the reverse of `accept`. No deadlock follows: `accept` waits for the
    person only for a booking the scout does not hold yet, and those are not locked here. Returns what to tell
    once the caller has committed."""
    now = now or utcnow()
    held_now = select(EscortAssignment.booking_id).where(EscortAssignment.scout_id == scout_id,
                                                          EscortAssignment.released_at.is_(None))
    to_come = and_(EscortBooking.status.in_(("requested", "confirmed")), EscortBooking.meet_at > now,
                   EscortBooking.district_code == district)
    bookings = session.scalars(
        select(EscortBooking).where(EscortBooking.id.in_(held_now), to_come).order_by(EscortBooking.id)
        .with_for_update(of=EscortBooking).execution_options(populate_existing=True)).all()
    tellings = []
    for booking in bookings:
        session.execute(delete(EscortAssignment).where(EscortAssignment.booking_id == booking.id,
                                                       EscortAssignment.scout_id == scout_id))
        session.expire(booking, ["assignments"])
        booking.status = "requested"
        # Its unconfirmed flag may have fired (or come while it was confirmed, and done nothing): set a fresh one,
        # giving the scouts offered it again the grace, so that the operators hear if nobody takes it.
        if rearm_timer(session, booking, "escort.unconfirmed", now=now, delay=OFFER_GRACE):
            booking.flagged_at = None  # the stamp that makes the flag fire once: this is another time
        # The reminder went to the pair as it was: the scout who completes it again has had none. Unstamped, the
        # accept that confirms it sets the reminder again (at once), for the new pair and the citizen.
        booking.reminded_at = None
        record_event(session, booking, "scout_withdrawn", scout=str(scout_id))
        operators = staff_on_duty(session, "operator", booking.district_code)
        push(session, booking, "reopened", parties(booking))
        push(session, booking, "reopened", operators, staff=True)
        offered_to = [uid for uid in staff_on_duty(session, "scout", booking.district_code) if not holds(booking, uid)]
        push(session, booking, "offered", offered_to, staff=True)
        tellings.append((booking.district_code, event_payload(booking, "reopened", TEXTS["reopened"][0]),
                         parties(booking), event_payload(booking, "offered", TEXTS["offered"][0]), offered_to))

    def tell_all():
        for district, reopened, parties_now, offered, offered_to in tellings:
            tell(district, reopened, parties_now)
            for uid in offered_to:
                broadcast.to_user(uid, events.ESCORT_OFFERED, offered)

    return tell_all
