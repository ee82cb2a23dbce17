"""Staff accounts as admins keep them: find, read with their history, suspend, reinstate, move to another district,
set a new password.

A suspension ends a person's access at once and everywhere (a departing operator, a scout under investigation):
every sign-in ends, so refresh and access tokens are refused; every push device is forgotten; every socket is
closed on every api process; the shift ends; the incidents they took but had not dispatched are open again and
alerted again; a scout leaves the escorts still to come. Logging in is refused until an admin reinstates the
account. Citizens' accounts are not kept here: a citizen's SOS must never be refused, and their account is theirs
to delete (`privacy`). A password set by an admin (forgotten, or thought leaked) ends the person's sign-ins and
shift and hands their work back as a suspension does, but leaves them free to log in with it."""
from sqlalchemy import select, update

from safety_api.clock import utcnow
from safety_api.errors import Conflict, Invalid, NotFound, Unauthorized
from safety_api.models import AccountEvent, User
from safety_api.models.accounts import DISTRICT_BOUND_ROLES, STAFF_ROLES, not_suspended
from safety_api.realtime.open_sockets import close_sockets_of
from safety_api.services import deliveries, escort_departures, incidents
from safety_api.services.accounts import check_district_exists, end_every_sign_in, hash_secret, record_account_event

LIST_LIMIT = 1000  # far more staff than a city's control centres have
HISTORY_LIMIT = 100


def list_staff(session, *, role: str | None = None, district: str | None = None,
               suspended: bool | None = None) -> list[User]:
    """Staff accounts, by district and name; optionally of one role, one district, suspended or not."""
    query = select(User).where(User.role.in_(STAFF_ROLES))
    if role is not None:
        query = query.where(User.role == role)
    if district is not None:
        query = query.where(User.district_code == district)
    if suspended is not None:
        query = query.where(User.suspended_at.is_not(None) if suspended else User.suspended_at.is_(None))
    return list(session.scalars(query.order_by(User.district_code.nulls_first(), User.name, User.id)
                                .limit(LIST_LIMIT)))


def staff_member(session, user_id) -> tuple[User, list[AccountEvent]]:
    """A staff account and what admins did to it, newest first."""
    person = session.get(User, user_id)
    if person is None or person.role not in STAFF_ROLES:
        raise NotFound("No staff account with this id.")
    history = session.scalars(select(AccountEvent).where(AccountEvent.user_id == person.id)
                              .order_by(AccountEvent.at.desc(), AccountEvent.id.desc()).limit(HISTORY_LIMIT))
    return person, list(history)


def suspend(session, *, admin: User | None, user_id, reason: str, escalate_after_s: float) -> User:
    """Suspend a staff account and end everything it has open (see the module); again: no change. `admin` None:
    the deployment's own command line (`flask --app wsgi staff suspend`), for an admin account itself
    compromised or the only one."""
    person = _locked_staff(session, user_id)
    if admin is not None and person.id == admin.id:
        session.rollback()
        raise Conflict("You cannot suspend your own account; another admin can.")
    if person.suspended_at is not None:
        session.commit()
        return person
    person.suspended_at, person.on_duty = utcnow(), False
    end_every_sign_in(session, person.id)
    record_account_event(session, person, "suspended", actor=admin, reason=reason)
    return _let_go(session, person, district=person.district_code, escalate_after_s=escalate_after_s)


def reinstate(session, *, admin: User | None, user_id, reason: str) -> User:
    """Lift a suspension: the person may log in again (every earlier sign-in stays ended); again: no change."""
    person = _locked_staff(session, user_id)
    if person.suspended_at is None:
        session.commit()
        return person
    person.suspended_at = None
    record_account_event(session, person, "reinstated", actor=admin, reason=reason)
    session.commit()
    return person


def set_duty(session, *, user: User, on_duty: bool, escalate_after_s: float) -> bool:
    """Start or end one's own shift (not while suspended: a request that passed its gate just before the
    suspension committed is refused here). Ending it ends what the shift brought (`end_shift`)."""
    switched = session.execute(update(User).where(User.id == user.id, not_suspended())
                               .values(on_duty=on_duty)).rowcount
    if not switched:
        session.rollback()
        raise Unauthorized("This account is suspended or gone.")
    tell = (lambda: None) if on_duty else end_shift(session, user, escalate_after_s=escalate_after_s)
    session.commit()
    tell()
    return on_duty


def end_shift(session, person: User, *, escalate_after_s: float):
    """What a shift brought ends with it, in the caller's transaction (the person already off it): the pushes
    planned for them as staff on shift and not sent are withdrawn, and the incidents an operator took and has
    not dispatched are open again for the district, as at a suspension (shown as taken, nobody else would take
    them). Admins acknowledge incidents too, and let go of theirs alike. A scout's accepted escorts stay theirs:
    a booking is a promise for its time, not for the shift. Returns what to tell once committed."""
    deliveries.withdraw_staff_pushes(session, recipient_id=person.id)
    if person.role in ("operator", "admin"):
        session.flush()
        return incidents.release_taken_by(session, person, escalate_after_s=escalate_after_s)
    return lambda: None


def set_password(session, *, admin: User | None, user_id, password: str, reason: str,
                 escalate_after_s: float) -> User:
    """Give a staff member a new password (`admin` None: the deployment's command line). Whoever held the old one
    is signed out everywhere, and the person's shift ends with their work handed back, since no phone or console
    of theirs is signed in to receive it. Not one's own: `PUT /me/password` confirms with the current one."""
    new_hash = hash_secret(password)  # before the row lock: argon2 takes a tenth of a second
    person = _locked_staff(session, user_id)
    if admin is not None and person.id == admin.id:
        session.rollback()
        raise Conflict("Change your own password with PUT /api/v1/me/password.")
    person.password_hash, person.on_duty = new_hash, False
    end_every_sign_in(session, person.id)
    record_account_event(session, person, "password_set", actor=admin, reason=reason)
    return _let_go(session, person, district=person.district_code, escalate_after_s=escalate_after_s)


def move(session, *, admin: User, user_id, district: str, reason: str, escalate_after_s: float) -> User:
    """Move an operator or a scout to another district. Their shift ends, they let go of the old district's work
    as a suspension does (incidents taken, escorts to come, pushes not yet sent), and their sockets close so
    that they reconnect to the new district's room; their sign-ins go on. The same district again: no change."""
    check_district_exists(session, district)
    person = _locked_staff(session, user_id)
    if person.role not in DISTRICT_BOUND_ROLES:
        session.rollback()
        raise Invalid("Only operators and scouts belong to a district.",
                      errors=[{"field": "district", "message": f"This account is an {person.role}'s."}])
    if person.district_code == district:
        session.commit()
        return person
    old = person.district_code
    record_account_event(session, person, "moved", actor=admin, reason=reason, **{"from": old, "to": district})
    person.district_code, person.on_duty = district, False
    deliveries.withdraw_staff_pushes(session, recipient_id=person.id)  # the old district's alarms and offers
    return _let_go(session, person, district=old, escalate_after_s=escalate_after_s)


def _let_go(session, person: User, *, district: str | None, escalate_after_s: float) -> User:
    """Hand the person's work back, commit, close their sockets and tell."""
    tell = _hand_back(session, person, district=district, escalate_after_s=escalate_after_s)
    session.commit()
    close_sockets_of(person.id)
    tell()
    return person


def _hand_back(session, person: User, *, district: str | None, escalate_after_s: float):
    """Give a staff member's work in `district` back to whoever is on shift there (suspended, or moved away): an
    operator's or admin's acknowledged incidents, a scout's escorts still to come. In
    the caller's transaction, the person already off shift or gone from it (flushed first, so that none of it
    is offered back to them); returns what to tell after the commit."""
    session.flush()
    if person.role == "scout":
        return escort_departures.withdraw_scout(session, person.id, district=district)
    if person.role in STAFF_ROLES:
        return incidents.release_taken_by(session, person, escalate_after_s=escalate_after_s)
    return lambda: None


def _locked_staff(session, user_id) -> User:
    """The staff account, its row locked for this transaction (FOR NO KEY UPDATE, as a scout's accept takes it)."""
    person = session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True)
                            .execution_options(populate_existing=True))
    if person is None or person.role not in STAFF_ROLES:
        session.rollback()
        raise NotFound("No staff account with this id.")
    return person
