"""A walk and the SOS incidents it escalated to: which they are, and the walk watched again once its SOS is
over as the walker sees it.

An SOS closes for the walker when they enter a PIN (the cancel PIN, or the duress PIN, which must look exactly
the same to the phone, walk included) or when an operator resolves it. The walk is not over for all that: the
walker is still on their way home, so the walk becomes `active` again, its monitors start afresh from that
moment, and an unanswered prompt can raise a new SOS (with a key of its own: `walks.escalation_key`). Until
then an escalated walk had no monitor at all: no prompt, no arrival, and a check-in answered 409.

(Kept apart from `walks` so that `incidents` can call it: `walks` imports `incidents`.)
"""
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from geo import track
from safety_api.models import Incident, User, Walk
from safety_api.realtime import events
from safety_api.services import walk_monitor as monitor
from safety_api.services.walk_monitor import Notice, lock_walk, walk_rooms


def incidents_of(session, walk_id) -> list:
    """The SOS incidents a walk escalated to, newest first (by the index on incidents.walk_id)."""
    return list(session.scalars(select(Incident).where(Incident.walk_id == walk_id)
                                .order_by(Incident.created_at.desc(), Incident.id)))


def lock_walk_of(session, incident) -> Walk | None:
    """The walk an incident was raised by, locked. Take it *before* the incident's own lock: the fix writer holds
    the walk, then updates its incident's last_fix, and the opposite order would deadlock with it."""
    if incident is None or incident.walk_id is None:
        return None
    return lock_walk(session, incident.walk_id, light=True)


def resume(session, walk: Walk | None, *, now: datetime) -> list:
    """The walk's SOS has just closed as the walker sees it (its caller_closed_at is set, in this transaction):
    watch the walk again. Whichever PIN closed it, what follows is the same. Returns the socket notices to send
    once the caller's transaction has committed."""
    if walk is None or walk.status != "escalated" or _still_open_for_the_walker(session, walk):
        return []
    try:
        with session.begin_nested():  # a walk of theirs started meanwhile holds the one active place
            walk.status = "active"
            session.flush()
    except IntegrityError:
        return monitor.end(session, walk, "finished", now=now)
    config = monitor.monitor_config(walk)
    # The clocks restart now, as after a check-in that answered every kind: the SOS was the answer. The prompts
    # that led to it were settled (escalated) then.
    state = track.acknowledge(track.MonitorState.from_dict(walk.monitor_state), now=monitor.seconds(now),
                              config=config)
    walk.monitor_state = monitor.state_dict(state)
    monitor.arm(session, walk, monitor.moment(monitor.next_due(
        state, expected_arrival_s=monitor.seconds(walk.expected_arrival), config=config,
        now_s=monitor.seconds(now))))
    walker = session.get(User, walk.walker_id)
    payload = {"walk_id": str(walk.id), "alert": "resumed", "at": now.isoformat(),
               "message": f"{walker.name}님의 SOS가 종료되어 안심귀가 모니터링을 다시 시작합니다."}
    return [Notice(events.WALK_ALERT, payload, walk_rooms(walk))]


def _still_open_for_the_walker(session, walk: Walk) -> bool:
    return bool(session.scalar(select(exists().where(Incident.walk_id == walk.id,
                                                     Incident.caller_closed_at.is_(None)))))
