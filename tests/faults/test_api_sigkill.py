"""The api SIGKILLed again and again while phones raise SOS with retries and Idempotency-Keys: each SOS once."""
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from tests.factories import token_for
from tests.faults.support import (
    InFlight,
    create_citizens,
    create_operators,
    env_number,
    record_figures,
    sos_until_answered,
    wait_for,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

SOS_COUNT = int(env_number("FAULT_SOS", 300))  # 1,000 in `make faults`
SPREAD_S = env_number("FAULT_SOS_SPREAD_S", 20)  # phones press the button over this window
KILL_EVERY_S = env_number("FAULT_KILL_EVERY_S", 3)  # seconds of service between two kills
PHONES_AT_ONCE = 25
PATIENCE_S = 240  # how long one phone keeps retrying


def raise_at(moment, api_url, token, key, deadline, in_flight):
    time.sleep(max(0.0, moment - time.time()))
    return sos_until_answered(api_url, token, key, deadline=deadline, in_flight=in_flight)


def kill_while(api, busy, in_flight, kills: list):
    """SIGKILL the api after every few seconds of service, with requests in its hands, and start it again."""
    while busy():
        time.sleep(KILL_EVERY_S)
        if not busy():
            return
        wait_for(lambda: in_flight.count >= 3, 2, 0.002)
        api.kill(signal.SIGKILL)
        kills.append(time.time())
        api.start()


def counts(db) -> dict:
    db.session.rollback()
    row = db.session.execute(text("""
        SELECT (SELECT count(*) FROM incidents) AS incidents,
               (SELECT count(DISTINCT (caller_id, idempotency_key)) FROM incidents) AS distinct_keys,
               (SELECT count(DISTINCT caller_id) FROM incidents) AS callers,
               (SELECT count(*) FROM incident_events WHERE kind = 'created') AS created_events,
               (SELECT count(*) FROM jobs WHERE kind = 'incident.escalate') AS escalation_timers,
               (SELECT count(*) FROM deliveries) AS deliveries""")).mappings().one()
    return dict(row)


@pytest.mark.timeout(int(SPREAD_S + PATIENCE_S + 120))
def test_every_sos_is_recorded_exactly_once_while_the_api_is_killed(db, fault_env, spawn):
    create_operators(db.session, 1, prefix="op")  # each incident owes exactly one push
    citizens = create_citizens(db.session, SOS_COUNT)
    phones = [(c.id, token_for(c), uuid.uuid4().hex) for c in citizens]
    api = spawn.api(fault_env, threads=50)
    kills: list = []
    started = time.time()
    deadline = started + SPREAD_S + PATIENCE_S
    in_flight = InFlight()
    with ThreadPoolExecutor(PHONES_AT_ONCE) as pool:
        futures = [pool.submit(raise_at, started + SPREAD_S * i / SOS_COUNT, api.url, token, key, deadline,
                               in_flight) for i, (_, token, key) in enumerate(phones)]
        killer = threading.Thread(target=kill_while,
                                  args=(api, lambda: not all(f.done() for f in futures), in_flight, kills))
        killer.start()
        calls = [f.result() for f in futures]
        killer.join()
    elapsed = time.time() - started

    found = counts(db)
    by_key = dict(db.session.execute(text("SELECT idempotency_key, id::text FROM incidents")).all())
    errors = sum((c.errors for c in calls), Counter())
    record_figures("api_sigkill", sos=SOS_COUNT, kills=len(kills), seconds=round(elapsed, 1), **found,
                   attempts=sum(c.attempts for c in calls), answered_201=sum(c.status == 201 for c in calls),
                   answered_200_replay=sum(c.status == 200 for c in calls),
                   unanswered=sum(c.status is None for c in calls), errors_seen={str(k): v for k, v in errors.items()})
    assert len(kills) >= 2, "the api was not killed while SOS were raised; raise FAULT_SOS_SPREAD_S"
    assert all(c.status in (200, 201) for c in calls), [c for c in calls if c.status not in (200, 201)][:5]
    assert found == {"incidents": SOS_COUNT, "distinct_keys": SOS_COUNT, "callers": SOS_COUNT,
                     "created_events": SOS_COUNT, "escalation_timers": SOS_COUNT, "deliveries": SOS_COUNT}
    assert all(by_key[c.key] == c.incident_id for c in calls)  # every phone holds the one incident recorded
    assert not [k for k in errors if isinstance(k, int) and k != 503], f"answers other than 503: {errors}"
