"""Redis-backed attempt limits (passwords, PINs, guardian invites) on the `limits` library's moving windows."""
import ipaddress
import time
from dataclasses import dataclass

from flask import current_app, request
from limits import parse_many
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from safety_api.errors import RateLimited


class AttemptLimiter:
    """Count attempts per key and refuse once a window is full. A limit may hold several windows, "5/minute;20/hour"."""

    def __init__(self, redis_url: str):
        self._limiter = MovingWindowRateLimiter(RedisStorage(redis_url))

    def hit(self, limit: str, *key: str):
        """Record one attempt in each window; raise RateLimited when one is already full."""
        for item in parse_many(limit):
            if not self._limiter.hit(item, *key):
                self._refuse(item, key)

    def check(self, limit: str, *key: str):
        """Raise RateLimited when a window is full, recording nothing (for limits that count only failures)."""
        for item in parse_many(limit):
            if not self._limiter.test(item, *key):
                self._refuse(item, key)

    def clear(self, limit: str, *key: str):
        """Forget the attempts of a key (after a success)."""
        for item in parse_many(limit):
            self._limiter.clear(item, *key)

    def _refuse(self, item, key):
        reset_at, _remaining = self._limiter.get_window_stats(item, *key)
        raise RateLimited("Too many attempts; wait before trying again.", retry_after=int(reset_at - time.time()) + 1)


@dataclass(frozen=True)
class PasswordLimits:
    """How often a password may be tried (accounts.check_password says why three limits)."""

    per_address: str  # every attempt from one client address, whatever the phone
    per_phone_and_address: str  # every attempt at one account from one address: the tight one
    failures_per_phone: str  # wrong passwords for one account, from anywhere


def password_limits() -> PasswordLimits:
    """The current app's password limits."""
    cfg = current_app.config
    return PasswordLimits(per_address=cfg["LOGIN_LIMIT_PER_ADDRESS"],
                          per_phone_and_address=cfg["LOGIN_LIMIT_PER_PHONE_AND_ADDRESS"],
                          failures_per_phone=cfg["LOGIN_FAILURE_LIMIT_PER_PHONE"])


def client_address() -> str:
    """The requesting client as per-client limits count it (behind proxies, as safety_api.proxies reads it). An
    IPv6 address counts by its /64: one subscriber holds a whole /64, and could otherwise try from a fresh
    address each time."""
    address = request.remote_addr or "-"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 4:
        return address
    if parsed.ipv4_mapped:  # an IPv4 client of a dual-stack socket
        return str(parsed.ipv4_mapped)
    return str(ipaddress.ip_network(f"{parsed}/64", strict=False))


def init_app(app):
    """Create the app's limiter on its Redis."""
    app.extensions["attempt_limiter"] = AttemptLimiter(app.config["REDIS_URL"])


def limiter() -> AttemptLimiter:
    """The current app's limiter."""
    return current_app.extensions["attempt_limiter"]
