"""The /mobile and /control namespaces: authenticate once at connect, then join rooms."""
from flask import session
from flask_jwt_extended import decode_token
from flask_socketio import ConnectionRefusedError, Namespace, join_room, leave_room

from safety_api.errors import problem
from safety_api.extensions import db
from safety_api.models import User
from safety_api.realtime import handlers, rooms


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


class MobileNamespace(Namespace):
    """Citizens, guardians and scouts: each socket joins its person's room."""

    def on_connect(self, auth=None):
        user = authenticate(auth)
        join_room(rooms.user(user.id))
        db.session.remove()

    def on_location(self, data):
        """Fixes for an SOS, a walk or an escort; acked with counts."""
        return handlers.handle_location(data)

    def on_watch(self, data):
        """A guardian watches a walk: {walk_id} -> {ok, walk}, joining its room; anyone else gets {error}."""
        return handlers.handle_watch(data, join=join_room)

    def on_unwatch(self, data):
        """Stop watching a walk: {walk_id} -> {ok}."""
        return handlers.handle_unwatch(data, leave=leave_room)


class ControlNamespace(Namespace):
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
        db.session.remove()
