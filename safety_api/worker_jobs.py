"""The registry of job kinds the worker knows, each pointing at a service function."""
from datetime import datetime

from notifications.messages import INFO_TTL_S
from safety_api.services import deliveries, escort_live, incidents, retention, walks


def _noop(session, payload, worker):
    """A job that only proves the pipeline (used by health checks and tests)."""


def _push(session, payload, worker):
    deliveries.deliver(session, delivery_id=payload["delivery_id"], sender=deliveries.sender_for(worker.app.config))


def _push_failed(session, payload, error):
    if "delivery_id" in payload:
        deliveries.give_up(session, delivery_id=payload["delivery_id"], error=error)


def _push_user(session, payload, worker):
    planned = payload.get("planned_at")  # absent from jobs queued before it was written: they count from now
    deliveries.expand_user_push(session, user_ids=payload["user_ids"], title=payload["title"], body=payload["body"],
                                data=payload.get("data", {}), on_shift_in=payload.get("on_shift_in"),
                                planned_at=datetime.fromisoformat(planned) if planned else None,
                                ttl_s=payload.get("ttl_s", INFO_TTL_S))


def _escalate(session, payload, worker):
    reason = payload.get("reason", incidents.NOT_TAKEN_IN_TIME)  # the timer of a district with nobody on shift
    incidents.escalate(session, incident_id=payload["incident_id"],
                       reason=reason if reason == incidents.NOBODY_ON_SHIFT else incidents.NOT_TAKEN_IN_TIME)


HANDLERS = {
    "noop": _noop,
    "push.deliver": _push,
    "push.user": _push_user,
    "incident.escalate": _escalate,
    "escort.reminder": escort_live.reminder_job,
    "escort.unconfirmed": escort_live.unconfirmed_job,
    "escort.late": escort_live.late_job,
    "escort.overrun": escort_live.overrun_job,
    "walk.timers": walks.timers_job,
    "walk.checkin_expired": walks.checkin_job,
    "fixes.purge": retention.purge_job,
}

# What a kind owes when its job ends failed, run in the transaction that records it (Worker._retry_or_fail).
ON_FAILED = {
    "push.deliver": _push_failed,
}
