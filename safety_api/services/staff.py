"""Staff accounts as admins keep them: find, read with their history, suspend, reinstate, move to another district.

A suspension ends a person's access at once and everywhere (a departing operator, a scout under investigation):
every sign-in ends, so refresh and access tokens are refused; every push device is forgotten; every socket is
closed on every api process; the shift ends; a scout is taken off the escorts not yet under way. Logging in is
refused until an admin reinstates the account. Citizens' accounts are not kept here: a citizen's SOS must never be
refused, and their account is theirs to delete (`privacy`)."""
from sqlalchemy import select

from safety_api.clock import utcnow
from safety_api.errors import Conflict, Invalid, NotFound
from safety_api.models import AccountEvent, District, User
from safety_api.models.accounts import DISTRICT_BOUND_ROLES, STAFF_ROLES
from safety_api.realtime.open_sockets import close_sockets_of
from safety_api.services import escort
from safety_api.services.accounts import end_every_sign_in, record_account_event

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
    return list(session.scalars(query.order_by(User.district_code.nulls_first(), User.name, User.id)))


def staff_member(session, user_id) -> tuple[User, list[AccountEvent]]:
    """A staff account and what admins did to it, newest first."""
    person = session.get(User, user_id)
    if person is None or person.role not in STAFF_ROLES:
        raise NotFound("No staff account with this id.")
    history = session.scalars(select(AccountEvent).where(AccountEvent.user_id == person.id)
                              .order_by(AccountEvent.at.desc(), AccountEvent.id.desc()).limit(HISTORY_LIMIT))
    return person, list(history)


def suspend(session, *, admin: User, user_id, reason: str) -> User:
    """Suspend a staff account and end everything it has open (see the module); again: no change."""
    person = _locked_staff(session, user_id)
    if person.id == admin.id:
        session.rollback()
        raise Conflict("You cannot suspend your own account; another admin can.")
    if person.suspended_at is not None:
        session.commit()
        return person
    end_every_sign_in(session, person.id)
    tell_escorts = _off_the_escorts(session, person, admin=admin, reason="suspended")
    person.suspended_at, person.on_duty = utcnow(), False
    record_account_event(session, person, "suspended", actor=admin, reason=reason)
    session.commit()
    close_sockets_of(person.id)
    tell_escorts()
    return person


def reinstate(session, *, admin: User, user_id, reason: str) -> User:
    """Lift a suspension: the person may log in again (every earlier sign-in stays ended); again: no change."""
    person = _locked_staff(session, user_id)
    if person.suspended_at is None:
        session.commit()
        return person
    person.suspended_at = None
    record_account_event(session, person, "reinstated", actor=admin, reason=reason)
    session.commit()
    return person


def move(session, *, admin: User, user_id, district: str, reason: str) -> User:
    """Move an operator or a scout to another district. Their shift ends, a scout leaves the old district's escorts
    not yet under way, and their sockets are closed so that they reconnect to the new district's room; their
    sign-ins go on. The same district again: no change."""
    person = _locked_staff(session, user_id)
    if person.role not in DISTRICT_BOUND_ROLES:
        session.rollback()
        raise Invalid("Only operators and scouts belong to a district.",
                      errors=[{"field": "district", "message": f"A{'n' if person.role == 'admin' else ''} "
                                                               f"{person.role} has no district."}])
    if session.get(District, district) is None:
        session.rollback()
        raise Invalid("Unknown district.", errors=[{"field": "district", "message": "No such district code."}])
    if person.district_code == district:
        session.commit()
        return person
    tell_escorts = _off_the_escorts(session, person, admin=admin, reason="moved")
    record_account_event(session, person, "moved", actor=admin, reason=reason,
                         **{"from": person.district_code, "to": district})
    person.district_code, person.on_duty = district, False
    session.commit()
    close_sockets_of(person.id)
    tell_escorts()
    return person


def _locked_staff(session, user_id) -> User:
    """The staff account, its row locked for this transaction (FOR NO KEY UPDATE, as a scout's accept takes it)."""
    person = session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True)
                            .execution_options(populate_existing=True))
    if person is None or person.role not in STAFF_ROLES:
        session.rollback()
        raise NotFound("No staff account with this id.")
    return person


def _off_the_escorts(session, person: User, *, admin: User, reason: str):
    if person.role != "scout":
        return lambda: None
    return escort.withdraw_scout(session, person, actor=admin, reason=reason)
