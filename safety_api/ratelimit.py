"""Redis-backed attempt limits (login, PIN, guardian invites) on the `limits` library's moving windows."""
import time

from flask import current_app
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from safety_api.errors import RateLimited


class AttemptLimiter:
    """Count attempts per key and refuse once a window is full."""

    def __init__(self, redis_url: str):
        self._limiter = MovingWindowRateLimiter(RedisStorage(redis_url))

    def hit(self, limit: str, *key: str):
        """Record one attempt; raise RateLimited when the window is already full."""
        item = parse(limit)
        if not self._limiter.hit(item, *key):
            reset_at, _remaining = self._limiter.get_window_stats(item, *key)
            raise RateLimited("Too many attempts; wait before trying again.",
                              retry_after=int(reset_at - time.time()) + 1)

    def clear(self, limit: str, *key: str):
        """Forget the attempts of a key (after a success)."""
        self._limiter.clear(parse(limit), *key)


def init_app(app):
    """Create the app's limiter on its Redis."""
    app.extensions["attempt_limiter"] = AttemptLimiter(app.config["REDIS_URL"])


def limiter() -> AttemptLimiter:
    """The current app's limiter."""
    return current_app.extensions["attempt_limiter"]
