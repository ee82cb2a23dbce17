"""The /mobile and /control namespaces: authenticate once at connect, then join rooms; every client event is acked."""
import logging
import time

import redis
from flask import current_app, request, session
from flask_jwt_extended import decode_token
from flask_socketio import ConnectionRefusedError, Namespace, join_room, leave_room

from safety_api.errors import DomainError, Invalid, NotFound, problem, to_problem
from safety_api.extensions import db, redis_store
from safety_api.models import User
from safety_api.realtime import handlers, rooms

log = logging.getLogger(__name__)
LIFECYCLE = ("connect", "disconnect")  # python-socketio's own events: never a client's to send
SOCKETS_KEPT = 20  # per person: far more phones and consoles than anyone has open at once


def refuse(status: int, detail: str) -> ConnectionRefusedError:
    """A refusal whose error packet carries the reason as {message, data: problem}."""
    title = "Authentication required" if status == 401 else "Forbidden"
    kind = "unauthorized" if status == 401 else "forbidden"
    return ConnectionRefusedError(detail, problem(status, title, detail, kind))


def authenticate(auth) -> User:
    """Resolve the access token given at connect, or refuse the connection saying why."""
    token = auth.get("token") if isinstance(auth, dict) else None
    if not token or not isinstance(token, str):
        raise refuse(401, "Send auth={'token': <access token>}.")
    try:
        claims = decode_token(token)
    except Exception:  # expired, forged or malformed: all mean the same to the client
        raise refuse(401, "Invalid or expired access token.") from None
    if claims.get("type") != "access":
        raise refuse(401, "An access token is required.")
    user = db.session.get(User, claims["sub"])
    if user is None:
        raise refuse(401, "Unknown user.")
    session["user_id"], session["role"], session["district"] = str(user.id), user.role, user.district_code
    session["name"] = user.name
    return user


class AudienceNamespace(Namespace):
    """What both namespaces share: the shape of a client event, the answer to any error, and a record of each
    open socket under its person (so that deleting the account can close them)."""

    def trigger_event(self, event, *args):
        """Refuse what no handler may take, then dispatch; args are (sid, *what the client sent)."""
        refusal = self._refusal(event, args)
        if refusal is not None:
            return handlers.error_ack(refusal)
        return super().trigger_event(event, *args)

    def _refusal(self, event, args) -> DomainError | None:
        if event in LIFECYCLE:
            # python-socketio runs the real connect while the socket is still pending and the real disconnect once
            # it is pending disconnection, and hands on a client's EVENT packet only from a connected socket: a
            # connected socket "connecting" is a client's event under a reserved name. Dispatched, it would run
            # the authentication again and make the socket whoever's token it carries.
            if self.server.manager.is_connected(args[0], self.namespace):
                return NotFound(f"{event} is not an event clients send.")
            return None
        if not isinstance(event, str) or event.startswith("_") or not callable(getattr(self, f"on_{event}", None)):
            return NotFound("No such event on this namespace.")
        if len(args) != 2 or not isinstance(args[1], dict):  # every client event carries one object
            return Invalid("Send one object as the event's payload.",
                           errors=[{"field": "body", "message": "Exactly one object is expected."}])
        return None

    def answer_error(self, exc):
        """Any error of a handler: a refused connection saying why (returning anything but False would let the
        socket in), otherwise an error ack; never an unhandled exception."""
        db.session.rollback()
        if request.event["message"] == "connect":
            body, _status, _headers = to_problem(exc)
            raise ConnectionRefusedError(body["detail"], body)
        return handlers.error_ack(exc)

    def on_disconnect(self, reason=None):
        if session.get("user_id"):
            _forget_socket(session["user_id"], request.namespace, request.sid)

    def admit(self, user: User):
        """The connection is accepted: remember the socket under its person."""
        _remember_socket(user.id, request.namespace, request.sid)
        db.session.remove()


class MobileNamespace(AudienceNamespace):
    """Citizens, guardians and scouts: each socket joins its person's room."""

    def on_connect(self, auth=None):
        user = authenticate(auth)
        join_room(rooms.user(user.id))
        self.admit(user)

    def on_location(self, data):
        """Fixes for an SOS, a walk or an escort; acked with counts."""
        return handlers.handle_location(data)

    def on_watch(self, data):
        """A guardian watches a walk: {walk_id} -> {ok, walk}, joining its room; anyone else gets {error}."""
        return handlers.handle_watch(data, join=join_room)

    def on_unwatch(self, data):
        """Stop watching a walk: {walk_id} -> {ok}."""
        return handlers.handle_unwatch(data, leave=leave_room)


class ControlNamespace(AudienceNamespace):
    """Operators join their district's room; admins the central centre's."""

    def on_connect(self, auth=None):
        user = authenticate(auth)
        if user.role == "operator":
            join_room(rooms.district(user.district_code))
        elif user.role == "admin":
            join_room(rooms.CENTRAL)
        else:
            db.session.remove()
            raise refuse(403, "The control namespace is for operators.")
        self.admit(user)


# Open sockets per person, in Redis: {"<namespace> <sid>": connected at}. The api process that holds a socket
# may be any; python-socketio's disconnect of a sid reaches it through the Redis queue. A crashed process never
# says its sockets went: only the newest SOCKETS_KEPT stay, and the key expires a refresh token's lifetime after
# the person last connected (by then they must log in and connect again to use the service at all).

def _sockets_key(user_id) -> str:
    return f"sockets:user:{user_id}"


def _remember_socket(user_id, namespace: str, sid: str):
    key = _sockets_key(user_id)
    try:
        pipe = redis_store.client.pipeline()
        pipe.zadd(key, {f"{namespace} {sid}": time.time()})
        pipe.zremrangebyrank(key, 0, -SOCKETS_KEPT - 1)
        pipe.expire(key, int(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds()))
        pipe.execute()
    except redis.RedisError as exc:  # the socket works without it; only closing it on deletion would miss it
        log.warning("socket %s of %s not recorded: %s", sid, user_id, exc.__class__.__name__)


def _forget_socket(user_id, namespace: str, sid: str):
    try:
        redis_store.client.zrem(_sockets_key(user_id), f"{namespace} {sid}")
    except redis.RedisError:  # the entry ages out with the key; closing a gone sid again does nothing
        pass


def close_sockets_of(user_id):
    """Disconnect every open socket of a person, on every api process (account deletion)."""
    key, server = _sockets_key(user_id), current_app.extensions["socketio_server"]
    try:
        for member in redis_store.client.zrange(key, 0, -1):
            namespace, sid = member.split(" ", 1)
            server.disconnect(sid, namespace=namespace)  # a sid no process holds any more: nothing happens
        redis_store.client.delete(key)
    except redis.RedisError as exc:  # Redis is the queue too: no process could be told; logged for follow-up
        log.warning("sockets of %s not closed: %s", user_id, exc.__class__.__name__)
