"""How an api process starts: gunicorn.conf.py's checks before the first request."""
import os
import subprocess

from tests.support.live import ROOT, VENV_BIN, free_port


def test_an_api_process_without_signing_keys_refuses_to_serve(session_env, tmp_path):
    """Before, it served, signing tokens with the key printed in safety_api/config.py: anyone could make an
    admin's token. Now gunicorn stops at the worker's boot, saying what to set."""
    env = {name: value for name, value in session_env.items()
           if name not in ("SECRET_KEY", "JWT_SECRET_KEY", "ALLOW_DEVELOPMENT_KEY")}
    started = subprocess.run(
        [os.path.join(VENV_BIN, "gunicorn"), "--no-control-socket", "-b", f"127.0.0.1:{free_port()}", "wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert "SECRET_KEY and JWT_SECRET_KEY are not set" in started.stdout + started.stderr
