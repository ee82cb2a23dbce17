"""Every open socket, recorded under its person and sign-in, so that deleting an account or signing out closes
them on whichever api process holds them.

In Redis, per person: {"<namespace> <socket id> <sign-in or ->": connected at}. python-socketio's disconnect of
a socket id reaches the process that holds it through the Redis queue. A crashed process never says its sockets
went: only the newest SOCKETS_KEPT stay, and the key expires a refresh token's lifetime after the person last
connected (by then they must sign in and connect again to use the service at all).
"""
import logging
import threading
import time

import redis
from flask import current_app

from safety_api.extensions import redis_store

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


def close_sockets_of(user_id, sign_in: str | None = None):
    """Disconnect the open sockets of a person, on every api process: all of them (account deletion, signing
    out everywhere), or those opened with one sign-in's access tokens (signing out)."""
    key, server = _key(user_id), current_app.extensions["socketio_server"]
    try:
        closing = [name for name in redis_store.client.zrange(key, 0, -1)
                   if sign_in is None or name.split(" ", 2)[2:] == [sign_in]]
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


def _disconnect(server, names):
    for name in names:
        namespace, sid = name.split(" ", 2)[:2]
        server.disconnect(sid, namespace=namespace)  # a sid no process holds any more: nothing happens


def _disconnect_quietly(server, names):
    try:
        _disconnect(server, names)
    except redis.RedisError as exc:
        log.warning("sockets not closed again: %s", exc.__class__.__name__)
