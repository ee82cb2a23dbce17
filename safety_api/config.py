"""Configuration: the one module that reads the environment."""
import math
import os
from datetime import timedelta


def _env(name, default=None):
    return os.environ.get(name, default)


def _read(name, default, parse, what):
    """The variable parsed, or `default` when unset; an unreadable value stops the start, naming the variable."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return parse(raw.strip())
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not {what}") from None


def _int(name, default, *, at_least=None):
    value = _read(name, default, int, "a whole number")
    if at_least is not None and value < at_least:
        raise ValueError(f"{name}: {value} is below its least value, {at_least}")
    return value


def _float(name, default, *, positive=False):
    value = _read(name, default, float, "a number")
    if not math.isfinite(value):  # "nan" and "inf" read as floats; neither is a setting anyone means
        raise ValueError(f"{name}: {value} is not a finite number")
    if positive and value <= 0:
        raise ValueError(f"{name}: {value} must be more than 0")
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _bool(name, default):
    """A yes or a no; anything else ("ture") stops the start rather than silently reading as no."""
    def parse(raw):
        if raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE
        raise ValueError(raw)
    return _read(name, default, parse, f"one of {', '.join(_TRUE + _FALSE)}")


def _limit(name, default):
    """A rate limit in the `limits` notation ("5/minute;20/hour"): a typo would otherwise be found by the first
    login or PIN it was meant to limit, as a 500."""
    from limits import parse_many

    def parse(raw):
        parse_many(raw)  # ValueError when unreadable
        return raw
    return _read(name, default, parse, 'a rate limit such as "5/minute;20/hour"')


# HS256 signs with an HMAC of SHA-256: a key shorter than its 32 bytes is easier to guess than the hash is to break.
SECRET_MIN_LENGTH = 32


def _secret(name, default):
    """A signing key. Set but empty (a systemd environment file's `SECRET_KEY=`) reads as unset rather than as
    an empty key, with which every token signed or checked would fail; a short one stops the start."""
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    if len(raw) < SECRET_MIN_LENGTH:
        raise ValueError(f"{name}: {len(raw)} characters; a signing key needs at least {SECRET_MIN_LENGTH} "
                         f"(e.g. python -c \"import secrets; print(secrets.token_urlsafe(48))\")")
    return raw


def _hours(name, default):
    """A window of Seoul hours written START-END (e.g. 20-6, across midnight)."""
    def parse(raw):
        start, end = (int(part) for part in raw.split("-"))  # not two whole numbers: ValueError
        if not (0 <= start <= 24 and 0 <= end <= 24):
            raise ValueError(raw)
        return start, end
    return _read(name, default, parse, "START-END, two hours from 0 to 24 (e.g. 20-6)")


# The key used when none is set: printed here, so anyone could sign tokens with it. `make run` sets random ones
# (scripts/serve.sh) and docker-compose refuses to start without them; the app warns when it signs with this.
DEVELOPMENT_SECRET = "dev-only-change-me-in-production-0123456789"
# A job's lease against FCM_HTTP_TIMEOUT_S: one push send waits up to the timeout for its answer, and the lease
# also covers the job's database work and the connection; half as much again.
LEASE_PER_SEND_TIMEOUT = 1.5


def default_channel(redis_url: str) -> str:
    """The Socket.IO channel of a deployment on this Redis database: "safety-socketio" on database 0 (the name
    every release before used, so a rolling deploy's old and new processes still hear each other),
    "safety-socketio-db<N>" on database N."""
    from redis.connection import parse_url
    try:
        number = int(parse_url(redis_url).get("db") or 0)
    except ValueError as exc:
        raise ValueError(f"REDIS_URL: {redis_url!r} is not a Redis URL ({exc})") from None
    return "safety-socketio" if number == 0 else f"safety-socketio-db{number}"


class Config:
    """Settings with local defaults; every one can be overridden by an environment variable."""

    def __init__(self):
        self.SECRET_KEY = _secret("SECRET_KEY", DEVELOPMENT_SECRET)
        # Serving (gunicorn.conf.py) with DEVELOPMENT_SECRET is refused unless this says yes: tests and local tools.
        self.ALLOW_DEVELOPMENT_KEY = _bool("ALLOW_DEVELOPMENT_KEY", False)
        self.SQLALCHEMY_DATABASE_URI = _env(
            "DATABASE_URL", "postgresql+psycopg://safety:safety@127.0.0.1:5432/safety")
        self.SQLALCHEMY_ENGINE_OPTIONS = {
            "pool_pre_ping": True,
            "pool_size": _int("DB_POOL_SIZE", 10, at_least=1),
            "max_overflow": _int("DB_MAX_OVERFLOW", 20, at_least=0),
            "pool_timeout": _float("DB_POOL_TIMEOUT_S", 5, positive=True),
            # Fail fast when PostgreSQL is away so callers get a 503, never a hang (libpq reads 0 as "wait forever").
            "connect_args": {"connect_timeout": _int("DB_CONNECT_TIMEOUT_S", 3, at_least=1)},
        }
        self.REDIS_URL = _env("REDIS_URL", "redis://127.0.0.1:6379/0")
        # Redis pub/sub ignores the database number: deployments sharing a Redis on different databases would
        # hear each other's events (callers' positions) on one channel. The default channel carries the number.
        self.SOCKETIO_CHANNEL = _env("SOCKETIO_CHANNEL") or default_channel(self.REDIS_URL)
        self.SOCKETIO_ASYNC_MODE = _env("SOCKETIO_ASYNC_MODE", "threading")
        # How often each api process checks its open sockets against the database (realtime.open_sockets.Sweep)
        self.SOCKET_SWEEP_S = _float("SOCKET_SWEEP_S", 30.0, positive=True)
        self.CORS_ORIGINS = _env("CORS_ORIGINS", "*")
        # How many reverse proxies in front append to X-Forwarded-For (nginx: 1); 0 trusts none (safety_api.proxies)
        self.TRUSTED_PROXY_HOPS = _int("TRUSTED_PROXY_HOPS", 0, at_least=0)

        self.JWT_SECRET_KEY = _secret("JWT_SECRET_KEY", self.SECRET_KEY)
        # At least a minute: shorter, phones would spend their time refreshing (0 or less: everyone signed out).
        self.JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=_int("JWT_ACCESS_TTL_S", 900, at_least=60))
        self.JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=_int("JWT_REFRESH_TTL_DAYS", 30, at_least=1))

        self.ARGON2_TIME_COST = _int("ARGON2_TIME_COST", 3, at_least=1)
        self.ARGON2_MEMORY_KIB = _int("ARGON2_MEMORY_KIB", 65536, at_least=8)  # argon2's least: 8 KiB per lane
        # Hashes one process runs at once (each holds ARGON2_MEMORY_KIB), and how long a request waits for its
        # turn before a 503: a burst of registrations or logins must not starve the SOS of memory and CPU.
        self.ARGON2_MAX_CONCURRENT = _int("ARGON2_MAX_CONCURRENT", 4, at_least=1)
        self.ARGON2_WAIT_S = _float("ARGON2_WAIT_S", 2.0, positive=True)
        # Password attempts (login, and the account's changes that ask for it): accounts.check_password says why.
        self.LOGIN_LIMIT_PER_ADDRESS = _limit("LOGIN_LIMIT_PER_ADDRESS", "30/minute")
        self.LOGIN_LIMIT_PER_PHONE_AND_ADDRESS = _limit("LOGIN_LIMIT_PER_PHONE_AND_ADDRESS", "5/minute;20/hour")
        # Above what one address may try in the hour, so that locking the owner out takes many addresses.
        self.LOGIN_FAILURE_LIMIT_PER_PHONE = _limit("LOGIN_FAILURE_LIMIT_PER_PHONE", "100/hour")
        if "LOGIN_LIMIT_PER_PHONE" in os.environ:  # a limit set for the old bucket must not be dropped silently
            raise ValueError("LOGIN_LIMIT_PER_PHONE is now LOGIN_LIMIT_PER_PHONE_AND_ADDRESS and "
                             "LOGIN_FAILURE_LIMIT_PER_PHONE (docs/operations.md)")
        self.PIN_LIMIT = _limit("PIN_LIMIT", "5/10minutes")
        # Per client address: each registration hashes a password, and its 409 tells a registered phone.
        self.REGISTER_LIMIT_PER_ADDRESS = _limit("REGISTER_LIMIT_PER_ADDRESS", "20/hour")
        # Per inviter: an invite tells a registered phone from an unknown one (404), so it is a guess to slow down;
        # people invite a handful of guardians, mistypes included.
        self.GUARDIAN_INVITE_LIMIT = _limit("GUARDIAN_INVITE_LIMIT", "10/day")

        # Unset (or empty, as docker-compose passes an unset one): the project of the service account in
        # GOOGLE_APPLICATION_CREDENTIALS, the only one it may send to. The worker checks both at start.
        self.FCM_PROJECT_ID = _env("FCM_PROJECT_ID") or None
        self.FCM_CREDENTIALS = _env("GOOGLE_APPLICATION_CREDENTIALS") or None
        self.FCM_ENDPOINT = _env("FCM_ENDPOINT") or None  # a stand-in FCM server for tests and demos
        # How long one FCM request may wait for its connection, and again for its answer.
        self.FCM_HTTP_TIMEOUT_S = _float("FCM_HTTP_TIMEOUT_S", 10, positive=True)

        self.SOS_ESCALATE_AFTER_S = _float("SOS_ESCALATE_AFTER_S", 60, positive=True)
        self.POSITIONS_FLUSH_S = _float("POSITIONS_FLUSH_S", 0.3, positive=True)

        self.WORKER_POLL_S = _float("WORKER_POLL_S", 0.5, positive=True)
        self.WORKER_BATCH = _int("WORKER_BATCH", 20, at_least=1)
        # A job claimed by a worker that died comes back after its lease, so the lease must outlast the longest
        # job, one push send: shorter, and another worker takes over a push still on the wire and sends it again.
        self.JOB_LEASE_S = _float("JOB_LEASE_S", 60, positive=True)
        if self.JOB_LEASE_S < LEASE_PER_SEND_TIMEOUT * self.FCM_HTTP_TIMEOUT_S:
            raise ValueError(f"JOB_LEASE_S: {self.JOB_LEASE_S:g} s is shorter than one push send may take; make it at "
                             f"least {LEASE_PER_SEND_TIMEOUT:g} x FCM_HTTP_TIMEOUT_S "
                             f"({LEASE_PER_SEND_TIMEOUT * self.FCM_HTTP_TIMEOUT_S:g} s)")

        self.LOG_LEVEL = _env("LOG_LEVEL", "INFO")
        # How long a thread may hold the GIL while others wait (Python's default is 5 ms). A serving process
        # runs hundreds of socket threads; a request that waits on PostgreSQL a dozen times would wait for
        # the GIL a dozen times more. 1 ms keeps an SOS from queueing behind location batches.
        self.GIL_SWITCH_INTERVAL_S = _float("GIL_SWITCH_INTERVAL_S", 0.001, positive=True)
        self.LOG_JSON = _bool("LOG_JSON", True)

        self.API_TITLE = "Ansimi safety backend"
        self.API_VERSION = "v1"
        self.OPENAPI_VERSION = "3.1.0"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "api/v1/openapi.json"
        self.OPENAPI_SWAGGER_UI_PATH = "docs"
        self.OPENAPI_SWAGGER_UI_URL = "/vendor/swagger-ui/"
        self.SAFETY_CCTV_M = _float("SAFETY_CCTV_M", 30)
        self.SAFETY_BELL_M = _float("SAFETY_BELL_M", 50)
        self.SAFETY_LIGHT_M = _float("SAFETY_LIGHT_M", 30)
        self.SAFETY_SAFE_HOUSE_M = _float("SAFETY_SAFE_HOUSE_M", 100)
        self.ROUTE_MAX_DETOUR = _float("ROUTE_MAX_DETOUR", 1.4)
        self.ROUTE_SNAP_MAX_M = _float("ROUTE_SNAP_MAX_M", 150)
        self.WALKING_SPEED_MPS = _float("WALKING_SPEED_MPS", 1.3)
        self.ROUTE_VERSION_CHECK_S = _float("ROUTE_VERSION_CHECK_S", 5)
        self.ROUTE_NIGHT_HOURS = _hours("ROUTE_NIGHT_HOURS", (20, 6))
        self.FACILITY_MAX_RADIUS_M = _float("FACILITY_MAX_RADIUS_M", 2000)
        self.FACILITY_MAX_LIMIT = _int("FACILITY_MAX_LIMIT", 200)

        # Escort booking (안심귀가스카우트): the real programme's rules by default, in Asia/Seoul.
        self.ESCORT_SERVICE_HOURS = _env("ESCORT_SERVICE_HOURS", "Mon 22:00-24:00; Tue-Fri 22:00-01:00")
        # Per-district hours: ESCORT_SERVICE_HOURS_11620="Mon-Fri 21:00-01:00" overrides 관악구 only.
        self.ESCORT_DISTRICT_HOURS = {key.rsplit("_", 1)[1]: value for key, value in os.environ.items()
                                      if key.startswith("ESCORT_SERVICE_HOURS_")}
        self.ESCORT_MIN_LEAD_MINUTES = _int("ESCORT_MIN_LEAD_MINUTES", 30)
        self.ESCORT_SAME_DAY_ONLY = _bool("ESCORT_SAME_DAY_ONLY", True)
        self.ESCORT_REMINDER_MINUTES = _int("ESCORT_REMINDER_MINUTES", 10)
        self.ESCORT_UNCONFIRMED_MINUTES = _int("ESCORT_UNCONFIRMED_MINUTES", 15)
        self.ESCORT_LATE_MINUTES = _int("ESCORT_LATE_MINUTES", 10, at_least=1)
        self.ESCORT_TURNAROUND_MINUTES = _int("ESCORT_TURNAROUND_MINUTES", 15)
        self.ESCORT_MAX_WALK_M = _float("ESCORT_MAX_WALK_M", 4000)
        self.ESCORT_START_LEAD_MINUTES = _int("ESCORT_START_LEAD_MINUTES", 30, at_least=0)
        self.ESCORT_OVERRUN_GRACE_MINUTES = _int("ESCORT_OVERRUN_GRACE_MINUTES", 30, at_least=0)
        # Walk-home monitoring (안심귀가 모니터링); docs/monitoring.md says why each default.
        self.WALK_ARRIVAL_MARGIN_S = _float("WALK_ARRIVAL_MARGIN_S", 180)
        self.WALK_ARRIVAL_MARGIN_RATIO = _float("WALK_ARRIVAL_MARGIN_RATIO", 0.2)
        self.WALK_CHECKIN_WINDOW_S = _float("WALK_CHECKIN_WINDOW_S", 120)
        self.WALK_SIGNAL_LOST_S = _float("WALK_SIGNAL_LOST_S", 120)
        self.WALK_STALL_S = _float("WALK_STALL_S", 300)
        self.WALK_OVERDUE_GRACE_S = _float("WALK_OVERDUE_GRACE_S", 600)
        self.FIX_RETENTION_DAYS = _float("FIX_RETENTION_DAYS", 30)
        self.FIX_PURGE_INTERVAL_S = _float("FIX_PURGE_INTERVAL_S", 3600)
        self.JOB_RETENTION_DAYS = _float("JOB_RETENTION_DAYS", 30)
        self.DATA_DIR = _env("DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "data"))
        self.CONSOLE_TILE_URL = _env("CONSOLE_TILE_URL", "")
