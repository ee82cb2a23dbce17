"""Every open socket, recorded under its person and sign-in, so that deleting an account, signing out or a
suspension closes them on whichever api process holds them; and each process's sweep of its own sockets against
the database (`Sweep`), the backstop for a close that never arrived.

In Redis, per person: {"<namespace> <socket id> <sign-in or ->": connected at}. python-socketio's disconnect of
a socket id reaches the process that holds it through the Redis queue. A crashed process never says its sockets
went: only the newest SOCKETS_KEPT stay, and the key expires a refresh token's lifetime after the person last
connected (by then they must sign in and connect again to use the service at all).
"""
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import redis
from flask import current_app

from safety_api.extensions import db, redis_store

log = logging.getLogger(__name__)
SOCKETS_KEPT = 20  # per person: far more phones and consoles than anyone has open at once
CLOSE_AGAIN_AFTER_S = 2.0
NO_SIGN_IN = "-"  # a socket whose access token named no sign-in: closed only with all of its person's


def _key(user_id) -> str:
    return f"sockets:user:{user_id}"


def member(namespace: str, sid: str, sign_in: str | None) -> str:
    return f"{namespace} {sid} {sign_in or NO_SIGN_IN}"


def remember(user_id, member_name: str):
    key = _key(user_id)
    try:
        pipe = redis_store.client.pipeline()
        pipe.zadd(key, {member_name: time.time()})
        pipe.zremrangebyrank(key, 0, -SOCKETS_KEPT - 1)
        pipe.expire(key, int(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds()))
        pipe.execute()
    except redis.RedisError as exc:  # the socket works without it; only closing it later would miss it
        log.warning("socket %s of %s not recorded: %s", member_name, user_id, exc.__class__.__name__)


def forget(user_id, member_name: str):
    try:
        redis_store.client.zrem(_key(user_id), member_name)
    except redis.RedisError:  # the entry ages out with the key; closing a gone sid again does nothing
        pass


def close_sockets_of(user_id, sign_in: str | None = None, *, but: str | None = None):
    """Disconnect the open sockets of a person, on every api process: all of them (account deletion, signing
    out everywhere), those opened with one sign-in's access tokens (signing out), or all but those of one
    sign-in (`but`: a password change, which keeps the phone that made it)."""
    key, server = _key(user_id), current_app.extensions["socketio_server"]
    try:
        closing = [name for name in redis_store.client.zrange(key, 0, -1)
                   if (sign_in is None or _sign_in_of(name) == sign_in) and (but is None or _sign_in_of(name) != but)]
        _disconnect(server, closing)
        if closing:
            redis_store.client.zrem(key, *closing)
    except redis.RedisError as exc:  # Redis is the queue too: no process could be told; logged for follow-up
        log.warning("sockets of %s not closed: %s", user_id, exc.__class__.__name__)
        return
    if closing:
        # python-socketio ignores a disconnect for a socket whose connect is still running: one that read the
        # sign-in just before it ended is recorded (namespaces.authenticate records first) but was still
        # connecting. Close the same sockets again once such a connect has long finished.
        again = threading.Timer(CLOSE_AGAIN_AFTER_S, _disconnect_quietly, args=(server, closing))
        again.daemon = True
        again.start()


def _sign_in_of(member_name: str) -> str | None:
    parts = member_name.split(" ", 2)
    return parts[2] if len(parts) == 3 else None


def _disconnect(server, names):
    for name in names:
        namespace, sid = name.split(" ", 2)[:2]
        server.disconnect(sid, namespace=namespace)  # a sid no process holds any more: nothing happens


def _disconnect_quietly(server, names):
    try:
        _disconnect(server, names)
    except redis.RedisError as exc:
        log.warning("sockets not closed again: %s", exc.__class__.__name__)


# --- this process's own sockets, checked against the database -------------------------------------------------

@dataclass(frozen=True)
class LocalSocket:
    """A socket this process holds, as its connect found its person."""

    namespace: str
    sid: str
    user_id: str
    sign_in: str | None
    district: str | None


class Sweep:
    """Every SOCKET_SWEEP_S, one process checks the sockets it holds against the database and closes those whose
    person can no longer hold them: signed out of that sign-in or past its expiry, suspended, deleted, or moved to
    another district (the reconnect joins the new district's room).

    The closes that signing out, a suspension or a deletion send through Redis right after their commit are the
    fast path; this is the backstop that needs neither Redis nor the process that did it to have lived past
    its commit, so a socket outlives its person's standing by at most one sweep."""

    def __init__(self, app):
        self.app = app
        self._sockets: dict[tuple[str, str], LocalSocket] = {}
        self._lock = threading.Lock()
        self._started = False

    def hold(self, socket: LocalSocket):
        with self._lock:
            self._sockets[(socket.namespace, socket.sid)] = socket
            if not self._started:  # started by the first socket: only processes that hold sockets sweep
                self._started = True
                self.app.extensions["socketio_server"].start_background_task(self._run)

    def let_go(self, namespace: str, sid: str):
        with self._lock:
            self._sockets.pop((namespace, sid), None)

    def _run(self):
        server = self.app.extensions["socketio_server"]
        while True:
            server.sleep(self.app.config["SOCKET_SWEEP_S"])
            try:
                with self.app.app_context():
                    self.sweep()
            except Exception:  # noqa: BLE001 - a failed sweep (database away) is retried at the next one
                log.warning("socket sweep failed", exc_info=True)

    def sweep(self) -> list[LocalSocket]:
        """Close the sockets whose person can no longer hold them (in an app context); returns them."""
        from safety_api.services import accounts  # services import this module (they close sockets)
        with self._lock:
            held = list(self._sockets.values())
        server, stale = self.app.extensions["socketio_server"], []
        for start in range(0, len(held), SWEEP_CHUNK):
            if start:
                server.sleep(0)  # let the socket threads have the GIL between chunks
            chunk = held[start:start + SWEEP_CHUNK]
            try:
                districts, ended = accounts.standing(db.session, user_ids=[uuid.UUID(s.user_id) for s in chunk],
                                                     sign_ins=[s.sign_in for s in chunk if s.sign_in])
            finally:
                db.session.remove()
            stale += [s for s in chunk
                      if districts.get(uuid.UUID(s.user_id), _GONE) != s.district or s.sign_in in ended]
        for socket in stale:
            # Held here and connected: closed without Redis. The entry goes when the socket's own disconnect
            # runs (namespaces.on_disconnect), so one still connecting (python-socketio ignores a disconnect
            # then) is closed by the next sweep instead of forgotten.
            if server.manager.is_connected(socket.sid, socket.namespace):
                log.info("closing socket %s of %s: its person's standing changed", socket.sid, socket.user_id)
                server.disconnect(socket.sid, namespace=socket.namespace)
        return stale


_GONE = object()  # no district at all: the person is deleted or suspended
# Sockets checked per pair of reads: a process holding thousands never holds the GIL for one long sweep
# (bench.sweep: 5,000 at once kept it for most of 90 ms; in chunks the socket threads get a turn between).
SWEEP_CHUNK = 500


def sweep_of(app) -> Sweep:
    """The app's sweep of its own sockets (made by realtime.init_app)."""
    return app.extensions["socket_sweep"]
