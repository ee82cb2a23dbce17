"""Bad input on every foundation endpoint: a clear 4xx in problem+json naming the fields, never a 500."""
import json
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import jwt as pyjwt
import pytest
from argon2 import PasswordHasher
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from safety_api.api.schemas import PointSchema
from safety_api.errors import to_problem
from safety_api.services import accounts
from tests.factories import GWANAK, PASSWORD, create_user

PROBLEM = "application/problem+json"
CITIZEN_PHONE, FRIEND_PHONE = "01055550009", "01055550003"
UNKNOWN_ID = "6f1c1a4e-0000-4000-8000-000000000000"

# Each body endpoint: method, path, who calls it, and a body it accepts.
BODIES = {
    "register": ("POST", "/api/v1/auth/register", None,
                 {"phone": "010-5555-0001", "password": "long-enough-1", "name": "김안심"}),
    "login": ("POST", "/api/v1/auth/login", None, {"phone": CITIZEN_PHONE, "password": PASSWORD}),
    "pins": ("PUT", "/api/v1/me/pins", "citizen", {"cancel_pin": "1234", "duress_pin": "5678"}),
    "admin-users": ("POST", "/api/v1/admin/users", "admin", {
        "phone": "010-5555-0002", "password": PASSWORD, "name": "관제요원", "role": "operator",
        "district": GWANAK}),
    "devices": ("POST", "/api/v1/devices", "citizen", {"token": "fcm-token-0001", "platform": "android"}),
    "guardians": ("POST", "/api/v1/guardians", "citizen", {"phone": FRIEND_PHONE}),
}
VALID_STATUS = {"register": 201, "login": 200, "pins": 204, "admin-users": 201, "devices": 201, "guardians": 201}
# Strings with no length limit accept a long value (login checks the password, it does not validate it).
NO_LENGTH_LIMIT = {("login", "password"): 401}
DIGIT_FIELDS = {"phone": "010١٢٣٤٥٦٧٨", "cancel_pin": "١٢٣٤", "duress_pin": "٥٦٧٨"}


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Argon2 at its lowest cost: these tests are about input, not about hashing strength."""
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def reader(app):
    """A client for requests that write nothing, so the tables need no cleaning after."""
    return app.test_client()


@pytest.fixture
def people(db):
    return SimpleNamespace(citizen=create_user(db.session, phone=CITIZEN_PHONE, name="시민"),
                           friend=create_user(db.session, phone=FRIEND_PHONE, name="친구"),
                           admin=create_user(db.session, role="admin", name="관리자"))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def remembered_refresh_token(db, user) -> str:
    """A refresh token the server issued and still honours."""
    token = create_refresh_token(identity=user)
    claims = decode_token(token)
    accounts.remember_refresh_token(db.session, user=user, jti=claims["jti"],
                                    expires_at=datetime.fromtimestamp(claims["exp"], timezone.utc))
    return token


def send(client, method, path, *, headers=None, body=None, raw=None, content_type="application/json"):
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    return client.open(path, method=method, data=data, headers=headers or {},
                       content_type=content_type if data is not None else None)


def assert_problem(answer, status, fields=()):
    """The answer is a problem+json of this status, naming at least these fields."""
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.content_type == PROBLEM
    problem = answer.get_json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert problem["type"].startswith("https://")
    for error in problem.get("errors", []):
        assert set(error) == {"field", "message"} and error["field"] and error["message"]
    assert set(fields) <= {e["field"] for e in problem.get("errors", [])}, problem
    return problem


def call_body_endpoint(client, people, name, **kwargs):
    method, path, who, _body = BODIES[name]
    headers = bearer(create_access_token(identity=getattr(people, who))) if who else {}
    return send(client, method, path, headers=headers, **kwargs)


def with_literal(body, field, literal):
    """JSON text of the body with a bare literal (NaN, Infinity) as the field's value."""
    return json.dumps({**body, field: "__LITERAL__"}).replace('"__LITERAL__"', literal)


def whole_body_cases(body):
    """(kind, request, status, fields named) for bad bodies as a whole."""
    required = set(body) - {"district"}
    return [
        ("malformed-json", {"raw": "{bad"}, 400, {"body"}),
        ("array", {"raw": json.dumps([body])}, 422, {"body"}),
        ("string", {"raw": '"text"'}, 422, {"body"}),
        ("null", {"raw": "null"}, 422, {"body"}),
        ("number", {"raw": "42"}, 422, {"body"}),
        ("invalid-utf8", {"raw": b"\xff\xfe{"}, 400, {"body"}),
        ("nested-too-deep", {"raw": "[" * 5000 + "]" * 5000}, 400, set()),
        ("empty", {"raw": ""}, 422, required),
        ("not-json-content-type", {"raw": json.dumps(body), "content_type": "text/plain"}, 422, required),
        ("unknown-field", {"body": {**body, "is_admin": True}}, 422, {"is_admin"}),
    ]


def field_cases(name, body, field):
    """(kind, request, status, fields named) for one bad field in an otherwise good body."""
    cases = [
        ("missing", {"body": {k: v for k, v in body.items() if k != field}}, 422),
        ("number", {"body": {**body, field: 12345}}, 422),
        ("bool", {"body": {**body, field: True}}, 422),
        ("list", {"body": {**body, field: ["x"]}}, 422),
        ("object", {"body": {**body, field: {"x": 1}}}, 422),
        ("null", {"body": {**body, field: None}}, 422),
        ("nan", {"raw": with_literal(body, field, "NaN")}, 422),
        ("infinity", {"raw": with_literal(body, field, "-Infinity")}, 422),
        ("nul-char", {"body": {**body, field: "abcdefgh\x00ij"}}, 422),
        ("too-long", {"body": {**body, field: "9" * 5000}}, NO_LENGTH_LIMIT.get((name, field), 422)),
    ]
    if field in DIGIT_FIELDS:  # Arabic-Indic digits pass a Unicode \d but are no phone number or PIN
        cases.append(("other-digits", {"body": {**body, field: DIGIT_FIELDS[field]}}, 422))
    return [(kind, request, status, {field} if status == 422 else set()) for kind, request, status in cases]


def mismatches(client, people, name, cases) -> list:
    """Run the cases; return those whose answer is not the expected problem."""
    wrong = []
    for kind, request, status, fields in cases:
        answer = call_body_endpoint(client, people, name, **request)
        try:
            assert_problem(answer, status, fields)
        except AssertionError as exc:
            wrong.append((kind, answer.status_code, str(exc)[:300]))
    return wrong


@pytest.mark.parametrize("name", BODIES)
def test_the_valid_bodies_are_accepted(client, people, name):
    answer = call_body_endpoint(client, people, name, body=BODIES[name][3])
    assert answer.status_code == VALID_STATUS[name], answer.get_data(as_text=True)


@pytest.mark.parametrize("name", BODIES)
def test_bad_bodies_are_4xx_problems(client, people, name):
    assert mismatches(client, people, name, whole_body_cases(BODIES[name][3])) == []


@pytest.mark.parametrize("name, field", [(name, field) for name, spec in BODIES.items() for field in spec[3]])
def test_a_bad_field_is_a_4xx_problem_naming_it(client, people, name, field):
    assert mismatches(client, people, name, field_cases(name, BODIES[name][3], field)) == []


@pytest.mark.parametrize("query, fields", [
    ("lon=126.95", {"lat"}), ("lat=37.47", {"lon"}), ("", {"lat", "lon"}), ("lat=&lon=", {"lat", "lon"}),
    ("lat=NaN&lon=126.95", {"lat"}), ("lat=nan&lon=126.95", {"lat"}), ("lat=Infinity&lon=126.95", {"lat"}),
    ("lat=-inf&lon=126.95", {"lat"}), ("lat=1e999&lon=126.95", {"lat"}), ("lat=37.47&lon=NaN", {"lon"}),
    ("lat=37.47&lon=Infinity", {"lon"}), ("lat=91&lon=126.95", {"lat"}), ("lat=-90.0001&lon=126.95", {"lat"}),
    ("lat=37.47&lon=180.5", {"lon"}), ("lat=37.47&lon=-181", {"lon"}), ("lat=abc&lon=126.95", {"lat"}),
    ("lat=37,47&lon=126.95", {"lat"}), ("lat=0x10&lon=126.95", {"lat"}), ("lat=%00&lon=126.95", {"lat"}),
    ("lat=37.47&lon=126.95%00", {"lon"}),
])
def test_bad_coordinates_in_the_query_are_422_naming_the_field(reader, query, fields):
    assert_problem(reader.get(f"/api/v1/districts/at?{query}"), 422, fields)


@pytest.mark.parametrize("query", ["lat=0&lon=0", "lat=35.1796&lon=129.0756", "lat=-37.4784&lon=-126.9516"])
def test_a_point_outside_seoul_is_404(reader, query):
    problem = assert_problem(reader.get(f"/api/v1/districts/at?{query}"), 404)
    assert "errors" not in problem


def test_a_point_in_gwanak_is_in_11620(reader):
    answer = reader.get("/api/v1/districts/at?lat=37.4784&lon=126.9516&unknown=ignored")
    assert answer.status_code == 200
    assert answer.json["code"] == "11620" and answer.json["name"] == "관악구"


@pytest.mark.parametrize("body, field", [
    ('{"lat": NaN, "lon": 126.95}', "lat"), ('{"lat": 37.47, "lon": Infinity}', "lon"),
    ('{"lat": -Infinity, "lon": 126.95}', "lat"), ('{"lat": 1e999, "lon": 126.95}', "lat"),
    ('{"lat": 90.5, "lon": 126.95}', "lat"), ('{"lat": 37.47, "lon": -180.01}', "lon"),
    ('{"lat": "north", "lon": 126.95}', "lat"), ('{"lat": 37.47}', "lon"),
    ('{"lat": 37.47, "lon": 126.95, "alt": 3}', "alt"), ('[37.47, 126.95]', "body"),
])
def test_bad_coordinates_in_a_body_are_422_naming_the_field(app, body, field):
    """Body coordinates all go through PointSchema and the routes' own parser (no route of this issue has one)."""
    with app.test_request_context("/", method="POST", data=body, content_type="application/json"):
        with pytest.raises(HTTPException) as raised:
            Blueprint.ARGUMENTS_PARSER.parse(PointSchema(), location="json")
        problem, status, _headers = to_problem(raised.value)
    assert status == 422
    assert field in {e["field"] for e in problem["errors"]}


@pytest.mark.parametrize("method, path", [("POST", "/api/v1/guardians/{}/accept"),
                                          ("DELETE", "/api/v1/guardians/{}")])
@pytest.mark.parametrize("link_id", [UNKNOWN_ID, "not-a-uuid", "123", "%20", "6f1c1a4e-0000-4000-8000-00000000000g",
                                     "6f1c1a4e000040008000000000000000%00", "..%2F..%2Fme"])
def test_unknown_or_malformed_ids_are_404(client, people, method, path, link_id):
    headers = bearer(create_access_token(identity=people.citizen))
    assert_problem(client.open(path.format(link_id), method=method, headers=headers), 404)


def protected_calls():
    """Every endpoint behind a token, with a body it would accept and the kind of token it takes."""
    calls = [("GET", "/api/v1/me", None), ("GET", "/api/v1/guardians", None),
             ("POST", f"/api/v1/guardians/{UNKNOWN_ID}/accept", None),
             ("DELETE", f"/api/v1/guardians/{UNKNOWN_ID}", None)]
    calls += [(method, path, body) for method, path, who, body in BODIES.values() if who]
    return [(m, p, b, "access") for m, p, b in calls] + [
        ("POST", "/api/v1/auth/refresh", None, "refresh"), ("POST", "/api/v1/auth/logout", None, "refresh")]


def bad_tokens(db, people, kind: str) -> dict:
    """Authorization headers that must all be refused with 401, for an endpoint taking this kind of token."""
    make = create_refresh_token if kind == "refresh" else create_access_token
    other = create_access_token if kind == "refresh" else create_refresh_token
    ghost = create_user(db.session, name="떠난 사람")
    ghost_token = make(identity=ghost)
    db.session.delete(ghost)
    db.session.commit()
    forged = pyjwt.encode({"sub": str(people.admin.id), "type": kind, "jti": uuid.uuid4().hex, "fresh": False,
                           "exp": 4102444800, "role": "admin"}, "not-our-secret-" + "0123456789" * 4, algorithm="HS256")
    unsigned = pyjwt.encode({"sub": str(people.admin.id), "type": kind, "exp": 4102444800}, None, algorithm="none")
    return {
        "missing": {}, "empty-bearer": {"Authorization": "Bearer "}, "garbage": bearer("not.a.jwt"),
        "not-bearer": {"Authorization": "Basic dXNlcjpwYXNz"}, "forged": bearer(forged), "unsigned": bearer(unsigned),
        "expired": bearer(make(identity=people.admin, expires_delta=timedelta(seconds=-30))),
        "wrong-kind": bearer(other(identity=people.admin)), "deleted-user": bearer(ghost_token),
    }


TOKEN_KINDS = ["missing", "empty-bearer", "garbage", "not-bearer", "forged", "unsigned", "expired", "wrong-kind",
               "deleted-user"]


@pytest.mark.parametrize("method, path, body, kind", protected_calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_protected_endpoints_refuse_bad_tokens_with_401(client, db, people, method, path, body, kind):
    headers = bad_tokens(db, people, kind)
    for token_kind in TOKEN_KINDS:
        answer = send(client, method, path, headers=headers[token_kind], body=body)
        assert answer.status_code == 401, (token_kind, answer.get_data(as_text=True))
        assert_problem(answer, 401)
    good = remembered_refresh_token(db, people.admin) if kind == "refresh" else create_access_token(
        identity=people.admin)
    assert send(client, method, path, headers=bearer(good), body=body).status_code not in (401, 403, 422)


@pytest.mark.parametrize("role", ["citizen", "operator", "scout"])
def test_a_wrong_role_is_403(client, db, people, role):
    caller = people.citizen if role == "citizen" else create_user(db.session, role=role)
    method, path, _who, body = BODIES["admin-users"]
    assert_problem(send(client, method, path, headers=bearer(create_access_token(identity=caller)), body=body), 403)


@pytest.mark.parametrize("method, path, allowed_role", [
    ("POST", "/api/v1/sos", "citizen"), ("POST", "/api/v1/admin/users", "admin"),
    ("POST", "/api/v1/walks", "citizen"), ("POST", "/api/v1/escort/bookings", "citizen"),
])
def test_who_you_are_is_checked_before_what_you_sent(client, db, people, method, path, allowed_role):
    """A malformed body from someone without the right token or role is 401/403, not a 422 that would tell
    them how their input is judged."""
    garbage = {"lat": "nan?", "unexpected": [1, 2]}
    assert_problem(send(client, method, path, headers={}, body=garbage), 401)
    wrong = create_user(db.session, role="scout")
    assert_problem(send(client, method, path, headers=bearer(create_access_token(identity=wrong)), body=garbage),
                   403)
    right = people.admin if allowed_role == "admin" else people.citizen
    assert_problem(send(client, method, path, headers=bearer(create_access_token(identity=right)), body=garbage),
                   422)
    options = client.open(path, method="OPTIONS")  # no token needed to ask what a path allows
    assert options.status_code == 200 and method in options.headers["Allow"]


@pytest.mark.parametrize("method, path, allowed", [
    ("PATCH", "/api/v1/me", "GET"), ("PATCH", "/api/v1/guardians", "POST"), ("GET", "/api/v1/auth/login", "POST"),
    ("PUT", "/api/v1/districts/at", "GET"), ("POST", "/healthz", "GET"), ("DELETE", "/readyz", "GET"),
    ("POST", "/metrics", "GET"), ("PUT", "/api/v1/openapi.json", "GET"), ("POST", "/docs", "GET"),
])
def test_a_wrong_method_is_405_with_allow(reader, method, path, allowed):
    answer = reader.open(path, method=method)
    assert_problem(answer, 405)
    assert allowed in answer.headers["Allow"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/docs"])
def test_public_ops_pages_ignore_garbage_queries_and_tokens(reader, path):
    answer = reader.get(f"{path}?lat=NaN&x=%00&&=", headers={"Authorization": "Bearer garbage"})
    assert answer.status_code == 200


def test_an_unknown_path_is_404_problem(reader):
    assert_problem(reader.get("/api/v1/nothing-here"), 404)


def operations(spec):
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), path, shared + op.get("parameters", [])


def garbage_requests(path, params, tokens):
    """(label, path, query, headers, raw body) variants of an empty or garbage request."""
    query_names = [p["name"] for p in params if p["in"] == "query"]
    idents = ("garbage", UNKNOWN_ID, "0") if any(p["in"] == "path" for p in params) else ("-",)
    for ident in idents:
        concrete = path
        for p in params:
            if p["in"] == "path":
                concrete = concrete.replace("{%s}" % p["name"], ident)
        yield "empty", concrete, "", {}, None
        yield "garbage", concrete, "&".join(f"{n}=%00garbage" for n in query_names), bearer("garbage"), "{bad"
        # Bodies are parsed before the token is checked: these need no caller of each role.
        yield "malformed", concrete, "", bearer(tokens["citizen"]), "{bad"
        yield "deep", concrete, "", bearer(tokens["citizen"]), "[" * 5000 + "]" * 5000
        for who, token in tokens.items():
            yield f"{who}-array", concrete, "", bearer(token), "[1, 2]"
            yield f"{who}-nan", concrete, "&".join(f"{n}=NaN" for n in query_names), bearer(token), '{"x": NaN}'
            yield f"{who}-nul", concrete, "&".join(f"{n}=%00" for n in query_names), bearer(token), '{"x": "\\u0000"}'
            yield f"{who}-empty-object", concrete, "", bearer(token), "{}"


def test_no_operation_in_the_spec_answers_5xx_to_empty_or_garbage_requests(client, db, people):
    spec = client.get("/api/v1/openapi.json").json
    callers = {"citizen": people.citizen, "admin": people.admin, "operator": create_user(db.session, role="operator")}
    tokens = {role: create_access_token(identity=user) for role, user in callers.items()}
    failures, seen = [], 0
    for method, path, params in operations(spec):
        for label, concrete, query, headers, raw in garbage_requests(path, params, tokens):
            answer = send(client, method, f"{concrete}?{query}" if query else concrete, headers=headers, raw=raw)
            db.session.rollback()  # a failure must not poison the next request's session
            seen += 1
            if answer.status_code >= 500 or (answer.status_code >= 400 and answer.content_type != PROBLEM):
                failures.append((method, concrete, label, answer.status_code, answer.get_data(as_text=True)[:200]))
    assert seen > 200 and failures == []
