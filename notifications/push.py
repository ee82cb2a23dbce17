"""FCM push through firebase-admin: one HTTP request per token, each outcome classified."""
import logging
import math
import random
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

import firebase_admin
from firebase_admin import credentials, exceptions, messaging
from google.auth.credentials import AnonymousCredentials
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

PLATFORMS = frozenset({"android", "ios", "web"})
URGENCIES = frozenset({"critical", "high", "normal"})
FCM_ORIGIN = "https://fcm.googleapis.com"
# send_each opens one thread per message (up to 500); 100 matches the HTTP pool we mount.
CHUNK = 100
_RETRYABLE = (exceptions.UnavailableError, exceptions.InternalError,
              exceptions.DeadlineExceededError, exceptions.ResourceExhaustedError)
# Only what FCM says of the token itself (unregistered, or not a token). SENDER_ID_MISMATCH says the sender is
# not the token's project: the deployment's key of another project (staging's in production) gets it for every
# token, and deleting them all would leave operators and guardians without alarms once the key is put right.
_DEAD = (messaging.UnregisteredError,)
_RESERVED_KEYS = frozenset({"from", "message_type", "notification"})
_token_warning_lock = threading.Lock()


@dataclass(frozen=True)
class PushMessage:
    """One push to one device; ``data`` values must be strings (FCM data is str -> str)."""

    token: str
    platform: str
    data: dict = field(default_factory=dict)
    title: str = ""
    body: str = ""
    urgency: str = "normal"
    collapse_key: str | None = None
    ttl_s: int = 3600

    def __post_init__(self):
        if not self.token or not isinstance(self.token, str):
            raise ValueError("token must be a non-empty string")
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {sorted(PLATFORMS)}")
        if self.urgency not in URGENCIES:
            raise ValueError(f"urgency must be one of {sorted(URGENCIES)}")
        _check_data(self.data)
        if not 0 <= self.ttl_s <= 28 * 86400:
            raise ValueError("ttl_s must be between 0 and 28 days")


def _check_data(data):
    """Reject what FCM would refuse later: non-string data and its reserved keys."""
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError("data keys and values must be strings")
    reserved = [k for k in data if k in _RESERVED_KEYS or k.startswith(("google", "gcm"))]
    if reserved:
        raise ValueError(f"data keys reserved by FCM: {reserved}")


@dataclass(frozen=True)
class PushOutcome:
    """What became of one PushMessage; ``dead`` means the caller must delete the token."""

    token: str
    status: str
    message_id: str | None = None
    error: str | None = None
    retry_after_s: float | None = None


def service_account_project(credentials_path):
    """The project of a service-account JSON key file (None if it names none).

    Raises OSError if the file cannot be read, ValueError if it is not a service-account key."""
    return credentials.Certificate(credentials_path).project_id


def init_firebase_app(*, credentials_path, project_id, endpoint=None, name="notifications",
                      timeout_s=10.0, http_retries=0):
    """Create a firebase-admin App for FCM, optionally pointed at a stand-in server.

    ``project_id`` None sends to the project of the credentials (firebase-admin reads it from the key)."""
    cred = (credentials.Certificate(credentials_path) if credentials_path
            else AnonymousCredentials())  # local and demo runs, where nothing checks auth
    app = firebase_admin.initialize_app(
        cred, {"projectId": project_id, "httpTimeout": timeout_s}, name=name)
    configure_transport(app, endpoint=endpoint, http_retries=http_retries)
    return app


def configure_transport(app, *, endpoint=None, http_retries=0):
    """Point the App's FCM service at ``endpoint`` and bound firebase-admin's own retries.

    firebase-admin 7.7 has no public option for either, so this is the one place that touches
    private names (``_get_messaging_service``, ``_fcm_url``, ``_client``). Its default retries
    HTTP 500/503 four times with backoff inside one send; our worker owns the retry schedule
    (backoff_seconds), so by default a 5xx comes straight back as ``retry``.
    """
    service = messaging._get_messaging_service(app)  # pylint: disable=protected-access
    if endpoint:
        service._fcm_url = service._fcm_url.replace(FCM_ORIGIN, endpoint.rstrip("/"), 1)
    parts = urlsplit(service._fcm_url)
    # No read retries: a POST whose answer was lost may have been delivered already. read=False
    # also lets a read timeout surface as DeadlineExceededError instead of UnavailableError.
    retry = Retry(total=None, connect=1, read=False, status=http_retries, other=0,
                  status_forcelist=(500, 503), allowed_methods=None, backoff_factor=0.5,
                  raise_on_status=False)
    adapter = HTTPAdapter(pool_connections=CHUNK, pool_maxsize=CHUNK, max_retries=retry)
    service._client.session.mount(f"{parts.scheme}://{parts.netloc}", adapter)


def build_fcm_message(msg, *, now=None):
    """Build the FCM v1 data message for ``msg``, configured for its platform."""
    now = time.time() if now is None else now
    data = {**msg.data, "title": msg.title, "body": msg.body, "urgency": msg.urgency}
    parts = {"data": data}
    if msg.platform == "android":
        parts["android"] = _android_config(msg)
    elif msg.platform == "ios":
        parts["apns"] = _apns_config(msg, now)
    else:
        parts["webpush"] = _webpush_config(msg)
    return _message_to_token(msg.token, parts)


def _message_to_token(token, parts):
    # Phones register FCM registration tokens (getToken()) today; firebase-admin 7.7 deprecates
    # Message.token in favour of Message.fid (installation ids), which our apps do not report.
    # Silence exactly that warning, so any other deprecation still fails the tests.
    # catch_warnings swaps process-wide state, hence the lock.
    with _token_warning_lock, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Message\.token is deprecated",
                                category=DeprecationWarning)
        return messaging.Message(token=token, **parts)


def _android_config(msg):
    # Data-only with high priority wakes the app, which raises its own full-screen alert.
    priority = "normal" if msg.urgency == "normal" else "high"
    return messaging.AndroidConfig(priority=priority, ttl=timedelta(seconds=msg.ttl_s),
                                   collapse_key=msg.collapse_key)


def _apns_config(msg, now):
    # iOS drops data-only pushes in the background, so iOS gets a visible aps alert.
    headers = {"apns-push-type": "alert",
               "apns-priority": "5" if msg.urgency == "normal" else "10",
               "apns-expiration": str(int(now) + msg.ttl_s)}
    if msg.collapse_key:
        headers["apns-collapse-id"] = msg.collapse_key
    alert = messaging.ApsAlert(title=msg.title, body=msg.body)
    if msg.urgency == "critical":
        # Plays at full volume through silent mode; needs Apple's critical-alert entitlement.
        aps = messaging.Aps(alert=alert, custom_data={"interruption-level": "critical"},
                            sound=messaging.CriticalSound("default", critical=True, volume=1.0))
    elif msg.urgency == "high":
        aps = messaging.Aps(alert=alert, sound="default",
                            custom_data={"interruption-level": "time-sensitive"})
    else:
        aps = messaging.Aps(alert=alert, sound="default")
    return messaging.APNSConfig(headers=headers, payload=messaging.APNSPayload(aps=aps))


def _webpush_config(msg):
    urgency = "normal" if msg.urgency == "normal" else "high"
    return messaging.WebpushConfig(headers={"Urgency": urgency, "TTL": str(msg.ttl_s)})


class PushSender:
    """Send PushMessages through one firebase-admin App; failures never spread."""

    def __init__(self, app, *, chunk=CHUNK):
        self.app = app
        self.chunk = chunk

    def send(self, messages):
        """Send each message in its own request; return one PushOutcome per message, in order."""
        outcomes = [None] * len(messages)
        ready = []
        for i, msg in enumerate(messages):
            fcm_message, error = _encode(msg)
            if error:
                outcomes[i] = PushOutcome(msg.token, "failed", error=error)
            else:
                ready.append((i, fcm_message))
        for start in range(0, len(ready), self.chunk):
            self._send_chunk(messages, ready[start:start + self.chunk], outcomes)
        return outcomes

    def _send_chunk(self, messages, batch, outcomes):
        try:
            result = messaging.send_each([m for _, m in batch], app=self.app)
        except exceptions.FirebaseError as exc:
            # An error escaping one request thread (an OAuth token refresh that failed) makes
            # send_each fail the whole batch; nothing was classified, so all of it is retried.
            log.warning("push batch failed: %s", exc)
            for i, _ in batch:
                outcomes[i] = PushOutcome(messages[i].token, "retry", error=_describe(exc))
            return
        for (i, _), response in zip(batch, result.responses):
            outcomes[i] = outcome_of(messages[i].token, response)


def _encode(msg):
    """Return (FCM message, None), or (None, error) if firebase-admin rejects its fields."""
    try:
        fcm_message = build_fcm_message(msg)
        str(fcm_message)  # encodes and validates now: send_each would fail the whole batch
    except ValueError as exc:
        log.error("push to %s… not encodable: %s", msg.token[:12], exc)
        return None, f"ValueError: {exc}"
    return fcm_message, None


def outcome_of(token, response):
    """Turn one firebase-admin SendResponse into a PushOutcome."""
    if response.success:
        return PushOutcome(token, "delivered", message_id=response.message_id)
    exc = response.exception
    status = classify(exc)
    log.log(logging.INFO if status == "dead" else logging.WARNING,
            "push to %s… %s: %s", token[:12], status, _describe(exc))
    return PushOutcome(token, status, error=_describe(exc), retry_after_s=_retry_after(exc))


def classify(exc):
    """Return "dead", "retry" or "failed" for a firebase-admin send error."""
    if isinstance(exc, _DEAD) or (isinstance(exc, exceptions.InvalidArgumentError)
                                  and _about_token(exc)):
        return "dead"
    if isinstance(exc, messaging.SenderIdMismatchError):
        log.error("FCM refused a push with SENDER_ID_MISMATCH: the service account's project "
                  "(GOOGLE_APPLICATION_CREDENTIALS, FCM_PROJECT_ID) is not the apps' Firebase project")
        return "failed"
    if isinstance(exc, _RETRYABLE):  # 5xx, quota (429), timeouts, refused connections
        return "retry"
    if isinstance(exc, exceptions.UnknownError) and _transient(exc):
        return "retry"
    return "failed"


def _transient(exc):
    """firebase-admin raises an HTTP status it does not map (a gateway's 502 or 504, with an HTML page) or a
    transport error without an answer as UnknownError; neither says anything about the message."""
    response = getattr(exc, "http_response", None)
    return response is None or response.status_code >= 500


def _about_token(exc):
    """Tell whether an INVALID_ARGUMENT names the registration token rather than the payload."""
    if "registration token" in str(exc).lower():
        return True
    body = _error_json(exc)
    for detail in body.get("error", {}).get("details", []):
        for violation in detail.get("fieldViolations", []):
            if violation.get("field") in ("message.token", "message.fid"):
                return True
    return False


def _error_json(exc):
    response = getattr(exc, "http_response", None)
    try:
        body = response.json() if response is not None else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(exc):
    response = getattr(exc, "http_response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        seconds = float(value) if value is not None else None
    except ValueError:  # an HTTP date; the worker's own backoff applies instead
        return None
    # float() also reads "inf", "nan" and "-5": none is a delay to wait, so the backoff applies to them too.
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _describe(exc):
    return f"{type(exc).__name__}: {exc}"


def backoff_seconds(attempt, *, base_s=2.0, cap_s=600.0, rng=random.random):
    """Return the delay before retry ``attempt`` (0-based): exponential, capped, half jittered."""
    ceiling = min(cap_s, base_s * 2 ** min(max(attempt, 0), 32))
    return ceiling / 2 + rng() * ceiling / 2
