"""docker-compose.yml, read (no Docker here to run it): the settings a production stack depends on."""
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")  # PyYAML comes with schemathesis
COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


@pytest.mark.parametrize("name", ["postgis", "redis", "api", "worker"])
def test_long_running_services_come_back_after_a_crash_or_a_reboot(name):
    assert SERVICES[name].get("restart") == "unless-stopped"


def test_the_one_shot_migration_is_not_restarted():
    assert "restart" not in SERVICES["migrate"]


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_get_30_s_to_stop(name):
    """Compose's default 10 s SIGKILLs a worker waiting on a push (FCM_HTTP_TIMEOUT_S is 10 s by itself)."""
    assert SERVICES[name]["stop_grace_period"] == "30s"


def test_postgres_is_ready_only_once_it_listens_on_tcp():
    """The Unix-socket form answers ready while the image's first-run init server is up, just before it stops."""
    assert "pg_isready -h 127.0.0.1 -U safety -d safety" in " ".join(SERVICES["postgis"]["healthcheck"]["test"])


def test_each_start_loads_the_demo_data_only_into_empty_tables():
    assert "load-demo --only-missing" in " ".join(SERVICES["migrate"]["command"])


def test_only_the_worker_gets_the_fcm_key_as_a_secret_and_no_project_is_imposed():
    worker = SERVICES["worker"]
    assert worker["secrets"] == ["fcm-service-account"]
    assert worker["environment"]["GOOGLE_APPLICATION_CREDENTIALS"] == "/run/secrets/fcm-service-account"
    assert worker["environment"]["FCM_PROJECT_ID"] == "${FCM_PROJECT_ID:-}"
    assert "FCM_CREDENTIALS_FILE:?" in COMPOSE["secrets"]["fcm-service-account"]["file"]
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in SERVICES["api"]["environment"]
