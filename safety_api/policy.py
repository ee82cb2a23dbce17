"""Who may see and do what: the one module of authorisation rules beyond plain roles."""
from datetime import timedelta

from safety_api.errors import Conflict, Forbidden, NotFound

# How long after an escort ended its scouts still see where its citizen went and who they are: the escort's
# summary on their phones, the report of the evening; then the escort is the citizen's again.
SCOUT_SEES_AFTER_ESCORT = timedelta(minutes=30)


def may_operate_incident(user, incident) -> bool:
    """Operators act on their district's incidents; admins (the central centre) on every incident."""
    if user.role == "admin":
        return True
    return user.role == "operator" and incident.district_code is not None \
        and user.district_code == incident.district_code


def check_operate_incident(user, incident):
    """Raise unless the user may act on this incident (unknown and foreign look alike: 404)."""
    if incident is None:
        raise NotFound("No such incident.")
    if not may_operate_incident(user, incident):
        if user.role in ("operator", "admin"):
            raise Forbidden("This incident belongs to another district.")
        raise NotFound("No such incident.")


def check_caller(user, incident):
    """Raise unless the user raised this incident."""
    if incident is None or incident.caller_id != user.id:
        raise NotFound("No such incident.")


def check_staff(user):
    """Operators and admins only."""
    if user.role not in ("operator", "admin"):
        raise Forbidden("This needs the role operator or admin.")


def check_change_protection(user, protection):
    """A protection is changed or ended by admins, or by operators of the district in charge of it, the one whose
    operator set it up (another district must not redirect a victim's alerts to other phones, or end the
    protection; nor may the operator who set it up, once moved to another district)."""
    if user.role == "admin":
        return
    if protection.district_code is None or protection.district_code != user.district_code:
        raise Forbidden("This protection is in another district's charge.")


def check_read_protection(user, protection):
    """A protection is read by those who may change it (`check_change_protection`): its contact phones and note
    are the agency's, for the district in charge to keep right, not for every operator. None: 404."""
    if protection is None:
        raise NotFound("This person is not under protection.")
    check_change_protection(user, protection)


def may_view_walk(user, walk, *, chosen_guardian: bool, incidents=()) -> bool:
    """The walker; the accepted guardians the walker chose; once escalated, the operators of its incidents (of
    the walk only what was those incidents' evidence: walks.view)."""
    if walk.walker_id == user.id or chosen_guardian:
        return True
    return bool(operated_incidents(user, incidents))


def operated_incidents(user, incidents) -> list:
    """Those of these incidents that the user acts on."""
    return [incident for incident in incidents if may_operate_incident(user, incident)]


def check_view_walk(user, walk, *, chosen_guardian: bool = False, incidents=()):
    """Raise unless the user may see this walk and where its walker is (strangers cannot tell it exists)."""
    if walk is None or not may_view_walk(user, walk, chosen_guardian=chosen_guardian, incidents=incidents):
        raise NotFound("No such walk.")


def check_watch_walk(user, walk, *, chosen_guardian: bool):
    """Live positions go to the walker's own devices and the guardians chosen for this walk, no one else."""
    if walk is None or not (walk.walker_id == user.id or chosen_guardian):
        raise NotFound("No such walk.")


def check_walker(user, walk):
    """Raise unless the user is the one walking."""
    if walk is None or walk.walker_id != user.id:
        raise NotFound("No such walk.")


def check_read_booking(user, booking, *, now):
    """Raise unless the user may read this escort booking: its citizen, admins, the district's operators, the
    scouts who hold or held a slot, and, while it still needs scouts and its meeting time has not come, the
    district's scouts on duty (as an offer: the same bound as accept's, so no one learns of a booking they can no
    longer take).

    A citizen gets 404 for another's booking, like a missing one, so that ids cannot be probed; staff of another
    district get 403, as they do everywhere (staff know bookings exist; the 403 tells them it is not theirs)."""
    if booking is None:
        raise NotFound("No such booking.")
    if user.role == "admin":
        return
    if user.role == "citizen":
        if booking.citizen_id != user.id:
            raise NotFound("No such booking.")
        return
    if _holds_slot(booking, user.id, ever=True):  # in any district: a scout moved mid-escort still walks it
        return
    if user.district_code != booking.district_code:
        raise Forbidden("This booking belongs to another district.")
    if user.role == "operator":
        return
    if user.role == "scout" and booking.status == "requested" and now < booking.meet_at:
        check_on_duty_for_offers(user)
        return
    raise Forbidden("You may not read this booking.")


def check_on_duty_for_offers(scout):
    """Offers are for scouts on shift: the meeting point and time of an open booking say where a citizen will wait
    at night, and an off-duty scout cannot accept anyway (409, fixed by going on duty, like accept)."""
    if not scout.on_duty:
        raise Conflict("Go on duty to see escort offers.")


def check_change_booking(user, booking, action: str):
    """Raise unless the user may start, complete, no-show or cancel this booking: admins and the district's
    operators; the citizen cancels; the pair does the rest. A citizen gets 404 for another's booking (see
    check_read_booking)."""
    if user.role == "admin" or (user.role == "operator" and user.district_code == booking.district_code):
        return
    if action == "cancel" and booking.citizen_id == user.id:
        return
    if action != "cancel" and _holds_slot(booking, user.id):
        return
    if user.role == "citizen" and booking.citizen_id != user.id:
        raise NotFound("No such booking.")
    raise Forbidden(f"You may not {action.replace('_', '-')} this booking.")


def sees_escort_destination(user, booking, *, now) -> bool:
    """Whether the user is shown where the citizen goes (`to`, the route, which ends there) and who they are.

    Usually `to` is the citizen's home. The citizen, the district's operators, admins and the scouts holding a
    slot see it, the scouts only while the escort is theirs to walk: until it ended and SCOUT_SEES_AFTER_ESCORT
    after (kept for good, every citizen a scout ever walked home would stay on the scout's phone by name and
    home, in any district the scout moves to). A scout merely offered the booking, released by a cancellation
    or past that time sees where and when to meet and how long the walk is: enough to decide, not where the
    citizen lives. Call after check_read_booking."""
    if user.role in ("admin", "operator"):
        return True
    if user.role == "citizen":
        return booking.citizen_id == user.id
    ended = booking.finished_at is not None and now >= booking.finished_at + SCOUT_SEES_AFTER_ESCORT
    return _holds_slot(booking, user.id) and not ended


def _holds_slot(booking, user_id, *, ever=False) -> bool:
    """Whether this person has a slot of the booking's pair (still held, or ever: a cancellation releases it)."""
    return any(a.scout_id == user_id and (ever or a.released_at is None) for a in booking.assignments)


def sees_guardian_identity(user, link) -> bool:
    """Whether the user is shown the other side of a guardian link by name and id, not just the phone number.

    The invited person sees who asks (to decide); the inviter sees the invited person only once they accepted:
    anyone can type any number, and a pending invite must not turn it into a name before its owner agreed."""
    return link.status == "active" or link.guardian_id == user.id
