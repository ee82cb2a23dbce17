"""Settings read from the environment: an unreadable or unsafe value stops the start, naming its variable."""
import pytest

from safety_api.config import Config


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Only the variables a test sets: the shell's own must not decide a test."""
    for name in ("WORKER_BATCH", "WORKER_POLL_S", "SOS_ESCALATE_AFTER_S", "JOB_LEASE_S", "FCM_HTTP_TIMEOUT_S",
                 "ROUTE_NIGHT_HOURS", "LOG_JSON", "ESCORT_SAME_DAY_ONLY", "DB_POOL_SIZE", "DB_CONNECT_TIMEOUT_S",
                 "SECRET_KEY", "JWT_SECRET_KEY", "JWT_ACCESS_TTL_S", "GIL_SWITCH_INTERVAL_S", "ARGON2_WAIT_S",
                 "PIN_LIMIT", "LOGIN_LIMIT_PER_ADDRESS", "ALLOW_DEVELOPMENT_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("variable, value, told", [
    ("WORKER_BATCH", "twenty", "WORKER_BATCH: 'twenty' is not a whole number"),
    ("DB_POOL_SIZE", "10.5", "DB_POOL_SIZE: '10.5' is not a whole number"),
    ("JOB_LEASE_S", "60s", "JOB_LEASE_S: '60s' is not a number"),
    ("SOS_ESCALATE_AFTER_S", "", "SOS_ESCALATE_AFTER_S: '' is not a number"),
    ("ROUTE_NIGHT_HOURS", "20", "ROUTE_NIGHT_HOURS: '20' is not START-END"),
    ("ROUTE_NIGHT_HOURS", "20:00-06:00", "ROUTE_NIGHT_HOURS: '20:00-06:00' is not START-END"),
    ("ROUTE_NIGHT_HOURS", "20-30", "ROUTE_NIGHT_HOURS: '20-30' is not START-END"),
])
def test_an_unreadable_value_stops_the_start_naming_its_variable(monkeypatch, variable, value, told):
    """Before, int() and float() said only "invalid literal for int() with base 10: 'twenty'"."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as refused:
        Config()
    assert str(refused.value).startswith(told)


@pytest.mark.parametrize("variable", ["LOG_JSON", "ESCORT_SAME_DAY_ONLY"])
@pytest.mark.parametrize("value", ["ture", "flase", "2", ""])
def test_a_yes_or_no_that_is_neither_is_refused_not_read_as_no(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable}: "):
        Config()


@pytest.mark.parametrize("value, read", [("1", True), ("TRUE", True), ("on", True), ("0", False), ("No", False),
                                         ("off", False)])
def test_yes_and_no_are_read_in_their_usual_spellings(monkeypatch, value, read):
    monkeypatch.setenv("LOG_JSON", value)
    assert Config().LOG_JSON is read


@pytest.mark.parametrize("variable, value", [
    ("WORKER_BATCH", "0"),  # claims nothing, ever: no push would go out
    ("WORKER_POLL_S", "0"),  # an idle worker spinning on the database
    ("WORKER_POLL_S", "-1"),
    ("SOS_ESCALATE_AFTER_S", "0"),
    ("SOS_ESCALATE_AFTER_S", "-60"),
    ("SOS_ESCALATE_AFTER_S", "inf"),  # the escalation timer would be a 500 at every SOS
    ("JOB_LEASE_S", "nan"),
    ("DB_CONNECT_TIMEOUT_S", "0"),  # libpq: wait for ever
    ("GIL_SWITCH_INTERVAL_S", "0"),  # before, Python's own "switch interval must be strictly positive" at import
    ("JWT_ACCESS_TTL_S", "0"),  # before, every token expired as it was made: everyone signed out
    ("ARGON2_WAIT_S", "-1"),
    ("PIN_LIMIT", "5/10minuts"),  # before, the first PIN entered was a 500
    ("LOGIN_LIMIT_PER_ADDRESS", "thirty a minute"),
    ("SECRET_KEY", "short"),  # a key far shorter than HS256's hash is a guess away
    ("JWT_SECRET_KEY", "x" * 31),
])
def test_a_value_out_of_its_range_stops_the_start(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable}: "):
        Config()


def test_the_job_lease_must_outlast_one_push_send(monkeypatch):
    """A lease shorter than a send lets a second worker take over a push still on the wire and send it again."""
    monkeypatch.setenv("JOB_LEASE_S", "12")
    with pytest.raises(ValueError, match=r"^JOB_LEASE_S: 12 s is shorter than one push send .* \(15 s\)"):
        Config()
    monkeypatch.setenv("FCM_HTTP_TIMEOUT_S", "8")
    assert Config().JOB_LEASE_S == 12


def test_the_defaults_are_valid():
    config = Config()
    assert (config.WORKER_BATCH, config.JOB_LEASE_S, config.FCM_HTTP_TIMEOUT_S) == (20, 60, 10)
    assert config.ROUTE_NIGHT_HOURS == (20, 6) and config.LOG_JSON is True


def test_night_hours_are_read_as_two_hours(monkeypatch):
    monkeypatch.setenv("ROUTE_NIGHT_HOURS", " 21-5 ")
    assert Config().ROUTE_NIGHT_HOURS == (21, 5)


@pytest.mark.parametrize("redis_url, channel", [
    ("redis://127.0.0.1:6379/0", "safety-socketio"),  # the name before: a rolling deploy's processes still agree
    ("redis://127.0.0.1:6379", "safety-socketio"),
    ("redis://redis:6379/1", "safety-socketio-db1"),
    ("rediss://user:secret@redis.internal:6380/15", "safety-socketio-db15"),
    ("redis://redis:6379?db=3", "safety-socketio-db3"),
    ("unix:///run/redis.sock?db=2", "safety-socketio-db2"),
])
def test_the_default_socketio_channel_is_per_redis_database(monkeypatch, redis_url, channel):
    """Redis pub/sub ignores the database number: staging on /1 and production on /0 of one Redis shared the
    channel "safety-socketio", and each one's operators received the other's events and callers' positions."""
    monkeypatch.delenv("SOCKETIO_CHANNEL", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert Config().SOCKETIO_CHANNEL == channel


def test_a_socketio_channel_that_is_set_is_kept(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/1")
    monkeypatch.setenv("SOCKETIO_CHANNEL", "staging")
    assert Config().SOCKETIO_CHANNEL == "staging"


def test_an_unreadable_redis_url_names_its_variable(monkeypatch):
    monkeypatch.delenv("SOCKETIO_CHANNEL", raising=False)
    monkeypatch.setenv("REDIS_URL", "http://redis:6379/1")
    with pytest.raises(ValueError, match="^REDIS_URL: 'http://redis:6379/1' is not a Redis URL"):
        Config()


@pytest.mark.parametrize("value", ["", "   "])
def test_a_signing_key_set_but_empty_reads_as_unset(monkeypatch, value):
    """Before, `SECRET_KEY=` in an environment file signed with an empty key, on which every sign-in was a 500."""
    from safety_api.config import DEVELOPMENT_SECRET
    monkeypatch.setenv("SECRET_KEY", value)
    monkeypatch.setenv("JWT_SECRET_KEY", value)
    config = Config()
    assert config.SECRET_KEY == config.JWT_SECRET_KEY == DEVELOPMENT_SECRET


def test_a_serving_process_refuses_the_development_key_unless_allowed(monkeypatch):
    """gunicorn.conf.py runs this check as the api process starts; the command line never does."""
    from flask import Flask

    from safety_api.security import refuse_to_serve_with_the_development_key
    app = Flask("safety_api")
    app.config.from_object(Config())
    with pytest.raises(RuntimeError, match="SECRET_KEY and JWT_SECRET_KEY are not set"):
        refuse_to_serve_with_the_development_key(app)
    monkeypatch.setenv("JWT_SECRET_KEY", "k" * 40)  # one key of its own still leaves SECRET_KEY the printed one
    app.config.from_object(Config())
    with pytest.raises(RuntimeError):
        refuse_to_serve_with_the_development_key(app)
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    app.config.from_object(Config())
    refuse_to_serve_with_the_development_key(app)
    monkeypatch.delenv("SECRET_KEY")
    monkeypatch.delenv("JWT_SECRET_KEY")
    monkeypatch.setenv("ALLOW_DEVELOPMENT_KEY", "1")
    app.config.from_object(Config())
    refuse_to_serve_with_the_development_key(app)
