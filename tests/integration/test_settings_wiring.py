"""Settings that are documented reach the code that they are documented to change."""
from safety_api.realtime.positions import batcher
from tests.conftest import another_app


def test_positions_are_flushed_at_the_configured_interval(monkeypatch):
    """Before, POSITIONS_FLUSH_S was read and documented, and the batcher kept its built-in 0.3 s."""
    monkeypatch.setattr(batcher, "interval_s", batcher.interval_s)  # the process-wide batcher gets it back after
    with another_app(POSITIONS_FLUSH_S=0.05):
        assert batcher.interval_s == 0.05


def test_job_max_attempts_is_no_setting(app):
    """It was read and never used: each job kind sets its own budget (services/jobs.py, services/deliveries.py)."""
    assert "JOB_MAX_ATTEMPTS" not in app.config
