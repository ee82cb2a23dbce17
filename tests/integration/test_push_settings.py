"""FCM settings: pushes go to the service account's own project, and a worker whose settings cannot deliver a
push refuses to start instead of failing every push one retry after another."""
import subprocess
import sys
import uuid

import pytest

from notifications.push import PushMessage
from safety_api.services import deliveries
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.support.fake_fcm import FakeFCM, service_account_file
from tests.support.live import ROOT, WorkerProcess, process_env


def settings(**overrides) -> dict:
    return {"FCM_PROJECT_ID": None, "FCM_CREDENTIALS": None, "FCM_ENDPOINT": None, "FCM_HTTP_TIMEOUT_S": 2.0,
            **overrides}


def test_without_fcm_project_id_pushes_go_to_the_service_accounts_project(tmp_path):
    """Before, FCM_PROJECT_ID defaulted to ansimi-local: a deployment that set only its credentials sent every
    push to projects/ansimi-local, which FCM refuses (403), and the tokens were then deleted as dead."""
    project = f"safety-{uuid.uuid4().hex[:6]}"
    with FakeFCM() as fcm:
        key = service_account_file(tmp_path, project, fcm.url + "/token")
        sender = deliveries.sender_for(settings(FCM_CREDENTIALS=key, FCM_ENDPOINT=fcm.url))
        [outcome] = sender.send([PushMessage(token="tok-1", platform="android")])
        assert outcome.status == "delivered"
        assert [r.path for r in fcm.requests] == ["/token", f"/v1/projects/{project}/messages:send"]


def test_the_default_project_is_the_credentials_own(monkeypatch):
    from safety_api.config import Config
    monkeypatch.delenv("FCM_PROJECT_ID", raising=False)
    assert Config().FCM_PROJECT_ID is None
    monkeypatch.setenv("FCM_PROJECT_ID", "")  # docker-compose passes an unset variable as empty
    assert Config().FCM_PROJECT_ID is None


@pytest.mark.parametrize("config, told", [
    (settings(), "no FCM credentials: set GOOGLE_APPLICATION_CREDENTIALS"),
    (settings(FCM_CREDENTIALS="/nonexistent/key.json"),
     "GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/key.json is not a readable service-account JSON key"),
])
def test_settings_that_cannot_deliver_are_refused_naming_the_variables(config, told):
    with pytest.raises(deliveries.PushSettingsError) as refused:
        deliveries.push_project(config)
    assert str(refused.value).startswith(told)


def test_a_key_file_that_is_not_a_service_account_is_refused(tmp_path):
    key = tmp_path / "key.json"
    key.write_text('{"type": "authorized_user"}')
    with pytest.raises(deliveries.PushSettingsError, match="is not a readable service-account JSON key"):
        deliveries.push_project(settings(FCM_CREDENTIALS=str(key)))


def test_a_project_id_that_is_not_the_service_accounts_is_refused(tmp_path):
    key = service_account_file(tmp_path, "safety-prod", "http://127.0.0.1:9/token")
    with pytest.raises(deliveries.PushSettingsError) as refused:
        deliveries.push_project(settings(FCM_CREDENTIALS=key, FCM_PROJECT_ID="ansimi-local"))
    assert str(refused.value).startswith("FCM_PROJECT_ID=ansimi-local is not the project of the service account "
                                         "in GOOGLE_APPLICATION_CREDENTIALS (safety-prod)")
    assert deliveries.push_project(settings(FCM_CREDENTIALS=key, FCM_PROJECT_ID="safety-prod")) == "safety-prod"
    assert deliveries.push_project(settings(FCM_CREDENTIALS=key)) == "safety-prod"


def test_a_stand_in_server_needs_no_credentials():
    assert deliveries.push_project(settings(FCM_ENDPOINT="http://127.0.0.1:9")) == deliveries.STAND_IN_PROJECT
    assert deliveries.push_project(settings(FCM_ENDPOINT="http://127.0.0.1:9", FCM_PROJECT_ID="demo")) == "demo"


def worker_env(**fcm) -> dict:
    env = process_env(TEST_DATABASE_URL, TEST_REDIS_URL, f"push-settings-{uuid.uuid4().hex[:8]}", LOG_LEVEL="INFO")
    for name in ("FCM_ENDPOINT", "FCM_PROJECT_ID", "GOOGLE_APPLICATION_CREDENTIALS"):
        env.pop(name, None)
    return {**env, **fcm}


@pytest.mark.parametrize("fcm, told", [
    ({}, "no FCM credentials"),
    ({"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json"},
     "GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/key.json is not a readable"),
])
def test_a_worker_that_cannot_deliver_pushes_exits_at_start_saying_why(fcm, told):
    """Before, it started: every push then failed 401 (no credentials), or raised FileNotFoundError at every
    retry (a missing key file), until each was given up."""
    done = subprocess.run([sys.executable, "worker.py"], cwd=ROOT, env=worker_env(**fcm), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert f"worker not started: {told}" in done.stderr


def test_a_worker_whose_project_is_not_its_keys_exits_at_start(tmp_path):
    key = service_account_file(tmp_path, "safety-prod", "http://127.0.0.1:9/token")
    done = subprocess.run([sys.executable, "worker.py"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=worker_env(GOOGLE_APPLICATION_CREDENTIALS=key, FCM_PROJECT_ID="ansimi-local"))
    assert done.returncode != 0 and "FCM_PROJECT_ID=ansimi-local is not the project" in done.stderr


def test_a_worker_with_a_service_account_starts(db, tmp_path):
    key = service_account_file(tmp_path, "safety-prod", "http://127.0.0.1:9/token")
    worker = WorkerProcess(worker_env(GOOGLE_APPLICATION_CREDENTIALS=key))
    try:
        from tests.integration.test_worker import wait_for_log
        wait_for_log(worker, "started")
        assert worker.stop() == 0
    finally:
        worker.kill()
