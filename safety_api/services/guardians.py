"""Guardian links (안심친구): invited by the protected person, accepted by the guardian."""
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from safety_api.clock import utcnow
from safety_api.errors import Conflict, Forbidden, Invalid, NotFound
from safety_api.models import GuardianLink, User
from safety_api.realtime import broadcast, events
from safety_api.services.walk_monitor import watch_rooms_of


def invite(session, *, protected: User, guardian_phone: str) -> GuardianLink:
    """Invite the user with this phone to be a guardian; the invitation waits for acceptance."""
    guardian = session.scalar(select(User).where(User.phone == guardian_phone))
    if guardian is None:
        raise NotFound("No user with this phone number.")
    if guardian.id == protected.id:
        raise Invalid("You cannot be your own guardian.", errors=[{"field": "phone", "message": "Is your own."}])
    link = GuardianLink(protected_id=protected.id, guardian_id=guardian.id)
    session.add(link)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("This person is already invited or is your guardian.") from None
    broadcast.to_user(guardian.id, events.GUARDIAN_INVITED,
                      {"id": str(link.id), "from": {"id": str(protected.id), "name": protected.name}})
    return link


def accept(session, *, guardian: User, link_id) -> GuardianLink:
    """Accept an invitation addressed to this guardian."""
    link = _locked(session, link_id)
    if link is None or link.guardian_id != guardian.id:
        raise NotFound("No such invitation for you.")
    if link.status == "active":
        return link
    link.status, link.accepted_at = "active", utcnow()
    session.commit()
    broadcast.to_user(link.protected_id, events.GUARDIAN_ACCEPTED,
                      {"id": str(link.id), "guardian": {"id": str(guardian.id), "name": guardian.name}})
    return link


def remove(session, *, user: User, link_id):
    """End a link; either side may end it at any time."""
    link = _locked(session, link_id)
    if link is None or user.id not in (link.guardian_id, link.protected_id):
        raise NotFound("No such guardian link.")
    # The right to watch the person's walks ends with the link: walk events are addressed only to guardians
    # still linked, and closing the rooms (in every api process, through the queue) also stops what is
    # already batched for them.
    closing = watch_rooms_of(session, protected_id=link.protected_id, guardian_id=link.guardian_id)
    session.delete(link)
    session.commit()
    for room in closing:
        broadcast.close_room(events.MOBILE, room)


def _locked(session, link_id) -> GuardianLink | None:
    """The link, held until commit: an acceptance and a removal of one link take turns, and the one that comes
    second finds the link as the first left it (removed: none, so 404, not an UPDATE of a deleted row)."""
    return session.scalar(select(GuardianLink).where(GuardianLink.id == link_id).with_for_update()
                          .execution_options(populate_existing=True))


def list_links(session, *, user: User) -> dict:
    """Both directions: whom I guard and who guards me, with the other person (the API shows a pending invitee to
    the inviter by phone only: policy.sees_guardian_identity)."""
    def rows(mine_col, other_col):
        q = (select(GuardianLink, User).join(User, User.id == other_col)
             .where(mine_col == user.id).order_by(GuardianLink.created_at))
        return list(session.execute(q))
    return {"guarding": rows(GuardianLink.guardian_id, GuardianLink.protected_id),
            "guarded_by": rows(GuardianLink.protected_id, GuardianLink.guardian_id)}


def active_guardians(*, protected_id, among=None):
    """A SELECT of the ids of a person's accepted guardians, optionally limited to a chosen subset."""
    q = select(GuardianLink.guardian_id).where(GuardianLink.protected_id == protected_id,
                                               GuardianLink.status == "active")
    if among is not None:
        q = q.where(GuardianLink.guardian_id.in_(list(among)))
    return q


def active_guardian_ids(session, *, protected_id, among=None) -> list:
    """Ids of accepted guardians of a person, optionally limited to a chosen subset."""
    return list(session.scalars(active_guardians(protected_id=protected_id, among=among)))


def is_active_guardian(session, *, guardian_id, protected_id) -> bool:
    """Whether guardian_id has an accepted link to protected_id."""
    return bool(active_guardian_ids(session, protected_id=protected_id, among=[guardian_id]))


def require_active_guardians(session, *, protected_id, guardian_ids) -> list:
    """All of these must be accepted guardians of the person, else 422 naming them."""
    active = set(active_guardian_ids(session, protected_id=protected_id, among=guardian_ids))
    missing = [str(g) for g in guardian_ids if g not in active]
    if missing:
        raise Invalid("Some of these people are not your accepted guardians.",
                      errors=[{"field": "guardian_ids", "message": f"Not an accepted guardian: {m}"}
                              for m in missing])
    return list(active)


def deny_unless_guardian(session, *, guardian_id, protected_id):
    """403 unless there is an accepted link."""
    if not is_active_guardian(session, guardian_id=guardian_id, protected_id=protected_id):
        raise Forbidden("You are not an accepted guardian of this person.")
