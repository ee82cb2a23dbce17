"""Reading escort bookings: one, a person's list, a scout's offers. Every read by someone other than the booking's
citizen goes into the location access log (a booking holds where the citizen goes, usually home)."""
from datetime import datetime

from sqlalchemy import select

from safety_api.clock import utcnow
from safety_api.extensions import commit_keeping
from safety_api.models import User
from safety_api.models.escort import EscortAssignment, EscortBooking
from safety_api.policy import check_on_duty_for_offers, check_read_booking, sees_escort_destination
from safety_api.services import access_log


def get_booking(session, *, user: User, booking_id, now: datetime | None = None) -> EscortBooking:
    """A booking for its citizen, its scouts, the district's operators and on-duty scouts (while open and its
    meeting still ahead), admins.

    How much of it each reader sees is policy.sees_escort_destination's; the views apply it. A reader other than
    the citizen is written to the location access log, each time (`escort.read`, or `escort.offer`)."""
    now = now or utcnow()
    booking = session.get(EscortBooking, booking_id)
    check_read_booking(user, booking, now=now)
    access_log.record(session, viewer_id=user.id, subject_user_id=booking.citizen_id, subject_kind="escort",
                      subject_id=booking.id,
                      purpose="escort.read" if sees_escort_destination(user, booking, now=now) else "escort.offer")
    commit_keeping(session, booking)
    return booking


def log_reads(session, user, bookings, *, now: datetime, purpose: str):
    """Write reads of escorts by anyone but their citizens to the location access log, in the caller's
    transaction, at most once an hour per reader, booking and purpose (lists are read again and again): what the
    reader is shown in full as `purpose`, an offer as `escort.offer` (where and when a citizen will wait)."""
    full = [b for b in bookings if sees_escort_destination(user, b, now=now)]
    offered = [b for b in bookings if b not in full]
    for shown, why in ((full, purpose), (offered, "escort.offer")):
        access_log.record_recent(session, viewer_id=user.id, subject_kind="escort", purpose=why,
                                 subjects=[(b.citizen_id, b.id) for b in shown])


def list_bookings(session, *, user: User, status: str | None = None, limit: int = 100,
                  now: datetime | None = None) -> list[EscortBooking]:
    """My bookings (citizen), my escorts (scout), my district's (operator) or all (admin), newest first; logged as
    `escort.list` (log_reads)."""
    query = select(EscortBooking)
    if user.role == "citizen":
        query = query.where(EscortBooking.citizen_id == user.id)
    elif user.role == "scout":
        query = query.where(EscortBooking.id.in_(
            select(EscortAssignment.booking_id).where(EscortAssignment.scout_id == user.id)))
    elif user.role == "operator":
        query = query.where(EscortBooking.district_code == user.district_code)
    if status:
        query = query.where(EscortBooking.status == status)
    found = list(session.scalars(query.order_by(EscortBooking.meet_at.desc()).limit(limit)))
    log_reads(session, user, found, now=now or utcnow(), purpose="escort.list")
    commit_keeping(session, *found)
    return found


def offers(session, *, scout: User, now: datetime | None = None) -> list[EscortBooking]:
    """Open bookings of the scout's district that still need scouts and are not yet theirs (scouts on duty);
    logged as `escort.offer` (log_reads)."""
    now = now or utcnow()
    check_on_duty_for_offers(scout)
    mine = select(EscortAssignment.booking_id).where(EscortAssignment.scout_id == scout.id)
    found = list(session.scalars(
        select(EscortBooking).where(EscortBooking.district_code == scout.district_code,
                                    EscortBooking.status == "requested", EscortBooking.meet_at > now,
                                    EscortBooking.id.not_in(mine))
        .order_by(EscortBooking.meet_at)))
    log_reads(session, scout, found, now=now, purpose="escort.offer")
    commit_keeping(session, *found)
    return found
