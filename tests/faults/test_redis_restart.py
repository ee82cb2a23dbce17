"""Redis killed and started again while 200 phones stream their SOS positions to two api processes.

Redis holds only what may be lost (the Socket.IO queue, live positions): the sockets stay up or come back, every
fix a phone took is in PostgreSQL, operators see live positions again within 5 s of Redis being back, and an SOS
raised while Redis was away reaches the operators through the outbox (its pushes) and the incident list.
"""
import gc
import threading
import time
import uuid
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import text

from tests.factories import token_for
from tests.faults.support import (
    OperatorScreen,
    StreamingPhone,
    create_citizens,
    create_operators,
    env_number,
    give_devices,
    push_counts,
    record_figures,
    sos_until_answered,
    wait_for,
    worker_started,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

PHONES = int(env_number("FAULT_SOCKETS", 200))
DOWN_S = env_number("FAULT_REDIS_DOWN_S", 5)
TICK_S = env_number("FAULT_TICK_S", 2)  # each phone takes a fix this often (1 s in `make faults`)
OPERATORS = 4
RESUME_BOUND_S = 5


class Streamer(threading.Thread):
    """Makes every phone take a fix each tick, as phones walking with the app open do."""

    def __init__(self, phones):
        super().__init__(daemon=True)
        self.phones, self.halt, self.ticks = phones, threading.Event(), 0

    def run(self):
        while not self.halt.is_set():
            for phone in self.phones:
                phone.fix(self.ticks)
            self.ticks += 1
            self.halt.wait(TICK_S)


def open_phones(servers, tokens, incident_ids) -> list:
    with ThreadPoolExecutor(10) as pool:
        return list(pool.map(lambda i: StreamingPhone(servers[i % 2].url, tokens[i], incident_ids[i], i),
                             range(len(incident_ids))))


def raise_all(servers, tokens) -> list:
    deadline = time.time() + 120
    with ThreadPoolExecutor(8) as pool:
        calls = list(pool.map(lambda i: sos_until_answered(servers[i % 2].url, tokens[i], uuid.uuid4().hex,
                                                           deadline=deadline), range(len(tokens))))
    assert all(c.status == 201 for c in calls)
    return [c.incident_id for c in calls]


def resumed_after(screens, moment, sources: list[set]) -> list:
    """For each screen and each api process: seconds from `moment` to the first positions from its phones."""
    delays = []
    for screen in screens:
        for ids in sources:
            later = [t for t, batch in list(screen.arrivals["positions"])
                     if t >= moment and any(item["id"] in ids for item in batch["items"])]
            delays.append(min(later) - moment if later else None)
    return delays


def all_sent(phones) -> bool:
    """Send again what is not acknowledged yet; true when nothing is left."""
    for phone in phones:
        phone.send_pending()
    return not any(phone.pending for phone in phones)


def close_all(clients):
    for client in clients:
        client.close()
    with warnings.catch_warnings():  # sockets python-socketio leaves unclosed after a failed reconnect attempt
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def stored_fixes(db) -> dict:
    db.session.rollback()
    return dict(db.session.execute(text(
        "SELECT subject_id::text, count(*) FROM location_fixes WHERE subject_kind = 'sos' GROUP BY 1")).all())


@pytest.mark.timeout(int(360 + DOWN_S + PHONES * 0.5))
def test_a_redis_restart_loses_nothing_durable_and_live_positions_resume(db, fault_env, fcm, private_redis, spawn):
    operators = create_operators(db.session, OPERATORS, prefix="redis-op", devices=False)
    citizens = create_citizens(db.session, PHONES + 1)
    tokens = [token_for(c) for c in citizens]
    # Threading mode holds a thread per socket; a dropped socket's thread lingers until its ping times out.
    servers = [spawn.api(fault_env, threads=PHONES + 50) for _ in range(2)]
    worker = spawn.worker({**fault_env, "LOG_LEVEL": "INFO"})
    incident_ids = raise_all(servers, tokens[:PHONES])
    give_devices(db.session, operators, prefix="redis-op")  # only the outage's SOS owes pushes
    sources = [set(incident_ids[0::2]), set(incident_ids[1::2])]  # the phones of each api process
    screens = [OperatorScreen(servers[i % 2].url, token_for(op)) for i, op in enumerate(operators)]
    phones = open_phones(servers, tokens, incident_ids)
    streamer = Streamer(phones)
    streamer.start()
    try:
        assert worker_started(worker)
        warm = time.time()
        assert wait_for(lambda: all(d is not None for d in resumed_after(screens, warm, sources)), 15), \
            "positions did not flow before the fault"

        down = time.time()
        private_redis.kill()
        during = sos_until_answered(servers[1].url, tokens[PHONES], "redis-away",
                                    deadline=time.time() + 60)
        time.sleep(max(0.0, DOWN_S - (time.time() - down)))
        private_redis.start()
        up = time.time()
        wait_for(lambda: all(d is not None for d in resumed_after(screens, up, sources)), RESUME_BOUND_S + 10)
        resumed = resumed_after(screens, up, sources)
        time.sleep(2)
    finally:
        streamer.halt.set()
        streamer.join(10)
    reconnected = wait_for(lambda: all(p.client.connected for p in phones), 30, 0.5)
    all_acknowledged = wait_for(lambda: all_sent(phones), 30, 0.5)
    stored = stored_fixes(db)
    lost = {p.incident_id: p.taken - stored.get(p.incident_id, 0) for p in phones if p.taken != stored.get(
        p.incident_id, 0)}
    pushed = wait_for(lambda: sum(1 for m in fcm.accepted() if m["data"]["id"] == during.incident_id) == OPERATORS,
                      60, 0.5)
    listed = requests.get(servers[0].url + "/api/v1/incidents", timeout=10,
                          headers={"Authorization": f"Bearer {token_for(operators[0])}"}).json()["items"]
    connected = sum(1 for p in phones if p.client.connected)
    recorded = db.session.execute(text("SELECT count(*) FROM incidents WHERE caller_id = :c"),
                                  {"c": citizens[PHONES].id}).scalar()
    record_figures("redis_restart", sockets=PHONES, operators=OPERATORS, down_s=round(up - down, 1),
                   fixes_taken=sum(p.taken for p in phones), fixes_stored=sum(stored.values()), fixes_lost=len(lost),
                   positions_resumed_after_up_s=max((d for d in resumed if d is not None), default=None),
                   phone_disconnects=sum(p.disconnects for p in phones),
                   operator_disconnects=sum(s.disconnects for s in screens), phones_connected_at_end=connected,
                   phone_errors=dict(sum((p.errors for p in phones), Counter())),
                   phone_errors_while_redis_away=sum(down <= t <= up for p in phones for t in p.error_times),
                   sos_during_outage={"status": during.status, "attempts": during.attempts,
                                      "errors": {str(k): v for k, v in during.errors.items()}},
                   sos_pushes_delivered=sum(1 for m in fcm.accepted() if m["data"]["id"] == during.incident_id),
                   pushes_repeated=sum(1 for n in push_counts(fcm.accepted()).values() if n > 1))
    close_all(phones + screens)
    assert reconnected and connected == PHONES, "phones that lost their socket did not reconnect"
    assert all_acknowledged and not lost, f"fixes missing from PostgreSQL: {lost}"
    assert all(d is not None and d <= RESUME_BOUND_S for d in resumed), f"positions resumed after {resumed} s"
    assert during.status in (200, 201), during  # 200: a retry with the same key, answered with the same incident
    assert recorded == 1, f"the outage's SOS was recorded {recorded} times"
    assert any(item["id"] == during.incident_id for item in listed), "the outage's SOS is not in the operators' list"
    assert pushed, "the outage's SOS did not reach every operator's device"
    assert not [n for n in push_counts(fcm.accepted()).values() if n > 1]
