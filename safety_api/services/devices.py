"""Push-device registration and pruning of dead tokens."""
from psycopg.errors import UniqueViolation
from sqlalchemy import bindparam, delete, func, literal_column, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import SelectBase

from safety_api.clock import utcnow
from safety_api.errors import Unauthorized
from safety_api.models import PushDevice, RefreshToken
from safety_api.services import accounts


def register_device(session, *, user, token: str, platform: str, sign_in: str | None = None) -> tuple[PushDevice, bool]:
    """Register a push token for the user under a sign-in; returns (device, created). A token moves to its
    newest owner and sign-in."""
    try:
        return _register(session, user=user, token=token, platform=platform, sign_in=sign_in)
    except IntegrityError as exc:
        session.rollback()
        if not isinstance(exc.orig, UniqueViolation):  # a foreign key: the person or the sign-in went meanwhile
            raise Unauthorized("Signed out.") from None
    # The same token registered twice at once: the other request created it; this one takes it over.
    try:
        return _register(session, user=user, token=token, platform=platform, sign_in=sign_in)
    except IntegrityError:
        session.rollback()
        raise Unauthorized("Signed out.") from None


def _register(session, *, user, token, platform, sign_in) -> tuple[PushDevice, bool]:
    # The person first, then the sign-in: the order a suspension takes them in (its revocation updates the
    # sign-in's row after locking the person's), so the two wait for each other rather than deadlock.
    if not accounts.hold_unsuspended(session, user.id):
        raise Unauthorized("This account is suspended.")
    if sign_in is not None and session.scalar(_SIGN_IN_OPEN, {"jti": sign_in}) is None:
        raise Unauthorized("Signed out.")
    device = session.scalar(select(PushDevice).where(PushDevice.token == token))
    created = device is None
    if created:
        device = PushDevice(user_id=user.id, token=token, platform=platform, sign_in=sign_in)
        session.add(device)
    else:
        # A phone handed to someone else re-registers its token: it must stop reaching the old owner.
        device.user_id, device.platform, device.sign_in, device.last_seen_at = user.id, platform, sign_in, utcnow()
    session.commit()
    return device, created


# The sign-in, locked FOR SHARE until the device is committed: signing out (an UPDATE of this row) waits for
# the registration and then deletes the device with it, or has ended first and the registration is refused.
# (FOR KEY SHARE, which the foreign key takes, would not make that UPDATE wait.)
_SIGN_IN_OPEN = (select(RefreshToken.jti).where(RefreshToken.jti == bindparam("jti"), RefreshToken.revoked_at.is_(None))
                 .with_for_update(read=True))


def tokens_of(session, user_ids) -> list[tuple[str, str, str]]:
    """(user_id, token, platform) for every device of these users (ids, or a SELECT of ids: one round trip)."""
    ids = user_ids if isinstance(user_ids, SelectBase) else list(user_ids)
    rows = session.execute(select(PushDevice.user_id, PushDevice.token, PushDevice.platform)
                           .where(PushDevice.user_id.in_(ids)))
    return [(str(uid), token, platform) for uid, token, platform in rows]


def tokens_json(user_ids: SelectBase):
    """These users' devices as one JSON array of [user_id, token, platform]: a scalar subquery, so that a
    statement that reads other things brings the devices along (the SOS reads everything in one)."""
    device = func.json_build_array(PushDevice.user_id, PushDevice.token, PushDevice.platform)
    return (select(func.coalesce(func.json_agg(device), literal_column("'[]'::json")))
            .where(PushDevice.user_id.in_(user_ids)).scalar_subquery())


def belongs_to(session, *, token: str, user_id) -> bool:
    """Whether the push token is still registered to this person (a delivery is sent only then)."""
    return user_id is not None and session.scalar(
        select(PushDevice.id).where(PushDevice.token == token, PushDevice.user_id == user_id)) is not None


def forget_tokens(session, tokens) -> int:
    """Delete tokens that FCM reported dead; returns how many went."""
    result = session.execute(delete(PushDevice).where(PushDevice.token.in_(list(tokens))))
    return result.rowcount
