"""Client events on /mobile, dispatched to services; errors come back in the ack as problem+json."""
import uuid

from safety_api.clock import utcnow
from safety_api.errors import Invalid, to_problem
from safety_api.extensions import db, redis_store
from safety_api.realtime import identity, rooms
from safety_api.services import escort_live, sos_ingest, walk_ingest, walks
from safety_api.services.group_commit import Person

# kind -> function(session, redis, *, user, subject_id, raw_fixes, now) -> {accepted, rejected, ...}
LOCATION_HANDLERS = {}


def location_handler(kind: str):
    """Register the service that takes fixes of one kind (sos, walk, escort)."""
    def register(fn):
        LOCATION_HANDLERS[kind] = fn
        return fn
    return register


def handle_location(data) -> dict:
    """`location` {kind, id, fixes} -> {accepted, rejected} or {error}."""
    return _guarded(lambda: _location(data))


def _location(data) -> dict:
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str) or data["kind"] not in LOCATION_HANDLERS:
        raise Invalid(f"kind must be one of {sorted(LOCATION_HANDLERS)}.",
                      errors=[{"field": "kind", "message": "Unknown kind."}])
    raw = data.get("fixes")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 500:
        raise Invalid("fixes must be a list of 1 to 500 fixes.", errors=[{"field": "fixes", "message": "Invalid."}])
    subject_id = _uuid(data.get("id"), field="id")
    # Who is sending, as the connect handler resolved them: no database read per event on the hottest path.
    me = identity.of_socket()
    user = Person(uuid.UUID(me["user_id"]), me["name"], me["role"])
    return LOCATION_HANDLERS[data["kind"]](db.session, redis_store.client, user=user, subject_id=subject_id,
                                           raw_fixes=raw, now=utcnow())


def handle_watch(data, *, join) -> dict:
    """`watch` {walk_id} -> {ok, walk} after joining this viewer's room of the walk, or {error} (anyone else is
    refused)."""
    def work():
        walk_id = _uuid(data.get("walk_id") if isinstance(data, dict) else None, field="walk_id")
        answer = walks.watch(db.session, viewer_id=identity.of_socket()["user_id"], walk_id=walk_id)
        # This person's own watch room: walk events are addressed per person still allowed, so a guardian
        # whose link ends stops receiving even though this socket stays connected.
        join(rooms.walk_watcher(walk_id, identity.of_socket()["user_id"]))
        return answer
    return _guarded(work)


def handle_unwatch(data, *, leave) -> dict:
    """`unwatch` {walk_id} -> {ok}: leave this viewer's room of the walk."""
    def work():
        walk_id = _uuid(data.get("walk_id") if isinstance(data, dict) else None, field="walk_id")
        leave(rooms.walk_watcher(walk_id, identity.of_socket()["user_id"]))
        return {"ok": True}
    return _guarded(work)


def _uuid(value, *, field: str):
    """The id in `field` of an event, or a 422 naming that field, as REST names the field of a bad body."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Invalid(f"{field} is not a valid id.", errors=[{"field": field, "message": "Not an id."}]) from None


def error_ack(exc: BaseException) -> dict:
    """The ack of a failed event, {error: problem}, by errors.py's one mapping (an unknown error is logged)."""
    body, _status, _headers = to_problem(exc)
    return {"error": body}


def _guarded(work) -> dict:
    """Run a handler; map any error to {error: problem} and always release the session."""
    try:
        return work()
    except Exception as exc:  # one bad message must not break the socket; the client gets a reason
        db.session.rollback()
        return error_ack(exc)
    finally:
        db.session.remove()


@location_handler("sos")
def _sos_fixes(session, redis_client, *, user, subject_id, raw_fixes, now):
    return sos_ingest.record_fixes(session, redis_client, user=user, incident_id=subject_id, raw_fixes=raw_fixes,
                                  now=now)



@location_handler("escort")
def _escort_fixes(session, redis_client, *, user, subject_id, raw_fixes, now):
    return escort_live.record_escort_fixes(session, redis_client, scout=user, booking_id=subject_id,
                                          fixes=raw_fixes, now=now)


@location_handler("walk")
def _walk_fixes(session, redis_client, *, user, subject_id, raw_fixes, now):
    return walk_ingest.record_fixes(session, redis_client, user=user, walk_id=subject_id, raw_fixes=raw_fixes,
                                    now=now)
