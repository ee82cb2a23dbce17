"""scripts/setup.sh run in a sandbox: a copy of the project whose Python and npm packages are up to date, and
stand-ins for apt, dpkg, psql, pg_isready and redis-cli that record what they were asked."""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"
SYSTEM = ["bash", "env", "sha256sum", "cat", "grep", "cut", "id", "seq", "ls", "head", "dirname", "sleep", "mkdir",
          "chmod"]
STANDINS = {
    "dpkg-query": 'echo "$*" >> "$LOG"; for p in $MISSING; do [ "${@: -1}" = "$p" ] && exit 1; done; '
                  'printf "install ok installed"',
    "apt-get": 'echo "apt-get $*" >> "$LOG"',
    "sudo": 'if [ "$1" = -u ]; then echo "as $2" >> "$LOG"; shift 2; fi; "$@"',
    "runuser": 'echo "as $2" >> "$LOG"; shift 3; "$@"',  # runuser -u postgres -- psql ...
    "pg_isready": "exit 0",
    "redis-cli": "exit 0",
    # Answers no row (no database exists yet); with TCP_REFUSED, refuses the postgres role over TCP, as Debian's
    # default pg_hba.conf does without a password.
    "psql": 'if [ -n "$TCP_REFUSED" ] && [ "$2" = 127.0.0.1 ]; then exit 2; fi; printf "psql %s\\n" "$*" >> "$LOG"',
    # `python3 -m venv DIR` makes DIR/bin/python; otherwise the ensurepip check, answered by PYTHON_HAS_VENV.
    "python3": 'if [ "$1" = -m ]; then mkdir -p "$3/bin"; printf "#!/bin/sh\\n" > "$3/bin/python"; '
               'chmod +x "$3/bin/python"; exit 0; fi; exit "${PYTHON_HAS_VENV:-0}"',
}


def sandbox(tmp_path: Path, *, npm: bool) -> dict:
    """The project copy and PATH; returns the environment to run setup.sh in."""
    project, bin_dir = tmp_path / "project", tmp_path / "bin"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, project / "scripts" / "setup.sh")
    for name, sha_file in (("requirements.txt", ".venv/.requirements.sha"), ("package-lock.json",
                                                                            "node_modules/.lock.sha")):
        (project / name).write_text("pinned\n")
        (project / sha_file).parent.mkdir(parents=True, exist_ok=True)
        (project / sha_file).write_text(hashlib.sha256(b"pinned\n").hexdigest() + "\n")
    bin_dir.mkdir()
    for name, body in {**STANDINS, **({"npm": "exit 0"} if npm else {})}.items():
        (bin_dir / name).write_text(f"#!{shutil.which('bash')}\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for name in SYSTEM:
        os.symlink(shutil.which(name), bin_dir / name)
    return {"PATH": str(bin_dir), "LOG": str(tmp_path / "log"), "MISSING": "", "HOME": str(tmp_path)}


def run_setup(tmp_path, env, **extra) -> str:
    done = subprocess.run([shutil.which("bash"), str(tmp_path / "project" / "scripts" / "setup.sh")],
                          env={**env, **extra}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    log = tmp_path / "log"
    return log.read_text() if log.exists() else ""


def created_databases(log: str) -> list:
    return [line.split("CREATE DATABASE ")[1].split()[0] for line in log.splitlines() if "CREATE DATABASE" in line]


def test_a_database_url_of_ones_own_still_gets_the_test_database_and_its_role(tmp_path):
    """Before, DATABASE_URL set skipped both databases and the role: `make test` then failed on safety_test."""
    log = run_setup(tmp_path, sandbox(tmp_path, npm=True), DATABASE_URL="postgresql+psycopg://me@db/mine")
    assert created_databases(log) == ["safety_test"]
    assert "CREATE ROLE safety" in log


def test_without_urls_both_local_databases_are_made(tmp_path):
    log = run_setup(tmp_path, sandbox(tmp_path, npm=True))
    assert created_databases(log) == ["safety", "safety_test"]


def test_where_tcp_asks_a_password_the_databases_are_made_as_the_postgres_system_user(tmp_path):
    """Before, setup.sh asked for `psql -h 127.0.0.1 -U postgres`, which a stock Debian refuses: `make run` stopped."""
    log = run_setup(tmp_path, sandbox(tmp_path, npm=True), TCP_REFUSED="1")
    assert created_databases(log) == ["safety", "safety_test"]
    assert "as postgres" in log and "-h 127.0.0.1" not in log


def test_with_both_urls_no_database_is_made(tmp_path):
    log = run_setup(tmp_path, sandbox(tmp_path, npm=True), DATABASE_URL="postgresql+psycopg://me@db/mine",
                    TEST_DATABASE_URL="postgresql+psycopg://me@db/mine_test")
    assert "psql" not in log


@pytest.mark.parametrize("npm, has_venv, installed", [
    (True, "0", None),  # all present: no apt at all
    (False, "0", "npm"),
    (False, "1", "python3-venv npm"),  # python3 without ensurepip, and no .venv yet
])
def test_python3_venv_and_npm_are_installed_only_when_missing(tmp_path, npm, has_venv, installed):
    env = sandbox(tmp_path, npm=npm)
    log = run_setup(tmp_path, env, PYTHON_HAS_VENV=has_venv)
    installs = [line for line in log.splitlines() if line.startswith("apt-get") and " install " in line]
    if installed is None:
        assert "apt-get" not in log
    else:
        assert installs == [f"apt-get install -y -q {installed}"]


def test_an_existing_venv_needs_no_python3_venv(tmp_path):
    env = sandbox(tmp_path, npm=True)
    venv_python = tmp_path / "project" / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("#!/bin/sh\n")
    venv_python.chmod(0o755)
    assert "apt-get" not in run_setup(tmp_path, env, PYTHON_HAS_VENV="1")
