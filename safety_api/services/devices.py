"""Push-device registration and pruning of dead tokens."""
from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import SelectBase

from safety_api.clock import utcnow
from safety_api.models import PushDevice


def register_device(session, *, user, token: str, platform: str) -> tuple[PushDevice, bool]:
    """Register a push token for the user; returns (device, created). A token moves to its newest owner."""
    device = session.scalar(select(PushDevice).where(PushDevice.token == token))
    created = device is None
    if created:
        device = PushDevice(user_id=user.id, token=token, platform=platform)
        session.add(device)
    else:
        # A phone handed to someone else re-registers its token: it must stop reaching the old owner.
        device.user_id, device.platform, device.last_seen_at = user.id, platform, utcnow()
    try:
        session.commit()
    except IntegrityError:  # the same token registered twice at once: the other request created it
        session.rollback()
        return register_device(session, user=user, token=token, platform=platform)
    return device, created


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


def forget_tokens(session, tokens) -> int:
    """Delete tokens that FCM reported dead; returns how many went."""
    result = session.execute(delete(PushDevice).where(PushDevice.token.in_(list(tokens))))
    return result.rowcount
