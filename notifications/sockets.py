"""Emit-only Socket.IO over the Redis message queue, for the worker and scripts (no Flask)."""
import json
import logging
import threading

import socketio
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)


class _CheckedRedisManager(socketio.RedisManager):
    """A write-only RedisManager that tells whether its last publish reached Redis."""

    # python-socketio's _publish logs and swallows Redis errors and emit() returns nothing, so
    # _publish's own result (PUBLISH's receiver count, or None after giving up) is the only signal.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._outcome = threading.local()

    def _publish(self, data):
        result = super()._publish(data)
        self._outcome.ok = result is not None
        return result

    def emit_checked(self, event, data, *, namespace, room):
        """Emit through the queue; return True if Redis accepted the publish."""
        self._outcome.ok = False
        self.emit(event, data, namespace=namespace, room=room)
        return self._outcome.ok


class SocketEmitter:
    """Publish Socket.IO events for the api processes to deliver; failures never raise."""

    def __init__(self, url, *, channel, timeout_s=2.0):
        # Short timeouts and one immediate retry (redis-py's default is ten, backed off: ~3.5 s while Redis
        # is away): an emit is best effort and must not stall the worker's job loop.
        options = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s, "retry": Retry(NoBackoff(), 1)}
        self._manager = _CheckedRedisManager(url, channel=channel, write_only=True,
                                             logger=log, redis_options=options)

    def emit(self, event, payload, *, namespace, room=None):
        """Send ``event`` to ``room`` (or the whole ``namespace``); return whether it was queued."""
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as exc:
            # Caught here because python-socketio would report it as a Redis failure and reconnect.
            log.error("socket event %s to %s%s not JSON-serialisable: %s",
                      event, namespace, room or "", exc)
            return False
        try:
            return self._manager.emit_checked(event, payload, namespace=namespace, room=room)
        except Exception:  # pylint: disable=broad-except
            # A realtime emit is the fast path; the outbox guarantees delivery, so never spread.
            log.exception("socket event %s to %s%s failed", event, namespace, room or "")
            return False

    def close(self):
        """Release the Redis connection pool."""
        client = self._manager.redis
        if client is not None:
            client.close()
