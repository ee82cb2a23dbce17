"""Durable push delivery: one row per device per reason, written with the change that owes it."""
import dataclasses
import threading

from sqlalchemy import insert, select, text

from notifications.push import (
    PushMessage,
    PushSender,
    backoff_seconds,
    init_firebase_app,
)
from safety_api.clock import utcnow
from safety_api.models import Delivery
from safety_api.services import devices, jobs

MAX_ATTEMPTS = 12
_senders: dict = {}
_senders_lock = threading.Lock()


def plan(session, *, subject: str, reason: str, messages_by_user: dict) -> int:
    """Add a delivery row and a job for every message; the caller commits them with its change.

    Two statements whatever the number of recipients (a district's operators and a caller's guardians may
    be a dozen devices): this runs inside the SOS request, before the operators are told."""
    rows = [{"subject": subject, "reason": reason, "recipient_id": user_id, "token": message.token,
             "message": dataclasses.asdict(message)}
            for user_id, messages in messages_by_user.items() for message in messages]
    if not rows:
        return 0
    ids = session.scalars(insert(Delivery).returning(Delivery.id), rows).all()
    jobs.enqueue_many(session, [{"kind": "push.deliver", "payload": {"delivery_id": i}, "dedupe_key": f"push:{i}",
                                 "max_attempts": MAX_ATTEMPTS + 1} for i in ids])
    return len(ids)


def tokens_by_user(session, user_ids) -> dict:
    """{user_id: [(token, platform)]} for these users' registered devices."""
    grouped: dict = {}
    for user_id, token, platform in devices.tokens_of(session, user_ids):
        grouped.setdefault(user_id, []).append((token, platform))
    return grouped


def sender_for(config: dict) -> PushSender:
    """One PushSender per process and configuration (firebase-admin App objects are heavy)."""
    key = (config["FCM_PROJECT_ID"], config.get("FCM_CREDENTIALS"), config.get("FCM_ENDPOINT"))
    with _senders_lock:
        if key not in _senders:
            app = init_firebase_app(credentials_path=key[1], project_id=key[0], endpoint=key[2],
                                    name=f"push-{len(_senders)}")
            _senders[key] = PushSender(app)
        return _senders[key]


def deliver(session, *, delivery_id: int, sender: PushSender):
    """Send one pending delivery and record its outcome; a transient failure asks for a retry."""
    from safety_api.worker import RetryLater
    delivery = session.scalar(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
    if delivery is None or delivery.status in ("delivered", "dead", "failed"):
        return  # already settled by an earlier run
    delivery.status, delivery.attempts, delivery.updated_at = "sending", delivery.attempts + 1, utcnow()
    session.commit()  # a crash after this line is visible as 'sending' with its attempt count
    outcome = sender.send([PushMessage(**delivery.message)])[0]
    delivery.provider_id, delivery.last_error, delivery.updated_at = outcome.message_id, outcome.error, utcnow()
    if outcome.status == "retry" and delivery.attempts >= MAX_ATTEMPTS:
        outcome = dataclasses.replace(outcome, status="failed")
    if outcome.status == "retry":
        delivery.status = "pending"
        session.commit()
        delay = max(backoff_seconds(delivery.attempts - 1), outcome.retry_after_s or 0)
        raise RetryLater(outcome.error or "transient push failure", delay)
    delivery.status = outcome.status
    if outcome.status == "dead":
        devices.forget_tokens(session, [delivery.token])


def receipts(session, *, subject: str) -> list:
    """Every delivery of a subject with its state, for the timeline."""
    return list(session.execute(text(
        "SELECT reason, recipient_id, status, attempts, updated_at FROM deliveries WHERE subject = :s ORDER BY id"),
        {"s": subject}))


def expand_user_push(session, *, user_ids, title: str, body: str, data: dict, urgency: str = "high") -> int:
    """Turn a push addressed to people into one delivery per device they have now (the `push.user` job)."""
    subject = f"{data.get('type', 'notice')}:{data.get('id', '-')}"
    collapse = f"{data.get('type', 'notice')}-{data.get('id', '-')}"
    by_user = {user_id: [PushMessage(token=token, platform=platform, data={k: str(v) for k, v in data.items()},
                                     title=title, body=body, urgency=urgency, collapse_key=collapse)
                         for token, platform in tokens]
               for user_id, tokens in tokens_by_user(session, user_ids).items()}
    return plan(session, subject=subject, reason=f"{data.get('type', 'notice')}.{data.get('event', 'update')}",
                messages_by_user=by_user)
