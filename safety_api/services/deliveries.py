"""Durable push delivery: one row per device per reason, written with the change that owes it."""
import dataclasses
import threading

from sqlalchemy import bindparam, literal, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import DateTime

from notifications.messages import INFO_TTL_S
from notifications.push import (
    PushMessage,
    PushSender,
    backoff_seconds,
    init_firebase_app,
    service_account_project,
)
from safety_api.clock import utcnow
from safety_api.models import Delivery, User
from safety_api.models.accounts import on_shift
from safety_api.services import audiences, devices, jobs

# A delivery's own retry budget, counted in sends begun (`deliveries.attempts`): this is what decides when a push
# is given up. Its job's limit is only a backstop, set well above, for a job that keeps failing before it sends
# (a claim or a run that never reaches `deliver` costs the delivery nothing).
MAX_ATTEMPTS = 12
JOB_MAX_ATTEMPTS = 2 * MAX_ATTEMPTS
# The longest an FCM Retry-After may hold a push back; a larger (or infinite) one is read as this.
MAX_RETRY_AFTER_S = 3600.0
SETTLED = ("delivered", "dead", "failed", "withdrawn")
# The project a stand-in FCM server (FCM_ENDPOINT, for tests and demos) is addressed with when none is set.
STAND_IN_PROJECT = "stand-in"
_senders: dict = {}
_senders_lock = threading.Lock()


def plan(session, *, subject: str, reason: str, messages_by_user: dict, planned_at=None) -> int:
    """Add a delivery row and a job for every message; the caller commits them with its change. `planned_at`:
    when the change that owes the push happened, if earlier than now (a push.user job expanded later)."""
    return plan_many(session, subject=subject, messages={reason: messages_by_user}, planned_at=planned_at)


# Deliveries, a `push.deliver` job for each, and whatever other jobs the change owes: one statement whatever
# the number of recipients (a district's operators and a caller's guardians may be a dozen devices), because
# it runs inside the SOS request, before the operators are told.
_PLAN = text("""
    WITH planned AS (
        INSERT INTO deliveries (subject, reason, recipient_id, token, message, created_at)
        SELECT :subject, reason, recipient_id, token, message, coalesce(:planned_at, now())
        FROM jsonb_to_recordset(:deliveries) AS d(reason text, recipient_id uuid, token text, message jsonb)
        RETURNING id)
    INSERT INTO jobs (kind, payload, run_at, dedupe_key, max_attempts)
    SELECT 'push.deliver', jsonb_build_object('delivery_id', id), now(), 'push:' || id, :deliver_attempts
    FROM planned
    UNION ALL
    SELECT kind, payload, coalesce(run_at, now() + make_interval(secs => coalesce(delay_s, 0))), dedupe_key,
           coalesce(max_attempts, :job_attempts)
    FROM jsonb_to_recordset(:jobs) AS j(kind text, payload jsonb, run_at timestamptz, delay_s float8,
                                        dedupe_key text, max_attempts int)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING kind
""").bindparams(bindparam("deliveries", type_=JSONB), bindparam("jobs", type_=JSONB),
                bindparam("planned_at", type_=DateTime(timezone=True)))


def plan_many(session, *, subject: str, messages: dict, with_jobs: list = (), planned_at=None) -> int:
    """`plan` for several reasons at once ({reason: {user_id: [PushMessage]}}), plus any other jobs the caller
    owes in the same transaction (`with_jobs`: dicts of jobs.enqueue's arguments), in one statement."""
    rows = [{"reason": reason, "recipient_id": str(user_id), "token": message.token,
             "message": dataclasses.asdict(message)}
            for reason, to_users in messages.items() for user_id, user_messages in to_users.items()
            for message in user_messages]
    if not rows and not with_jobs:
        return 0
    other_jobs = [{**job, "run_at": job["run_at"].isoformat() if job.get("run_at") else None} for job in with_jobs]
    kinds = session.scalars(_PLAN, {"subject": subject, "deliveries": rows, "jobs": other_jobs,
                                    "planned_at": planned_at,
                                    "deliver_attempts": JOB_MAX_ATTEMPTS,
                                    "job_attempts": jobs.DEFAULT_MAX_ATTEMPTS}).all()
    return kinds.count("push.deliver")


def tokens_by_user(session, user_ids) -> dict:
    """{user_id: [(token, platform)]} for these users' registered devices."""
    return by_user(devices.tokens_of(session, user_ids))


def by_user(devices_rows) -> dict:
    """(user_id, token, platform) rows as {user_id: [(token, platform)]}."""
    grouped: dict = {}
    for user_id, token, platform in devices_rows:
        grouped.setdefault(user_id, []).append((token, platform))
    return grouped


class PushSettingsError(ValueError):
    """The FCM settings cannot make a sender that delivers anything; the message names the variables."""


def push_project(config: dict) -> str:
    """The Firebase project the pushes go to, once the settings are checked to make a sender that can deliver.

    Each refusal stands for every push failing later, one by one: no credentials sends anonymously (FCM answers
    401), a key file that is missing raises at every send, and a project that is not the key's own is refused
    (403) and read as a dead token. A stand-in server (FCM_ENDPOINT, tests and demos) needs no credentials."""
    path, project = config.get("FCM_CREDENTIALS"), config.get("FCM_PROJECT_ID")
    if not path:
        if not config.get("FCM_ENDPOINT"):
            raise PushSettingsError(
                "no FCM credentials: set GOOGLE_APPLICATION_CREDENTIALS to the Firebase project's service-account "
                "JSON key (FCM_ENDPOINT, a stand-in FCM server, is for tests and demos); without them FCM refuses "
                "every push")
        return project or STAND_IN_PROJECT
    try:
        own = service_account_project(path)
    except (OSError, ValueError) as exc:
        raise PushSettingsError(f"GOOGLE_APPLICATION_CREDENTIALS={path} is not a readable service-account JSON "
                                f"key: {exc}") from exc
    if project and own and project != own:
        raise PushSettingsError(
            f"FCM_PROJECT_ID={project} is not the project of the service account in GOOGLE_APPLICATION_CREDENTIALS "
            f"({own}): FCM would refuse every push. Unset FCM_PROJECT_ID to send to {own}")
    if not (project or own):
        raise PushSettingsError(f"GOOGLE_APPLICATION_CREDENTIALS={path} names no project_id: set FCM_PROJECT_ID")
    return project or own


def sender_for(config: dict) -> PushSender:
    """One PushSender per process and configuration (firebase-admin App objects are heavy); PushSettingsError if
    the settings cannot make one that delivers (push_project)."""
    key = (config.get("FCM_PROJECT_ID"), config.get("FCM_CREDENTIALS"), config.get("FCM_ENDPOINT"),
           config.get("FCM_HTTP_TIMEOUT_S", 10.0))
    with _senders_lock:
        if key not in _senders:
            app = init_firebase_app(credentials_path=key[1], project_id=push_project(config), endpoint=key[2],
                                    timeout_s=key[3], name=f"push-{len(_senders)}")
            _senders[key] = PushSender(app)
        return _senders[key]


# What a person receives only as staff on shift: incident alerts, escort offers (by the deliveries' reasons).
STAFF_PUSHES = ("staff.", "escort.offered")


def withdraw_staff_pushes(session, *, recipient_id) -> int:
    """Withdraw what was planned for a person as staff on shift and is not sent yet, because they left the shift
    or the district (an operator moved away must not receive the old district's alarms; parties' notices of
    an escort they still walk stay); in the caller's transaction. The worker then finds each settled."""
    staff_only = or_(*(Delivery.reason.startswith(prefix, autoescape=True) for prefix in STAFF_PUSHES))
    return session.execute(update(Delivery).where(Delivery.recipient_id == recipient_id, Delivery.status == "pending",
                                                  staff_only)
                           .values(status="withdrawn", updated_at=utcnow())).rowcount


def deliver(session, *, delivery_id: int, sender: PushSender):
    """Send one pending delivery and record its outcome; a transient failure asks for a retry.

    The outcome is left in the session for the worker to commit with the job's own state, and only if the job
    is still this worker's: one whose send outlasted its lease must not undo what the worker that took the job
    over recorded."""
    from safety_api.worker import RetryLater
    delivery = session.scalar(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
    if delivery is None or delivery.status in SETTLED:
        return  # already settled by an earlier run
    if not (devices.belongs_to(session, token=delivery.token, user_id=delivery.recipient_id)
            and audiences.still_entitled(session, delivery)):
        # Signed out, handed on to someone else or reported dead since the push was planned, or the recipient
        # no longer stands where the push was planned for (off shift, moved, suspended, no longer a guardian):
        # what the push says (an alert, a ward's position) is not for the phone's holder any more.
        if delivery.status == "pending":
            delivery.status, delivery.updated_at = "withdrawn", utcnow()  # nothing was sent
        else:  # 'sending': a worker died mid-send, so it may have gone; the receipt must not say it did not
            _give_up(delivery, "its phone left its recipient (or the recipient lost the right to it) after a send "
                                "that never reported back")
        return
    if delivery.attempts >= MAX_ATTEMPTS:
        # Every try is spent and the last never reported back: its worker died mid-send (the push may have gone).
        _give_up(delivery, f"no outcome from the last of {MAX_ATTEMPTS} attempts (its worker stopped mid-send)")
        return
    if delivery.status == "pending" and _superseded(session, delivery):
        # The phone keeps one notification per collapse key: sent now, this older news (a retry that waited)
        # would replace the newer one already there or on its way (a "confirmed" over a "cancelled").
        delivery.status, delivery.updated_at = "withdrawn", utcnow()
        delivery.last_error = "superseded by a newer push about the same subject to the same phone"
        return
    message = PushMessage(**delivery.message)
    # A push lives for its time to live from when it was planned, not from each retry: an alert that waited
    # out an FCM outage must not pop up as "new" long after, and FCM (and APNs) drop it when the rest runs out.
    left_s = int(message.ttl_s - (utcnow() - delivery.created_at).total_seconds())
    if left_s < 1:
        _give_up(delivery, f"{'not sent' if delivery.status == 'pending' else 'no outcome of the send'} within "
                           f"its time to live ({message.ttl_s} s); the app shows what it said")
        return
    delivery.status, delivery.attempts, delivery.updated_at = "sending", delivery.attempts + 1, utcnow()
    session.commit()  # a crash after this line is visible as 'sending' with its attempt count
    outcome = sender.send([dataclasses.replace(message, ttl_s=left_s)])[0]
    delivery.provider_id, delivery.last_error, delivery.updated_at = outcome.message_id, outcome.error, utcnow()
    if outcome.status == "retry" and delivery.attempts >= MAX_ATTEMPTS:
        outcome = dataclasses.replace(outcome, status="failed")
    if outcome.status == "retry":
        delivery.status = "pending"
        asked = min(outcome.retry_after_s or 0, MAX_RETRY_AFTER_S)  # push.py passes only finite, positive ones
        raise RetryLater(outcome.error or "transient push failure",
                         max(backoff_seconds(delivery.attempts - 1), asked))
    delivery.status = outcome.status
    if outcome.status == "dead":
        devices.forget_tokens(session, [delivery.token])


def _superseded(session, delivery) -> bool:
    """Newer is by when the news happened (`created_at`, the planning time), then by id: a push.user job
    expanded late by a busy worker must not pass for newer than what was planned after it."""
    collapse = delivery.message.get("collapse_key")
    newer = tuple_(Delivery.created_at, Delivery.id) > tuple_(literal(delivery.created_at), literal(delivery.id))
    return collapse is not None and session.scalar(
        select(Delivery.id).where(Delivery.subject == delivery.subject, Delivery.token == delivery.token, newer,
                                  Delivery.status.in_(("pending", "sending", "delivered")),
                                  Delivery.message["collapse_key"].astext == collapse).limit(1)) is not None


def give_up(session, *, delivery_id: int, error: str):
    """Record a delivery failed because its job ended failed (the worker calls this in that transaction), so
    the receipts never show a push as still on its way that nothing will send."""
    session.flush()  # an outcome the job left in the session must not land after this and undo it
    delivery = session.scalar(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
    if delivery is not None and delivery.status in ("pending", "sending"):
        _give_up(delivery, f"its job failed: {error}")


def _give_up(delivery, reason: str):
    delivery.status, delivery.last_error, delivery.updated_at = "failed", reason[:2000], utcnow()


def receipts(session, *, subject: str) -> list:
    """Every delivery of a subject with its state, for the timeline."""
    return list(session.execute(text(
        "SELECT reason, recipient_id, status, attempts, updated_at FROM deliveries WHERE subject = :s ORDER BY id"),
        {"s": subject}))


def expand_user_push(session, *, user_ids, title: str, body: str, data: dict, urgency: str = "high",
                     on_shift_in: str | None = None, planned_at=None, ttl_s: int = INFO_TTL_S) -> int:
    """Turn a push addressed to people into one delivery per device they have now (the `push.user` job).
    `on_shift_in`: addressed to them as that district's staff on shift, so only those still are (as they are
    now, not when the push was planned). `ttl_s`: how long it lives from `planned_at` (an escort's news of its
    meeting only until the meeting)."""
    if on_shift_in is not None:
        user_ids = list(session.scalars(select(User.id).where(User.id.in_(user_ids), User.district_code == on_shift_in,
                                                              on_shift())))
    subject = f"{data.get('type', 'notice')}:{data.get('id', '-')}"
    collapse = f"{data.get('type', 'notice')}-{data.get('id', '-')}"
    by_user = {user_id: [PushMessage(token=token, platform=platform, data={k: str(v) for k, v in data.items()},
                                     title=title, body=body, urgency=urgency, collapse_key=collapse,
                                     ttl_s=ttl_s)
                         for token, platform in tokens]
               for user_id, tokens in tokens_by_user(session, user_ids).items()}
    return plan(session, subject=subject, reason=f"{data.get('type', 'notice')}.{data.get('event', 'update')}",
                messages_by_user=by_user, planned_at=planned_at)
