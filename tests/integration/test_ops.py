"""Operations: liveness, readiness, metrics, request ids, the OpenAPI document and its docs page."""
import random
import re
import threading
import time
from datetime import timedelta

import pytest
import schemathesis
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from safety_api.api import ops
from safety_api.clock import utcnow
from safety_api.errors import to_problem
from tests.conftest import TEST_DATABASE_URL, another_app
from tests.support.live import free_port

PROBLEM = "application/problem+json"
# Operations anyone may call (no bearer scheme declared), and those of this issue behind a token.
PUBLIC = {("POST", "/api/v1/auth/register"), ("POST", "/api/v1/auth/login"), ("GET", "/api/v1/districts/at"),
          ("GET", "/healthz"), ("GET", "/readyz")}
FOUNDATION_PROTECTED = {("POST", "/api/v1/auth/refresh"), ("POST", "/api/v1/auth/logout"), ("GET", "/api/v1/me"),
                        ("PUT", "/api/v1/me/pins"), ("POST", "/api/v1/admin/users"), ("POST", "/api/v1/devices"),
                        ("POST", "/api/v1/guardians"), ("GET", "/api/v1/guardians"),
                        ("POST", "/api/v1/guardians/{link_id}/accept"), ("DELETE", "/api/v1/guardians/{link_id}")}


@pytest.fixture
def reader(app):
    """A client for requests that write nothing."""
    return app.test_client()


@pytest.fixture(scope="module")
def spec(app):
    return app.test_client().get("/api/v1/openapi.json").json


def operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), path, op


def test_healthz_is_200(reader):
    answer = reader.get("/healthz")
    assert answer.status_code == 200 and answer.json["status"] == "ok"


def test_readyz_is_200_with_its_checks(reader):
    answer = reader.get("/readyz")
    assert answer.status_code == 200
    assert answer.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "schema": "ok"}}


def test_metrics_are_prometheus_text_counting_requests(reader):
    reader.get("/healthz")
    reader.get("/api/v1/nothing-here")
    answer = reader.get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    text = answer.get_data(as_text=True)
    assert "# TYPE http_requests_total counter" in text
    assert re.search(r'http_requests_total\{endpoint="/healthz",method="GET",status="200"\} [1-9]', text)
    assert re.search(r'http_requests_total\{endpoint="unmatched",method="GET",status="404"\} [1-9]', text)
    assert "http_request_duration_seconds_bucket" in text


def test_invented_http_methods_share_one_metrics_label(reader):
    for i in range(20):
        reader.open("/healthz", method=f"BREW{i}")
    text = reader.get("/metrics").get_data(as_text=True)
    assert "BREW" not in text
    counted = re.search(r'http_requests_total\{endpoint="unmatched",method="other",status="405"\} ([\d.]+)', text)
    assert counted and float(counted.group(1)) >= 20


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/nothing-here", "/api/v1/me"])
def test_a_request_id_is_echoed(reader, path):
    assert reader.get(path, headers={"X-Request-ID": "req-42.abc"}).headers["X-Request-ID"] == "req-42.abc"


@pytest.mark.parametrize("sent", [None, "", "bad\tid", "x" * 65])
def test_a_request_id_is_generated_or_trimmed(reader, sent):
    answer = reader.get("/healthz", headers={} if sent is None else {"X-Request-ID": sent})
    echoed = answer.headers["X-Request-ID"]
    if sent and sent.isprintable():
        assert echoed == sent[:64]
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", echoed)
    assert reader.get("/healthz").headers["X-Request-ID"] != echoed  # a new one per request


def test_openapi_is_valid_3_1_with_the_bearer_scheme(spec):
    schemathesis.openapi.from_dict(spec).validate()  # raises on a document that breaks the 3.1 schema
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


def test_every_protected_operation_declares_bearer_security(spec):
    declared = {(m, p) for m, p, op in operations(spec) if op.get("security") == [{"bearerAuth": []}]}
    assert FOUNDATION_PROTECTED - declared == set()
    assert PUBLIC & declared == set()


def test_an_operation_that_refuses_anonymous_callers_declares_security(reader, spec):
    """What the document says agrees with what the server does, for every path."""
    undeclared = []
    for method, path, op in operations(spec):
        concrete = re.sub(r"\{[^}]+\}", "6f1c1a4e-0000-4000-8000-000000000000", path)
        answer = reader.open(concrete, method=method)
        if answer.status_code == 401 and not op.get("security"):
            undeclared.append((method, path))
        if op.get("security"):
            assert answer.status_code in (401, 422), (method, path, answer.status_code)
    assert undeclared == []


def test_docs_serve_swagger_ui_from_the_installed_package(reader):
    page = reader.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/api/v1/openapi.json" in html
    assets = re.findall(r'(?:src|href)="(/vendor/swagger-ui/[^"]+)"', html)
    assert {a.rsplit("/", 1)[1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        answer = reader.get(asset)
        assert answer.status_code == 200 and len(answer.data) > 1000, asset
        answer.close()


@pytest.mark.parametrize("path", ["/vendor/swagger-ui/no-such-file.js", "/vendor/left-pad/index.js",
                                  "/vendor/swagger-ui/../../package.json", "/vendor/swagger-ui/%2e%2e/package.json"])
def test_vendor_serves_nothing_outside_its_packages(reader, path):
    answer = reader.get(path)
    assert answer.status_code == 404 and answer.content_type == PROBLEM


def assert_unavailable(answer, name):
    assert answer.status_code == 503 and answer.content_type == PROBLEM
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.json["status"] == 503 and name in answer.json["detail"]


def test_readyz_is_503_when_redis_is_unreachable(app):
    with another_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0") as broken:  # nothing listens there
        started = time.monotonic()
        client = broken.test_client()
        assert_unavailable(client.get("/readyz"), "redis=")
        assert "database=ok" in client.get("/readyz").json["detail"]
        assert client.get("/healthz").status_code == 200  # alive, only not ready
        assert time.monotonic() - started < 10
    assert app.test_client().get("/readyz").status_code == 200


def test_readyz_is_503_when_the_database_is_unreachable(app):
    nowhere = f"postgresql+psycopg://safety:safety@127.0.0.1:{free_port()}/safety_test"
    with another_app(SQLALCHEMY_DATABASE_URI=nowhere) as broken:
        started = time.monotonic()
        client = broken.test_client()
        assert_unavailable(client.get("/readyz"), "database=")
        assert "redis=ok" in client.get("/readyz").json["detail"]
        # Endpoints that need the database answer 503 as well, never 500.
        assert_unavailable(client.get("/api/v1/districts/at?lat=37.4784&lon=126.9516"), "")
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 15
    assert app.test_client().get("/readyz").status_code == 200


def test_readyz_is_503_on_a_database_never_migrated(app):
    """Before, /readyz answered 200 on an empty database: a load balancer sent SOS requests to an api whose
    every write was a 500 (no tables)."""
    unmigrated = TEST_DATABASE_URL.rsplit("/", 1)[0] + "/postgres"  # exists everywhere; none of our tables
    with another_app(SQLALCHEMY_DATABASE_URI=unmigrated) as bare:
        answer = bare.test_client().get("/readyz")
    head = ", ".join(sorted(ops._release_revisions(app)[0]))
    assert_unavailable(answer, f"schema=the database is at no revision (never migrated), this release needs {head}")
    assert "database=ok" in answer.json["detail"] and "db upgrade" in answer.json["detail"]


def test_readyz_is_503_while_the_database_lacks_this_releases_migrations(app, monkeypatch):
    """As after a deploy that skipped `db upgrade`: the release's head is made one the database has not
    reached."""
    heads, known = ops._release_revisions(app)
    monkeypatch.setitem(app.extensions, "migration_revisions", (frozenset({"9999"}), known | {"9999"}))
    answer = app.test_client().get("/readyz")
    assert_unavailable(answer, f"schema=the database is at {', '.join(sorted(heads))}, this release needs 9999")


def test_readyz_stays_200_on_a_database_migrated_by_a_newer_release(app, monkeypatch):
    """A rolling deploy migrates first: the old processes must keep serving until they are replaced."""
    heads, _known = ops._release_revisions(app)
    monkeypatch.setitem(app.extensions, "migration_revisions", (frozenset({"older"}), frozenset({"older"})))
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 200
    assert answer.json["checks"]["schema"] == (f"ok (the database is at {', '.join(sorted(heads))}, newer than "
                                               f"this release's older)")


@pytest.mark.parametrize("applied, verdict", [
    (set(), "the database is at no revision (never migrated), this release needs 0010"),
    ({"0009"}, "the database is at 0009, this release needs 0010"),
    ({"0010"}, "ok"),
    ({"0011"}, "ok (the database is at 0011, newer than this release's 0010)"),
])
def test_the_schema_verdict(applied, verdict):
    assert ops.schema_state(applied, (frozenset({"0010"}), frozenset({"0009", "0010"}))).startswith(verdict)


def test_a_transaction_the_database_undoes_in_a_deadlock_is_a_503_to_retry_not_an_outage(db):
    """Two transactions take two locks in opposite orders: PostgreSQL ends one of them (40P01). Its caller is
    told to retry at once, not that a backing service is down."""
    engine, first = db.engine, random.randrange(1 << 40)
    both_hold_one, undone = threading.Barrier(2), []

    def lock_both(a, b):
        with engine.connect() as conn:
            try:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": a})
                both_hold_one.wait()
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": b})
            except OperationalError as exc:
                undone.append(exc)
            conn.rollback()

    threads = [threading.Thread(target=lock_both, args=pair) for pair in ((first, first + 1), (first + 1, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(undone) == 1
    problem, status, headers = to_problem(undone[0])
    assert status == 503 and headers == {"Retry-After": "1"}
    assert problem["type"].endswith("/concurrent-request") and "retry" in problem["detail"]


def test_metrics_show_the_job_backlog_by_kind(app, db):
    """Workers all down: an SOS's escalation is due and nobody runs it. The scrape shows it waiting."""
    from safety_api.services import jobs
    jobs.enqueue(db.session, kind="incident.escalate", payload={"incident_id": "x"},
                 run_at=utcnow() - timedelta(seconds=90))
    jobs.enqueue(db.session, kind="escort.reminder", payload={}, run_at=utcnow() + timedelta(hours=1))
    jobs.enqueue(db.session, kind="push.deliver", payload={"delivery_id": 0}, dedupe_key="claimed-by-the-dead")
    db.session.execute(text("UPDATE jobs SET status = 'running', locked_by = 'dead', "
                            "locked_until = now() - interval '40 seconds' WHERE dedupe_key = 'claimed-by-the-dead'"))
    db.session.commit()
    scraped = app.test_client().get("/metrics").get_data(as_text=True)
    assert re.search(r'^jobs_due\{kind="incident.escalate"\} 1\.0$', scraped, re.M)
    waited = re.search(r'^jobs_oldest_due_seconds\{kind="incident.escalate"\} ([\d.]+)$', scraped, re.M)
    assert waited and 89 <= float(waited.group(1)) < 200
    assert re.search(r'^jobs_due\{kind="escort.reminder"\} 0\.0$', scraped, re.M)
    # A claim whose worker died is due again from when its lease ran out, and is not "running".
    assert re.search(r'^jobs_due\{kind="push.deliver"\} 1\.0$', scraped, re.M)
    assert re.search(r'^jobs_running\{kind="push.deliver"\} 0\.0$', scraped, re.M)
