"""Escort timers (reminder, still unconfirmed, late, overrun) and the scouts' positions during the walk."""
from datetime import datetime

from sqlalchemy import exists, select

from safety_api.clock import utcnow
from safety_api.errors import Conflict, Forbidden, NotFound
from safety_api.models import User
from safety_api.models.escort import EscortBooking, EscortEvent
from safety_api.realtime import events, rooms
from safety_api.realtime.positions import batcher
from safety_api.services import fixes as fix_store
from safety_api.services.escort import (
    TEXTS,
    held,
    holds,
    locked_booking,
    parties,
    push,
    record_event,
    refusal_releases_lock,
    staff_on_duty,
    tell,
    time_out,
)
from safety_api.services.escort_clock import under_way
from safety_api.services.escort_views import event_payload


def remind(session, *, booking_id, now: datetime) -> bool:
    """Timer: remind the citizen and the pair before a confirmed meeting. Fires once, and never from the meeting
    time on (a worker's backlog must not announce a meeting that has begun)."""
    booking = locked_booking(session, booking_id, missing_ok=True)
    if booking is None or booking.status != "confirmed" or booking.reminded_at is not None or now >= booking.meet_at:
        return False
    booking.reminded_at = now
    record_event(session, booking, "reminded")
    push(session, booking, "reminder", parties(booking))
    session.flush()
    # Emitted before the job's commit: a repeat after a crash re-emits, which clients treat as an update.
    tell(booking.district_code, event_payload(booking, "reminder", TEXTS["reminder"][0]), parties(booking))
    return True


def flag_unconfirmed(session, *, booking_id, now: datetime) -> bool:
    """Timer: a booking still without its pair shortly before the meeting goes to citizen and operators. Fires
    once, and never from the meeting time on."""
    booking = locked_booking(session, booking_id, missing_ok=True)
    if booking is None or booking.status != "requested" or booking.flagged_at is not None or now >= booking.meet_at:
        return False
    booking.flagged_at = now
    record_event(session, booking, "unconfirmed", scouts=len(held(booking)))
    push(session, booking, "unconfirmed", [booking.citizen_id])
    push(session, booking, "unconfirmed", staff_on_duty(session, "operator", booking.district_code), staff=True)
    session.flush()
    tell(booking.district_code, event_payload(booking, "unconfirmed", TEXTS["unconfirmed"][0]),
          [booking.citizen_id])
    return True


def flag_late(session, *, booking_id, now: datetime) -> bool:
    """Timer, `late` after the meeting (`escort_clock.set_late_timer`): a confirmed escort that has not started
    goes to the citizen, the pair and the district's operators on shift, who can call the scouts or send someone.
    Fires once (its event is the stamp); an escort started, cancelled or recorded as a no-show is left alone."""
    booking = locked_booking(session, booking_id, missing_ok=True)
    if booking is None or booking.status != "confirmed" or now < booking.meet_at:
        return False
    if session.scalar(select(exists().where(EscortEvent.booking_id == booking.id, EscortEvent.kind == "late"))):
        return False
    record_event(session, booking, "late", minutes_past=int((now - booking.meet_at).total_seconds() // 60))
    push(session, booking, "late", parties(booking))
    push(session, booking, "late", staff_on_duty(session, "operator", booking.district_code), staff=True)
    session.flush()
    tell(booking.district_code, event_payload(booking, "late", TEXTS["late"][0]), parties(booking))
    return True


def close_overrun(session, *, booking_id, now: datetime) -> bool:
    """Timer, at the closing time of an escort (`escort_clock.closes_at`): one still in progress ends by itself
    (`escort.time_out`). Without it, an escort nobody completed stayed under way for good: the scouts' positions
    were taken and streamed to the citizen and the control room days later, the citizen could not delete the
    account. The timer's due time is the rule, whatever the worker's clock says; a completed escort is left alone."""
    booking = locked_booking(session, booking_id, missing_ok=True)
    if booking is None or booking.status != "in_progress":
        return False
    district, payload, user_ids = time_out(session, booking, now=now)
    session.flush()
    tell(district, payload, user_ids)  # before the job's commit, as the other timers: a repeat re-emits
    return True


def reminder_job(session, payload, _worker):
    """Worker entry for `escort.reminder`."""
    remind(session, booking_id=payload["booking_id"], now=utcnow())


def unconfirmed_job(session, payload, _worker):
    """Worker entry for `escort.unconfirmed`."""
    flag_unconfirmed(session, booking_id=payload["booking_id"], now=utcnow())


def late_job(session, payload, _worker):
    """Worker entry for `escort.late`."""
    flag_late(session, booking_id=payload["booking_id"], now=utcnow())


def overrun_job(session, payload, _worker):
    """Worker entry for `escort.overrun`."""
    close_overrun(session, booking_id=payload["booking_id"], now=utcnow())


def record_escort_fixes(session, redis_client, *, scout: User, booking_id, fixes, now=None) -> dict:
    """A scout's positions during the escort: stored, kept live, and batched to the citizen and the operators."""
    now = now or utcnow()
    if scout.role != "scout":  # by role first, as REST does: an id is never judged for who cannot send at all
        raise Forbidden("Only the booking's scouts send its positions.")
    # FOR SHARE until the fixes commit: a complete (FOR UPDATE) waits for them, and fixes arriving during a complete
    # wait for it and then find the escort over, so no position is stored after the escort ended. The two
    # scouts' batches share the lock and do not wait for each other.
    booking = session.scalar(select(EscortBooking).where(EscortBooking.id == booking_id)
                             .with_for_update(read=True, of=EscortBooking).execution_options(populate_existing=True))
    with refusal_releases_lock(session):
        if booking is None:
            raise NotFound("No such booking.")
        if not holds(booking, scout.id):
            raise Forbidden("Only the booking's scouts send its positions.")
        if booking.status != "in_progress":
            raise Conflict(f"This escort is {booking.status}, not in progress.")
        if not under_way(session, booking, now=now):
            raise Conflict("This escort's time is over; it takes no more positions.")
    valid, rejected = fix_store.validate(fixes, now=now)
    fresh = fix_store.store(session, subject_kind="escort", subject_id=booking.id, user_id=scout.id, fixes=valid)
    citizen_id, district = booking.citizen_id, booking.district_code
    session.commit()
    newest = fresh[-1] if fresh else None
    if newest and fix_store.set_live(redis_client, subject_kind="escort", subject_id=booking_id, fix=newest):
        item = {"kind": "escort", "id": str(booking_id), "scout_id": str(scout.id), **newest.as_dict()}
        batcher.add(namespace=events.CONTROL, room=rooms.district_audience(district), event=events.POSITIONS, item=item)
        batcher.add(namespace=events.MOBILE, room=rooms.user(citizen_id), event=events.ESCORT_POSITION, item=item)
    return {"accepted": len(fresh), "rejected": len(rejected), "duplicates": len(valid) - len(fresh),
            "errors": rejected}
