"""The Socket.IO message queue on Redis, made to ride out a Redis restart."""
import logging
import time

import socketio

from safety_api.extensions import fail_fast

log = logging.getLogger(__name__)


class RedisQueue(socketio.RedisManager):
    """python-socketio's RedisManager, failing fast while Redis is away and listening again soon after.

    Publishing gives up at once instead of after redis-py's backed-off retries: an emit is best effort and runs
    inside requests and socket handlers. Listening retries every `retry_s` instead of doubling the pause up to
    60 s, so live positions flow again within seconds of Redis being back, however long it was away.
    """

    def __init__(self, url: str, *, channel: str, retry_s: float = 1.0):
        super().__init__(url, channel=channel, redis_options={"retry": fail_fast(), "socket_connect_timeout": 2})
        self.retry_s = retry_s

    def _redis_listen_with_retries(self):
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                yield from self.pubsub.listen()
            except Exception as exc:  # Redis is away: try again soon, whatever the outage's length
                log.warning("socket.io queue cannot listen to Redis (%s); retrying in %.1f s",
                            exc.__class__.__name__, self.retry_s)
                time.sleep(self.retry_s)
