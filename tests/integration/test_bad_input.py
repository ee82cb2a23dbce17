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
from safety_api.clock import utcnow
from safety_api.errors import to_problem
from safety_api.models import Incident
from safety_api.services import accounts, fixes
from tests.factories import GWANAK, PASSWORD, auth_header, create_user

PROBLEM = "application/problem+json"
CITIZEN_PHONE, FRIEND_PHONE = "01055550009", "01055550003"
UNKNOWN_ID = "6f1c1a4e-0000-4000-8000-000000000000"

# Each body endpoint: method, path, who calls it, and a body it accepts.
BODIES = {
    "register": ("POST", "/api/v1/auth/register", None,
                 {"phone": "010-5555-0001", "password": "long-enough-1", "name": "김안심"}),
    "login": ("POST", "/api/v1/auth/login", None, {"phone": CITIZEN_PHONE, "password": PASSWORD}),
    "pins": ("PUT", "/api/v1/me/pins", "citizen", {"cancel_pin": "1234", "duress_pin": "5678", "password": PASSWORD}),
    "admin-users": ("POST", "/api/v1/admin/users", "admin", {
        "phone": "010-5555-0002", "password": PASSWORD, "name": "관제요원", "role": "operator",
        "district": GWANAK}),
    "devices": ("POST", "/api/v1/devices", "citizen", {"token": "fcm-token-0001", "platform": "android"}),
    "guardians": ("POST", "/api/v1/guardians", "citizen", {"phone": FRIEND_PHONE}),
}
VALID_STATUS = {"register": 201, "login": 200, "pins": 204, "admin-users": 201, "devices": 201, "guardians": 201}
# Strings with no length limit accept a long value (a password is checked, not validated: a long one is wrong).
NO_LENGTH_LIMIT = {("login", "password"): 401, ("pins", "password"): 401}
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
        # A body the server cannot read as JSON is refused as such, never read as an empty object.
        ("not-json-content-type", {"raw": json.dumps(body), "content_type": "text/plain"}, 415, set()),
        ("form-content-type", {"raw": json.dumps(body), "content_type": "application/x-www-form-urlencoded"},
         415, set()),
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


# --- fixes, bells and content types ----------------------------------------------------------------------

HUGE = "1" + "0" * 400  # a JSON integer no float can hold: 10**400


def fix_now(lat=37.4705, lon=126.9190, **extra) -> dict:
    return {"lat": lat, "lon": lon, "accuracy_m": 8, "t": utcnow().isoformat(), **extra}


@pytest.fixture
def fixes_url(client, db):
    """POST .../fixes of a fresh SOS or walk, and the headers of the person who may send them."""
    def make(kind):
        citizen = create_user(db.session, name="보행자")
        headers = bearer(create_access_token(identity=citizen))
        if kind == "sos":
            made = client.post("/api/v1/sos", json={"lat": 37.4705, "lon": 126.9190}, headers=headers)
            return f"/api/v1/sos/{made.json['incident']['id']}/fixes", headers
        made = client.post("/api/v1/walks", json={"from": {"lat": 37.4705, "lon": 126.9190},
                                                 "to": {"lat": 37.4650, "lon": 126.9260}}, headers=headers)
        assert made.status_code == 201, made.json
        return f"/api/v1/walks/{made.json['id']}/fixes", headers
    return make


@pytest.mark.parametrize("kind", ["sos", "walk"])
def test_a_huge_integer_in_a_fix_rejects_that_fix_and_keeps_the_others(client, fixes_url, kind):
    url, headers = fixes_url(kind)
    good = fix_now()
    raw = json.dumps({"fixes": [good, "LAT", "LON", "ACC", "T"]})
    for name, field in (("LAT", "lat"), ("LON", "lon"), ("ACC", "accuracy_m"), ("T", "t")):
        raw = raw.replace(f'"{name}"', json.dumps(fix_now(**{field: "HUGE"})).replace('"HUGE"', HUGE))
    answer = send(client, "POST", url, headers=headers, raw=raw)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert (answer.json["accepted"], answer.json["rejected"]) == (1, 4)
    assert [e["index"] for e in answer.json["errors"]] == [1, 2, 3, 4]
    assert all(e["reason"] for e in answer.json["errors"])


@pytest.mark.parametrize("kind", ["sos", "walk"])
def test_a_fix_sent_twice_in_a_batch_is_a_duplicate_and_a_moved_one_is_rejected(client, fixes_url, kind):
    url, headers = fixes_url(kind)
    fix = fix_now()
    moved = {**fix, "lat": fix["lat"] + 0.001}  # the same moment somewhere else: one of them is wrong
    answer = send(client, "POST", url, headers=headers, body={"fixes": [fix, fix, moved]})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert {k: answer.json[k] for k in ("accepted", "duplicates", "rejected")} == {
        "accepted": 1, "duplicates": 1, "rejected": 1}
    assert [e["index"] for e in answer.json["errors"]] == [2]


def test_an_identical_repeat_is_valid_and_stored_once_and_a_moved_one_is_rejected(client, db):
    """What escorts use (fixes.store), and what every kind of fix shares (fixes.validate)."""
    fix = fix_now()
    valid, rejected = fixes.validate([fix, fix, {**fix, "lat": fix["lat"] + 0.001}], now=utcnow())
    assert len(valid) == 2 and valid[0] == valid[1]
    assert [r["index"] for r in rejected] == [2] and "another point" in rejected[0]["reason"]
    scout = create_user(db.session, role="scout", district=GWANAK)
    fresh = fixes.store(db.session, subject_kind="escort", subject_id=uuid.uuid4(), user_id=scout.id, fixes=valid)
    assert fresh == valid[:1]  # the repeat is the answer's one duplicate: len(valid) - len(fresh)


def test_fix_validation_survives_any_number(app):
    raw = [{"lat": 10 ** 400, "lon": 126.9}, {"lat": 37.4, "lon": -(10 ** 400)},
           {"lat": 37.4, "lon": 126.9, "accuracy_m": 10 ** 400}, {"lat": 37.4, "lon": 126.9, "t": 10 ** 400},
           {"lat": 37.4, "lon": 126.9}]
    valid, rejected = fixes.validate(raw, now=utcnow())
    assert len(valid) == 1 and [r["index"] for r in rejected] == [0, 1, 2, 3]


@pytest.fixture
def bell_key(client, people):
    made = client.post("/api/v1/admin/bell-devices", headers=bearer(create_access_token(identity=people.admin)),
                       json={"name": "신림동 비상벨", "lat": 37.4705, "lon": 126.9190})
    assert made.status_code == 201, made.json
    return made.json["api_key"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_bell_body_that_is_not_json_is_415_and_raises_nothing(client, db, bell_key, content_type):
    """A point sent in a body the server cannot read as JSON was dropped for the device's place: now refused."""
    raw = json.dumps({"lat": 37.4650, "lon": 126.9260})
    answer = client.post("/api/v1/bells/sos", data=raw, headers={"X-Device-Key": bell_key},
                         content_type=content_type)
    assert_problem(answer, 415)
    assert db.session.query(Incident).count() == 0


def test_a_bell_with_a_json_point_raises_there(client, db, bell_key):
    answer = send(client, "POST", "/api/v1/bells/sos", headers={"X-Device-Key": bell_key},
                  body={"lat": 37.4650, "lon": 126.9260})
    assert answer.status_code == 201, answer.json
    incident = db.session.get(Incident, answer.json["incident"]["id"])
    assert incident.location is not None


@pytest.mark.parametrize("headers", [{}, {"X-Device-Key": "wrong"}])
@pytest.mark.parametrize("raw, content_type", [('{"lat": "x"}', "application/json"), ("{bad", "application/json"),
                                               ('{"lat": 37.4}', "text/plain")])
def test_the_bell_checks_its_key_before_it_reads_the_body(client, db, headers, raw, content_type):
    assert_problem(client.post("/api/v1/bells/sos", data=raw, headers=headers, content_type=content_type), 401)


@pytest.mark.parametrize("body, missing", [({"lat": 37.4650}, "lon"), ({"lon": 126.9260}, "lat"),
                                           ({"lat": 37.4650, "lon": None}, "lon")])
def test_a_bell_sending_one_coordinate_is_422_naming_the_other_and_raises_nothing(client, db, bell_key, body,
                                                                               missing):
    """One coordinate alone was dropped without a word and the alarm raised at the bell's registered place: a
    device sending its own position has a fault worth knowing of, and its place may be wrong."""
    answer = send(client, "POST", "/api/v1/bells/sos", headers={"X-Device-Key": bell_key}, body=body)
    assert_problem(answer, 422, {missing})
    assert db.session.query(Incident).count() == 0


def test_the_bell_judges_the_body_once_its_key_is_good(client, bell_key):
    assert_problem(send(client, "POST", "/api/v1/bells/sos", headers={"X-Device-Key": bell_key},
                        body={"lat": "x"}), 422, {"lat"})


def test_requests_without_a_body_need_no_content_type(client, db, people):
    """The JSON rule is about bodies: a bodiless POST, or a GET with a stray Content-Type, is served."""
    token = remembered_refresh_token(db, people.citizen)
    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    answer = client.get("/api/v1/me", headers={**bearer(create_access_token(identity=people.citizen)),
                                               "Content-Type": "text/plain"})
    assert answer.status_code == 200


def test_a_caller_without_a_token_learns_401_not_415(client):
    answer = client.post("/api/v1/sos", data="lat=1", content_type="application/x-www-form-urlencoded")
    assert_problem(answer, 401)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
def test_json_content_types_with_parameters_or_suffixes_are_json(client, content_type):
    answer = client.post("/api/v1/auth/login", data=json.dumps({"phone": CITIZEN_PHONE, "password": "x" * 12}),
                         content_type=content_type)
    assert answer.status_code == 401, answer.get_data(as_text=True)


@pytest.mark.parametrize("sid", ["district:11620", "districts", "central", "user:" + str(uuid.uuid4())])
def test_a_console_heartbeat_goes_to_a_socket_never_to_a_named_room(client, db, sid):
    """The echo is emitted to the room its `sid` names: before, an operator could send it to every console of a
    district, of every district, or to a person's phones."""
    operator = create_user(db.session, role="operator")
    answer = client.post("/api/v1/console/heartbeat", headers=auth_header(operator), json={"sid": sid, "nonce": "n"})
    assert answer.status_code == 422 and "sid" in json.dumps(answer.json)


@pytest.mark.parametrize("trigger", ["device", "walk_escalation"])
def test_a_phone_may_not_send_the_triggers_of_a_bell_or_of_the_server(client, db, trigger):
    """Before, a phone could raise an SOS marked `walk_escalation` with no walk at all: operators would look for a
    walk that never was."""
    citizen = create_user(db.session)
    answer = client.post("/api/v1/sos", headers={**auth_header(citizen), "Idempotency-Key": uuid.uuid4().hex},
                         json={"lat": 37.4705, "lon": 126.9190, "trigger": trigger})
    assert answer.status_code == 422 and "trigger" in json.dumps(answer.json)
