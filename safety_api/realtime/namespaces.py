"""The /mobile and /control namespaces: authenticate once at connect, then join rooms; every client event is acked."""
from abc import ABC, abstractmethod

from flask import current_app, request
from flask_jwt_extended import decode_token
from flask_socketio import ConnectionRefusedError, Namespace, join_room, leave_room

from safety_api.errors import DomainError, Invalid, NotFound, problem, to_problem
from safety_api.extensions import db
from safety_api.models import User
from safety_api.realtime import handlers, identity, open_sockets, rooms
from safety_api.security import SIGN_IN_CLAIM
from safety_api.services import accounts

LIFECYCLE = ("connect", "disconnect")  # python-socketio's own events: never a client's to send


def refuse(status: int, detail: str) -> ConnectionRefusedError:
    """A refusal whose error packet carries the reason as {message, data: problem}."""
    title = "Authentication required" if status == 401 else "Forbidden"
    kind = "unauthorized" if status == 401 else "forbidden"
    return ConnectionRefusedError(detail, problem(status, title, detail, kind))


def authenticate(auth) -> User:
    """Resolve the access token given at connect, or refuse the connection saying why.

    The socket is recorded under its person and sign-in before the sign-in is read: signing out commits first
    and then closes what is recorded, so a connect racing with it is either refused here or found and closed
    there (open_sockets.close_sockets_of, which also closes again what was still connecting)."""
    token = auth.get("token") if isinstance(auth, dict) else None
    if not token or not isinstance(token, str):
        raise refuse(401, "Send auth={'token': <access token>}.")
    try:
        claims = decode_token(token)
    except Exception:  # expired, forged or malformed: all mean the same to the client
        raise refuse(401, "Invalid or expired access token.") from None
    if claims.get("type") != "access":
        raise refuse(401, "An access token is required.")
    me = identity.of_socket()
    me["user_id"], me["sign_in"] = str(claims["sub"]), claims.get(SIGN_IN_CLAIM)
    open_sockets.remember(me["user_id"], _member())
    user = accounts.signed_in_user(db.session, claims["sub"], claims.get(SIGN_IN_CLAIM))
    if user is None:
        raise refuse(401, "Unknown user, or signed out.")
    me["role"], me["district"], me["name"] = user.role, user.district_code, user.name
    return user


class AudienceNamespace(Namespace, ABC):
    """What both namespaces share: the shape of a client event, the answer to any error, and a record of each
    open socket under its person and sign-in (so that deleting the account or signing out closes them)."""

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
        open_sockets.sweep_of(current_app).let_go(request.namespace, request.sid)
        if identity.of_socket().get("user_id"):
            open_sockets.forget(identity.of_socket()["user_id"], _member())

    def on_connect(self, auth=None):
        try:
            user = authenticate(auth)
            self.join(user)
        except BaseException:  # refused, or failed on a backing service: no record of the socket stays
            _forget_refused()
            raise
        db.session.remove()
        me = identity.of_socket()
        open_sockets.sweep_of(current_app).hold(open_sockets.LocalSocket(
            request.namespace, request.sid, me["user_id"], me.get("sign_in"), me["district"]))

    @abstractmethod
    def join(self, user: User):
        """Join the audience's rooms, or refuse the person."""


class MobileNamespace(AudienceNamespace):
    """Citizens, guardians and scouts: each socket joins its person's room."""

    def join(self, user: User):
        join_room(rooms.user(user.id))

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
    """Operators join their district's room; admins the central centre's and the one every district's news
    goes to (rooms.district_audience)."""

    def join(self, user: User):
        if user.role == "operator":
            join_room(rooms.district(user.district_code))
        elif user.role == "admin":
            for room in rooms.ADMIN:
                join_room(room)
        else:
            raise refuse(403, "The control namespace is for operators.")


def _member() -> str:
    return open_sockets.member(request.namespace, request.sid, identity.of_socket().get("sign_in"))


def _forget_refused():
    """A refused connect leaves no record of itself (and no person on its session)."""
    me = identity.of_socket()
    if me.get("user_id"):
        open_sockets.forget(me["user_id"], _member())
        me.clear()
