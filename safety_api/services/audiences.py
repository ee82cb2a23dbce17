"""Who may still receive a push when its turn comes to be sent.

A push is planned for the people entitled to it at that moment and sent later: at once as a rule, but a retry
in backoff may wait up to an hour. In between, an operator may go off duty, be suspended or moved, a guardian's
link may end, a scout may leave the shift. What the push says (a caller's position, where a citizen will wait
at night) is then no longer for them, so the worker asks here, just before each send, whether the recipient
still stands where the push was planned for. Reasons not named here go to their recipient as planned (a
party's notice of their own escort, a walker's own prompt)."""
import uuid

from sqlalchemy import func, select

from safety_api.models import EscortBooking, Incident, User, Walk
from safety_api.models.accounts import on_shift


def still_entitled(session, delivery) -> bool:
    """Whether the delivery's recipient may still receive it (one read)."""
    kind, _, subject_id = delivery.subject.partition(":")
    audience = _AUDIENCES.get((kind, delivery.reason)) or _AUDIENCES.get((kind, delivery.reason.split(".")[0]))
    if audience is None:
        return True
    try:
        subject_id = uuid.UUID(subject_id)
    except ValueError:  # every subject with an audience is named by its uuid; anything else is not for anyone
        return False
    return delivery.recipient_id is not None and session.scalar(
        select(User.id).where(User.id == delivery.recipient_id, User.id.in_(audience(subject_id)))) is not None


def _incident_staff(incident_id):
    """An incident's alert: who is pushed it, as they stand now (the operators on shift in its district), and
    the central centre (admins), which is pushed it once it is escalated."""
    from safety_api.services.incidents import on_duty_staff
    district = select(Incident.district_code).where(Incident.id == incident_id).scalar_subquery()
    return on_duty_staff(district).union(on_duty_staff(None))


def _incident_watchers(incident_id):
    """An SOS told to the caller's watchers: those who still are (accepted guardians, the protecting agency)."""
    from safety_api.services.sos_raise import watchers
    caller = select(Incident.caller_id).where(Incident.id == incident_id).scalar_subquery()
    return watchers(caller)


def _escort_offer(booking_id):
    """An escort offer: the scouts on shift in the booking's district, while the booking still wants scouts and
    its meeting is to come (an offer retried after the pair was found, the booking cancelled or the meeting
    time come would send a scout to a meeting that is not theirs)."""
    district = select(EscortBooking.district_code).where(
        EscortBooking.id == booking_id, EscortBooking.status == "requested",
        EscortBooking.meet_at > func.now()).scalar_subquery()
    return select(User.id).where(User.role == "scout", on_shift(), User.district_code == district)


def _walk_people(walk_id):
    """A walk's news: the walker, and the guardians chosen for it whose link is still accepted."""
    from safety_api.services.walk_monitor import allowed_guardians_of
    chosen = allowed_guardians_of([walk_id]).subquery()
    return select(Walk.walker_id).where(Walk.id == walk_id).union(select(chosen.c.guardian_id))


_AUDIENCES = {
    ("incident", "staff"): _incident_staff,
    ("incident", "guardian"): _incident_watchers,
    ("escort", "escort.offered"): _escort_offer,
    ("walk", "walk"): _walk_people,
}
