"""scripts/serve-lib.sh, the supervision of `make run`, driven with stand-in children instead of gunicorn and the
worker: whichever ends first, the other is stopped, and the script ends with the first one's status."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "scripts" / "serve-lib.sh"
# A long-running child that records how it ended: "stopped" on SIGTERM, as gunicorn and the worker stop.
SURVIVOR = 'sh -c \'trap "echo stopped > {state}; exit 0" TERM; while :; do sleep 0.05; done\''


def run(script: str, **popen) -> subprocess.Popen:
    """Run `script` as serve.sh runs: bash with -euo pipefail, the library sourced."""
    return subprocess.Popen(["bash", "-c", f"set -euo pipefail\n. '{LIB}'\n{script}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def wait_for_file(path: Path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text().strip()
        time.sleep(0.02)
    return ""


def test_a_crashed_worker_stops_the_api_and_the_script_fails_with_its_status(tmp_path):
    """Before, `wait -n` under `set -e` ended the script at once and gunicorn kept serving without a worker."""
    state = tmp_path / "api"
    script = run(f"start_child api {SURVIVOR.format(state=state)}\n"
                 "start_child worker sh -c 'sleep 0.2; exit 3'\n"
                 "supervise")
    out, err = script.communicate(timeout=10)
    assert script.returncode == 3
    assert wait_for_file(state) == "stopped"
    assert "worker (pid" in err and "exited with status 3; stopping the others" in err


def test_an_api_that_ends_stops_the_worker(tmp_path):
    state = tmp_path / "worker"
    script = run("start_child api sh -c 'sleep 0.2; exit 1'\n"
                 f"start_child worker {SURVIVOR.format(state=state)}\n"
                 "supervise")
    script.communicate(timeout=10)
    assert script.returncode == 1 and wait_for_file(state) == "stopped"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_script_stops_both_and_ends_cleanly(tmp_path, sig):
    states = [tmp_path / "api", tmp_path / "worker"]
    script = run(f"start_child api {SURVIVOR.format(state=states[0])}\n"
                 f"start_child worker {SURVIVOR.format(state=states[1])}\n"
                 f"echo started > {tmp_path / 'started'}\n"
                 "supervise")
    assert wait_for_file(tmp_path / "started") == "started"
    time.sleep(0.1)
    os.kill(script.pid, sig)
    script.communicate(timeout=10)
    assert script.returncode == 0
    assert [wait_for_file(s) for s in states] == ["stopped", "stopped"]


def test_local_secrets_fill_only_the_keys_left_unset(tmp_path):
    """Before, sourcing .local-secrets replaced a SECRET_KEY the user had set with the file's."""
    secrets = tmp_path / ".local-secrets"
    secrets.write_text("SECRET_KEY=from-the-file\nJWT_SECRET_KEY=jwt-from-the-file\n")
    env = {**os.environ, "SECRET_KEY": "my-own", "JWT_SECRET_KEY": ""}
    script = run(f"fill_unset_from '{secrets}'\n"
                 'echo "$SECRET_KEY $JWT_SECRET_KEY"\n'
                 "bash -c 'echo \"$JWT_SECRET_KEY\"'", env=env)  # exported to the children
    out, err = script.communicate(timeout=10)
    assert script.returncode == 0, err
    assert out.split("\n")[:2] == ["my-own jwt-from-the-file", "jwt-from-the-file"]
