"""Server-initiated emits: the one module that sends events to rooms (api and worker alike)."""
import logging

from flask import current_app

from safety_api.realtime import events, rooms

log = logging.getLogger(__name__)


def _emit(event: str, payload, *, namespace: str, room) -> bool:
    """Emit through the Redis queue to a room or a tuple of rooms (one publish, each socket once); a failure
    is logged, never raised: the outbox covers it."""
    if not room:  # python-socketio reads "no room" as "everyone in the namespace": never let that happen
        log.error("emit %s with no room refused", event)
        return False
    try:
        current_app.extensions["socketio_server"].emit(event, payload, namespace=namespace, to=room)
        return True
    except Exception:  # the fast path must never break the request that triggered it
        log.exception("emit %s to %s failed", event, room)
        return False


def to_district(code: str | None, event: str, payload) -> bool:
    """Operators of a district, or the central centre when the district is unknown."""
    return _emit(event, payload, namespace=events.CONTROL,
                 room=rooms.district_audience(code) if code else rooms.CENTRAL)


def to_user(user_id, event: str, payload) -> bool:
    """Every phone of one person."""
    return _emit(event, payload, namespace=events.MOBILE, room=rooms.user(user_id))


def to_room(namespace: str, room, event: str, payload) -> bool:
    """Any named room (walk viewers, escort parties), or a tuple of rooms."""
    return _emit(event, payload, namespace=namespace, room=room)


def close_room(namespace: str, room: str) -> bool:
    """Take every socket out of a room, in every api process (the queue carries it); best effort, as emits."""
    try:
        current_app.extensions["socketio_server"].close_room(room, namespace=namespace)
        return True
    except Exception:  # the request that ended a right must not fail on it: events are addressed per right too
        log.exception("close_room %s failed", room)
        return False
