"""PostgreSQL restarted under a live api and worker: 503 with Retry-After while it is away, never a hang or a 500;
everything recovers by itself. Runs on a private cluster (pg_createcluster) so the shared one is never touched."""
import threading
import time
import uuid

import pytest
import requests

from safety_api import create_app
from safety_api.extensions import db
from tests import conftest
from tests.factories import token_for
from tests.faults.support import (
    IN_GWANAK,
    Prober,
    create_citizens,
    create_operators,
    env_number,
    record_figures,
    sos_until_answered,
    wait_for,
    worker_started,
)
from tests.support.live import process_env

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

DOWN_S = env_number("FAULT_PG_DOWN_S", 8)
HANG_S = 10  # an answer slower than this is a hang (the api gives up on a connection after 3 s)
RECOVERY_BOUND_S = 15


@pytest.fixture(scope="module")
def pg_app(private_pg):
    """The private cluster migrated by the project's migrations; an app bound to it for the factories."""
    private_pg.migrate(process_env(private_pg.url, "redis://127.0.0.1:1/0", "unused"))
    app = create_app(conftest.test_config(SQLALCHEMY_DATABASE_URI=private_pg.url, REDIS_URL="redis://127.0.0.1:1/0"))
    yield app
    with app.app_context():
        db.engine.dispose()


def people(app) -> tuple[str, str, str]:
    """An admin with a device (no districts are loaded: every SOS is the central centre's) and two citizens."""
    with app.app_context():
        operator = create_operators(db.session, 1, prefix="pg-admin", role="admin")[0]
        first, second = create_citizens(db.session, 2)
        tokens = token_for(operator), token_for(first), token_for(second)
        db.session.remove()
        db.engine.dispose()  # the test holds no connection while the cluster stops
    return tokens


def probes(api, operator_token, citizen_token) -> dict:
    operator = {"Authorization": f"Bearer {operator_token}"}
    citizen = {"Authorization": f"Bearer {citizen_token}", "Idempotency-Key": uuid.uuid4().hex}
    return {
        "healthz": Prober("healthz", lambda t: requests.get(api.url + "/healthz", timeout=t), timeout_s=HANG_S),
        "readyz": Prober("readyz", lambda t: requests.get(api.url + "/readyz", timeout=t), timeout_s=HANG_S),
        "incidents": Prober("incidents", lambda t: requests.get(api.url + "/api/v1/incidents", headers=operator,
                                                                timeout=t), timeout_s=HANG_S),
        "sos": Prober("sos", lambda t: requests.post(api.url + "/api/v1/sos", json=IN_GWANAK, headers=citizen,
                                                     timeout=t), timeout_s=HANG_S),
    }


@pytest.mark.timeout(int(300 + DOWN_S))  # the cluster is created and migrated in setup
def test_the_api_answers_503_while_postgres_restarts_and_recovers_by_itself(pg_app, private_pg, private_redis, fcm,
                                                                           spawn):
    operator_token, citizen_token, caller_token = people(pg_app)
    env = process_env(private_pg.url, private_redis.url, f"faults-pg-{uuid.uuid4().hex[:6]}", FCM_ENDPOINT=fcm.url,
                      FCM_PROJECT_ID="faults", WORKER_POLL_S=0.2, LOG_LEVEL="INFO", SOS_ESCALATE_AFTER_S=3600)
    api = spawn.api(env, threads=30)
    worker = spawn.worker(env)
    assert worker_started(worker)
    watching = probes(api, operator_token, citizen_token)
    for probe in watching.values():
        probe.start()
    time.sleep(2)
    down = time.time()
    private_pg.stop()
    caller = {}  # a phone raising an SOS while the database is away keeps retrying with its key
    phone = threading.Thread(target=lambda: caller.update(call=sos_until_answered(
        api.url, caller_token, "during-outage", deadline=time.time() + DOWN_S + 60)))
    phone.start()
    time.sleep(DOWN_S)
    private_pg.start()
    up = time.time()
    wait_for(lambda: all(p.recovered_after(up) is not None and p.answers[-1].t > up + 3 for p in watching.values()),
             RECOVERY_BOUND_S + 5)
    for probe in watching.values():
        probe.stop()
    phone.join()
    call = caller["call"]
    pushed = wait_for(lambda: any(m["data"]["id"] == call.incident_id for m in fcm.accepted()), 30)

    figures = {name: summary(p, down, up) for name, p in watching.items()}
    record_figures("postgres_restart", down_s=round(up - down, 1), endpoints=figures,
                   sos_during_outage={"status": call.status, "attempts": call.attempts,
                                      "errors": {str(k): v for k, v in call.errors.items()}},
                   worker_alive=worker.proc.poll() is None, push_after_recovery=pushed)
    for name, probe in watching.items():
        assert not [a for a in probe.answers if a.status not in (200, 201, 503)], f"{name}: {figures[name]}"
        assert all(a.retry_after for a in probe.answers if a.status == 503), f"{name}: a 503 without Retry-After"
        assert max(a.elapsed for a in probe.answers) < HANG_S, f"{name} hung: {figures[name]}"
        assert figures[name]["recovered_after_up_s"] is not None, f"{name} did not recover: {figures[name]}"
        assert figures[name]["recovered_after_up_s"] <= RECOVERY_BOUND_S
    assert figures["healthz"]["during"] == {"200": figures["healthz"]["during_total"]}  # the process stays up
    for name in ("readyz", "incidents", "sos"):
        assert figures[name]["during"].get("503"), f"{name} never answered 503 while the database was away"
    assert call.status == 201 and not [k for k in call.errors if k != 503], call
    assert worker.proc.poll() is None and pushed, "the worker did not deliver the outage's SOS after recovery"


def summary(probe, down, up) -> dict:
    during = probe.between(down, up)
    statuses = {}
    for answer in during:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    recovered = probe.recovered_after(up)
    return {"during": statuses, "during_total": len(during),
            "slowest_during_s": round(max((a.elapsed for a in during), default=0), 2),
            "recovered_after_up_s": None if recovered is None else round(recovered, 2)}
