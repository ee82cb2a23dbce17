"""Every environment variable the code reads is in docs/operations.md's settings, by name or by its family
(`ESCORT_*`, `WALK_*`, each pointing to the page that lists them)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where settings are read: the app's configuration, gunicorn's, and the tests' own.
READERS = ["safety_api/config.py", "gunicorn.conf.py", "tests/conftest.py"]
READ = re.compile(r'(?:_env|_int|_float|_bool|_hours|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]+)"'
                  r'|"([A-Z][A-Z0-9_]+)" in os\.environ')


def variables_read() -> set:
    found = set()
    for name in READERS:
        for match in READ.finditer((ROOT / name).read_text()):
            found.add(match.group(1) or match.group(2))
    return found


def documented(name: str, page: str) -> bool:
    if f"`{name}`" in page:
        return True
    return any(name.startswith(prefix) for prefix in re.findall(r"`([A-Z][A-Z0-9]*_)\*`", page))


def test_the_scan_finds_the_settings():
    assert {"DATABASE_URL", "DB_POOL_SIZE", "API_THREADS", "TEST_DATABASE_URL", "LOG_JSON"} <= variables_read()


def test_every_setting_read_is_documented():
    """Before, DB_POOL_SIZE, DB_MAX_OVERFLOW, DB_POOL_TIMEOUT_S, DB_CONNECT_TIMEOUT_S, ROUTE_VERSION_CHECK_S,
    DATA_DIR, TEST_DATABASE_URL and TEST_REDIS_URL were read and never listed (and JOB_MAX_ATTEMPTS was read and
    never used)."""
    page = (ROOT / "docs" / "operations.md").read_text()
    assert sorted(name for name in variables_read() if not documented(name, page)) == []
