"""Who may do what: every endpoint and Socket.IO event x every role x own, another's and another district's resource.

Each row names an operation, the resource its path points at and the answer each caller (column) must get. Every
cell gets a fresh resource of a fresh `owner`, so a cell that changes state (ack, cancel, finish) never decides the
next cell's answer. `owner` is the citizen whose SOS, walk, escort and guardian link it is, all in 관악구 (11620);
`other` is another citizen; `op` and `scout` work in 관악구, `op_far` and `scout_far` in 강남구 (11680); `scout` is
one of the pair once a booking has one. Rows for lists name the callers who must not find the resource's id in
the answer. A new operation in the OpenAPI document fails the coverage test until it has a row.

Guessing is rate-limited where it matters, and tested there: logins in
test_accounts.py::test_login_is_rate_limited_per_phone and ::test_login_is_rate_limited_per_address, the password
that confirms new PINs in ::test_setting_pins_is_rate_limited_as_logins_are, the current password that confirms a
new one in ::test_a_password_change_is_rate_limited_as_logins_are, and a deletion in
test_privacy.py::test_the_password_asked_to_delete_the_account_is_limited_as_logins_are, cancel PINs
in test_sos.py::test_wrong_pins_are_refused_alike_and_rate_limited, guardian invites (which tell a registered phone
from an unknown one) in test_devices_guardians.py::test_invites_are_rate_limited_per_inviter.
"""
import itertools
import json
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace

import pytest
from flask_jwt_extended import create_access_token
from flask_socketio import SocketIO
from socketio import packet
from sqlalchemy import delete, select

from safety_api.clock import SEOUL, utcnow
from safety_api.models import MeetingPoint, ProtectedPerson
from safety_api.realtime import register_namespaces
from safety_api.services.escort_rules import policy_from_config
from tests.factories import create_user
from tests.support.access import (
    GANGNAM,
    GWANAK,
    HOME_TO,
    IN_GWANAK,
    NEAR_SEOWON,
    OPEN_SERVICE,
    SEOWON,
    credentials,
    for_cell,
    make_resource,
    protect_in_gwanak,
)

COLUMNS = ("anon", "owner", "other", "op", "op_far", "scout", "scout_far", "admin")
_phones = itertools.count(20000000)


def codes(text: str) -> dict:
    """'401 200 ...' in COLUMNS order -> {column: status}."""
    return dict(zip(COLUMNS, (int(v) for v in text.split()), strict=True))


def fresh_phone() -> str:
    return f"010{next(_phones):08d}"


@dataclass
class Row:
    """One operation: what it is called with, the resource it is about, and each caller's answer."""

    method: str
    path: str
    expect: str
    resource: str | None = None  # a kind from RESOURCES; its id fills the path's one placeholder
    body: object = None  # a dict, or fn(people, caller, resource_id) -> dict
    query: str = ""
    token: str = "access"  # or "refresh", or "bell" (X-Device-Key instead of a bearer token)
    private: tuple = ()  # callers whose answer must not mention the resource's id (lists)
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}{' ' + self.note if self.note else ''}"


def _me(people, caller, _rid):
    return getattr(people, caller if caller != "anon" else "owner")


ROWS = [
    # accounts
    Row("POST", "/api/v1/auth/register", "201 201 201 201 201 201 201 201",
        body=lambda p, c, r: {"phone": fresh_phone(), "password": "long-enough-1", "name": "새 시민"}),
    Row("POST", "/api/v1/auth/login", "200 200 200 200 200 200 200 200",
        body=lambda p, c, r: {"phone": _me(p, c, r).phone, "password": "correct-horse-1"}),
    Row("POST", "/api/v1/auth/refresh", "401 200 200 200 200 200 200 200", token="refresh"),
    Row("POST", "/api/v1/auth/logout", "401 204 204 204 204 204 204 204", token="refresh"),
    Row("POST", "/api/v1/auth/logout-all", "401 204 204 204 204 204 204 204"),
    Row("GET", "/api/v1/me", "401 200 200 200 200 200 200 200"),
    Row("GET", "/api/v1/me/export", "401 200 200 200 200 200 200 200", resource="incident",
        private=("other", "op", "op_far", "scout", "scout_far", "admin")),
    Row("DELETE", "/api/v1/me", "401 204 204 409 409 409 409 409", body={"password": "correct-horse-1"}),
    Row("PUT", "/api/v1/me/duty", "401 403 403 200 200 200 200 403", body={"on_duty": True}),
    Row("PUT", "/api/v1/me/pins", "401 204 204 204 204 204 204 204",
        body={"cancel_pin": "1234", "duress_pin": "5678", "password": "correct-horse-1"}),
    Row("PUT", "/api/v1/me/password", "401 204 204 204 204 204 204 204",
        body={"password": "correct-horse-1", "new_password": "another-horse-2"}),
    Row("POST", "/api/v1/admin/users", "401 403 403 403 403 403 403 201",
        body=lambda p, c, r: {"phone": fresh_phone(), "password": "long-enough-1", "name": "관제",
                              "role": "operator", "district": GWANAK}),
    # staff accounts (admins only); citizens are not staff accounts
    Row("GET", "/api/v1/admin/users", "401 403 403 403 403 403 403 200", resource="staff"),
    Row("GET", "/api/v1/admin/users/{user_id}", "401 403 403 403 403 403 403 200", resource="staff"),
    Row("GET", "/api/v1/admin/users/{user_id}", "401 403 403 403 403 403 403 404", resource="citizen",
        note="a citizen"),
    Row("POST", "/api/v1/admin/users/{user_id}/suspend", "401 403 403 403 403 403 403 200", resource="staff",
        body={"reason": "점검"}),
    Row("POST", "/api/v1/admin/users/{user_id}/suspend", "401 403 403 403 403 403 403 404", resource="citizen",
        body={"reason": "점검"}, note="a citizen"),
    Row("POST", "/api/v1/admin/users/{user_id}/reinstate", "401 403 403 403 403 403 403 200", resource="staff",
        body={"reason": "점검"}),
    Row("PATCH", "/api/v1/admin/users/{user_id}", "401 403 403 403 403 403 403 200", resource="staff",
        body={"district": GANGNAM, "reason": "발령"}),
    Row("PUT", "/api/v1/admin/users/{user_id}/password", "401 403 403 403 403 403 403 200", resource="staff",
        body={"password": "another-horse-2", "reason": "분실"}),
    Row("PUT", "/api/v1/admin/users/{user_id}/password", "401 403 403 403 403 403 403 404", resource="citizen",
        body={"password": "another-horse-2", "reason": "분실"}, note="a citizen"),
    Row("POST", "/api/v1/devices", "401 201 201 201 201 201 201 201",
        body=lambda p, c, r: {"token": f"fcm-{c}-{fresh_phone()}", "platform": "android"}),
    # guardians: the link's guardian is `owner`, invited by a third person
    Row("POST", "/api/v1/guardians", "401 201 201 201 201 201 201 201", body=lambda p, c, r: {"phone": p.friend.phone}),
    Row("GET", "/api/v1/guardians", "401 200 200 200 200 200 200 200", resource="link",
        private=("other", "op", "op_far", "scout", "scout_far", "admin")),
    Row("POST", "/api/v1/guardians/{link_id}/accept", "401 200 404 404 404 404 404 404", resource="link"),
    Row("DELETE", "/api/v1/guardians/{link_id}", "401 204 404 404 404 404 404 404", resource="link"),
    # ... and a link `owner` sent to `other`: only the invited side accepts; either side ends it
    Row("POST", "/api/v1/guardians/{link_id}/accept", "401 404 200 404 404 404 404 404", resource="link_sent",
        note="sent by owner"),
    Row("DELETE", "/api/v1/guardians/{link_id}", "401 204 204 404 404 404 404 404", resource="link_sent",
        note="sent by owner"),
    # public geodata
    Row("GET", "/api/v1/districts/at", "200 200 200 200 200 200 200 200", query="lat=37.4784&lon=126.9516"),
    Row("GET", "/api/v1/facilities", "200 200 200 200 200 200 200 200", query="lat=37.4705&lon=126.919"),
    Row("GET", "/api/v1/routes", "200 200 200 200 200 200 200 200", query="from=37.4705,126.919&to=37.465,126.926"),
    Row("GET", "/healthz", "200 200 200 200 200 200 200 200"),
    Row("GET", "/readyz", "200 200 200 200 200 200 200 200"),
    # SOS: the caller's side
    Row("POST", "/api/v1/sos", "401 201 201 403 403 403 403 403", body=IN_GWANAK),
    Row("POST", "/api/v1/bells/sos", "201 201 201 201 201 201 201 201", token="bell", body={}, note="with its key"),
    Row("POST", "/api/v1/bells/sos", "401 401 401 401 401 401 401 401", body={}, note="without a key"),
    Row("POST", "/api/v1/sos/{incident_id}/fixes", "401 200 404 403 403 403 403 403", resource="incident",
        body=lambda p, c, r: {"fixes": [{**IN_GWANAK, "accuracy_m": 8, "t": utcnow().isoformat()}]}),
    Row("POST", "/api/v1/sos/{incident_id}/cancel", "401 200 404 403 403 403 403 403", resource="incident",
        body={"pin": "1234"}),
    Row("GET", "/api/v1/sos/{incident_id}", "401 200 404 403 403 403 403 403", resource="incident"),
    # SOS: the operators' side
    Row("GET", "/api/v1/incidents", "401 403 403 200 200 403 403 200", resource="incident", private=("op_far",)),
    Row("GET", "/api/v1/incidents/{incident_id}", "401 403 403 200 403 403 403 200", resource="incident"),
    Row("POST", "/api/v1/incidents/{incident_id}/ack", "401 403 403 200 403 403 403 200", resource="incident"),
    Row("POST", "/api/v1/incidents/{incident_id}/dispatch", "401 403 403 200 403 403 403 200", resource="incident",
        body={"agency": "관악경찰서"}),
    Row("POST", "/api/v1/incidents/{incident_id}/resolve", "401 403 403 200 403 403 403 200", resource="incident",
        body={"outcome": "resolved"}),
    # protected persons: any operator may protect a citizen; only the protecting district (or admins) change it
    Row("PUT", "/api/v1/protected-persons/{user_id}", "401 403 403 200 200 403 403 200", resource="citizen",
        body={"agency": "관악경찰서", "case_reference": "2026-0001"}, note="new"),
    Row("PUT", "/api/v1/protected-persons/{user_id}", "401 403 403 200 403 403 403 200", resource="protected",
        body={"agency": "강남경찰서", "case_reference": "2026-0002", "contact_phones": ["01099990000"]},
        note="protected by 관악구"),
    Row("DELETE", "/api/v1/protected-persons/{user_id}", "401 403 403 204 403 403 403 204", resource="protected"),
    # ... and read by those who may change it; the person is never told (whoever holds the phone may be the
    # one it protects against)
    Row("GET", "/api/v1/protected-persons/{user_id}", "401 403 403 200 403 403 403 200", resource="protected"),
    Row("GET", "/api/v1/protected-persons/{user_id}", "401 403 403 404 404 403 403 404", resource="citizen",
        note="not protected"),
    Row("POST", "/api/v1/admin/bell-devices", "401 403 403 403 403 403 403 201",
        body={"name": "안심벨", **IN_GWANAK}),
    # bells are registered, listed and revoked centrally; operators see a bell's name on its alarms
    Row("GET", "/api/v1/admin/bell-devices", "401 403 403 403 403 403 403 200", resource="bell"),
    Row("DELETE", "/api/v1/admin/bell-devices/{device_id}", "401 403 403 403 403 403 403 204", resource="bell"),
    # escort
    Row("GET", "/api/v1/escort/meeting-points", "401 200 200 200 200 200 200 200"),
    Row("POST", "/api/v1/escort/meeting-points", "401 403 403 403 403 403 403 201",
        body={"name": "신림역 3번 출구", "kind": "station", "location": {"lat": 37.4842, "lon": 126.9297}}),
    Row("PATCH", "/api/v1/escort/meeting-points/{point_id}", "401 403 403 403 403 403 403 200", resource="point",
        body={"active": False}),
    Row("POST", "/api/v1/escort/bookings", "401 201 201 403 403 403 403 403",
        body=lambda p, c, r: {"meeting_point_id": str(p.seowon), "to": NEAR_SEOWON,
                              "meet_at": (utcnow() + timedelta(hours=1)).astimezone(SEOUL).isoformat()}),
    Row("GET", "/api/v1/escort/bookings", "401 200 200 200 200 200 200 200", resource="booking",
        private=("other", "op_far", "scout", "scout_far")),
    # a citizen gets 404 for another's booking, as for a missing one (ids cannot be probed); staff of another
    # district 403. The district's on-duty scouts read an open booking as an offer (no destination, no name).
    Row("GET", "/api/v1/escort/bookings/{booking_id}", "401 200 404 200 403 200 403 200", resource="booking",
        note="requested"),
    Row("GET", "/api/v1/escort/bookings/{booking_id}", "401 200 404 200 403 200 403 200", resource="confirmed",
        note="confirmed, scout in the pair"),
    Row("POST", "/api/v1/escort/bookings/{booking_id}/accept", "401 403 403 403 403 200 403 403", resource="booking"),
    Row("POST", "/api/v1/escort/bookings/{booking_id}/start", "401 403 403 200 403 200 403 200", resource="confirmed"),
    Row("POST", "/api/v1/escort/bookings/{booking_id}/complete", "401 403 403 200 403 200 403 200",
        resource="in_progress"),
    Row("POST", "/api/v1/escort/bookings/{booking_id}/no-show", "401 403 403 200 403 200 403 200", resource="due"),
    Row("POST", "/api/v1/escort/bookings/{booking_id}/cancel", "401 200 404 200 403 403 403 200", resource="booking"),
    Row("POST", "/api/v1/escort/bookings/{booking_id}/fixes", "401 403 403 403 403 200 403 403",
        resource="in_progress", body=lambda p, c, r: {"fixes": [{**NEAR_SEOWON, "t": utcnow().isoformat()}]}),
    Row("GET", "/api/v1/escort/offers", "401 403 403 403 403 200 200 403", resource="booking",
        private=("scout_far",)),
    Row("PUT", "/api/v1/escort/duty", "401 403 403 403 403 200 200 403", body={"on_duty": True}),
    # console layers (operators and admins; the layers are public data)
    Row("GET", "/api/v1/districts/{code}", "401 403 403 200 200 403 403 200", resource="district"),
    Row("GET", "/api/v1/layers/streets", "401 403 403 200 200 403 403 200", query="bbox=126.91,37.46,126.92,37.47"),
    Row("GET", "/api/v1/layers/facilities", "401 403 403 200 200 403 403 200", query=f"kind=bell&district={GWANAK}"),
    Row("GET", "/api/v1/console/config", "401 403 403 200 200 403 403 200"),
    Row("POST", "/api/v1/console/heartbeat", "401 403 403 204 204 403 403 204",
        body={"sid": "Qx3k9PzL2mN8vB4tR6yW", "nonce": "n1"}),
    # walks: the walker; operators only once it became an SOS of their district
    Row("POST", "/api/v1/walks", "401 201 201 403 403 403 403 403", body={"from": IN_GWANAK, "to": HOME_TO}),
    Row("POST", "/api/v1/walks", "401 422 422 403 403 403 403 403", note="watched by a stranger",
        body=lambda p, c, r: {"from": IN_GWANAK, "to": HOME_TO, "guardian_ids": [str(p.friend.id)]}),
    Row("POST", "/api/v1/walks/{walk_id}/fixes", "401 200 404 404 404 404 404 404", resource="walk",
        body=lambda p, c, r: {"fixes": [{**IN_GWANAK, "accuracy_m": 8, "t": utcnow().isoformat()}]}),
    Row("POST", "/api/v1/walks/{walk_id}/checkin", "401 200 404 404 404 404 404 404", resource="walk",
        body={"ok": True}),
    Row("POST", "/api/v1/walks/{walk_id}/finish", "401 200 404 404 404 404 404 404", resource="walk"),
    Row("GET", "/api/v1/walks/{walk_id}", "401 200 404 404 404 404 404 404", resource="walk", note="active"),
    Row("GET", "/api/v1/walks/{walk_id}", "401 200 200 404 404 404 404 404", resource="guarded_walk",
        note="other is a chosen guardian"),
    Row("GET", "/api/v1/walks/{walk_id}", "401 200 404 404 404 404 404 404", resource="unchosen_walk",
        note="other guards the walker but was not chosen"),
    Row("GET", "/api/v1/walks/{walk_id}", "401 200 404 200 404 404 404 200", resource="escalated_walk",
        note="escalated"),
]

# Socket.IO: (namespace, event or None for the connect itself, resource, payload fn, answers).
# An event's answer is 200 for an ack without an error, else the error's status; 401 where no socket opens.
SOCKET_ROWS = [
    ("/control", None, None, None, "401 403 403 200 200 403 403 200"),
    ("/mobile", None, None, None, "401 200 200 200 200 200 200 200"),
    ("/mobile", "location", "incident", lambda rid: {"kind": "sos", "id": rid, "fixes": [_fix(IN_GWANAK)]},
     "401 200 404 404 404 404 404 404"),
    ("/mobile", "location", "walk", lambda rid: {"kind": "walk", "id": rid, "fixes": [_fix(IN_GWANAK)]},
     "401 200 404 404 404 404 404 404"),
    ("/mobile", "location", "in_progress", lambda rid: {"kind": "escort", "id": rid, "fixes": [_fix(NEAR_SEOWON)]},
     "401 403 403 403 403 200 403 403"),
    ("/mobile", "watch", "walk", lambda rid: {"walk_id": rid}, "401 200 404 404 404 404 404 404"),
    ("/mobile", "watch", "guarded_walk", lambda rid: {"walk_id": rid}, "401 200 200 404 404 404 404 404"),
    ("/mobile", "watch", "unchosen_walk", lambda rid: {"walk_id": rid}, "401 200 404 404 404 404 404 404"),
]


def _fix(point) -> dict:
    return {**point, "accuracy_m": 8, "t": utcnow().isoformat()}


# --- people and resources -------------------------------------------------------------------------------

@pytest.fixture
def open_service(app, monkeypatch):
    monkeypatch.setitem(app.config, "ESCORT_POLICY", policy_from_config({**app.config, **OPEN_SERVICE}))


@pytest.fixture
def people(app, db, redis_client, open_service):
    session = db.session
    made = {"other": create_user(session, name="이웃"),
            "op": create_user(session, role="operator", district=GWANAK, name="관악 관제"),
            "op_far": create_user(session, role="operator", district=GANGNAM, name="강남 관제"),
            "scout": create_user(session, role="scout", district=GWANAK, name="관악 스카우트"),
            "scout_far": create_user(session, role="scout", district=GANGNAM, name="강남 스카우트"),
            "admin": create_user(session, role="admin", name="관리자"),
            "friend": create_user(session, name="친구"),
            "partner": create_user(session, role="scout", district=GWANAK, name="짝 스카우트")}
    for who in ("scout", "scout_far", "partner"):
        made[who].on_duty = True
    session.commit()
    seowon = session.scalar(select(MeetingPoint.id).where(MeetingPoint.source_id == SEOWON))
    yield SimpleNamespace(ids={name: user.id for name, user in made.items()}, seowon=seowon,
                          slots=itertools.count())
    session.rollback()
    session.execute(delete(MeetingPoint).where(MeetingPoint.source_id.is_(None)))
    session.commit()


def fill(path: str, resource_id) -> str:
    if "{" not in path:
        return path
    head, rest = path.split("{", 1)
    return head + str(resource_id) + rest.split("}", 1)[1]


def call(client, app, db, people, row: Row, caller: str):
    """One cell: a fresh resource, the caller's credentials, the request; returns (status, body text, id)."""
    people = for_cell(db, people)
    _thing, rid = make_resource(app, db, people, row.resource)
    body = row.body(people, caller, rid) if callable(row.body) else row.body
    url = fill(row.path, rid) + (f"?{row.query}" if row.query else "")
    answer = client.open(url, method=row.method, headers=credentials(db, people, caller, row.token),
                         data=None if body is None else json.dumps(body),
                         content_type="application/json" if body is not None else None)
    db.session.rollback()
    return answer.status_code, answer.get_data(as_text=True), rid


# --- the REST matrix ------------------------------------------------------------------------------------

def spec_operations(client) -> set:
    spec = client.get("/api/v1/openapi.json").get_json()
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


def test_the_matrix_covers_every_operation_in_the_spec(client):
    operations = spec_operations(client)
    listed = {(row.method, row.path) for row in ROWS}
    assert sorted(operations - listed) == [], "operations without a row in the access matrix"
    assert sorted(listed - operations) == [], "rows for operations the app does not serve"


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_each_caller_gets_the_answer_of_its_cell(app, client, db, people, row):
    if (row.method, row.path) not in spec_operations(client):
        pytest.skip("the app does not serve this operation (the coverage test lists it)")
    got, leaks = {}, []
    for caller in COLUMNS:
        status, text, rid = call(client, app, db, people, row, caller)
        got[caller] = status
        if caller in row.private and rid and rid in text:
            leaks.append(caller)
    assert got == codes(row.expect)
    assert leaks == [], "these callers were shown a resource that is not theirs"


def test_a_citizen_under_protection_elsewhere_cannot_be_rewritten_by_a_stranger_district(app, client, db, people):
    people = for_cell(db, people)
    protect_in_gwanak(db, people)
    answer = client.put(f"/api/v1/protected-persons/{people.owner.id}", json={
        "agency": "가짜", "case_reference": "x", "contact_phones": ["01099990000"]},
        headers=credentials(db, people, "op_far", "access"))
    assert answer.status_code == 403
    db.session.expire_all()
    record = db.session.get(ProtectedPerson, people.owner.id)
    assert (record.agency, record.contact_phones) == ("관악경찰서", [])


# --- Socket.IO ------------------------------------------------------------------------------------------

@pytest.fixture
def sockets(app):
    """An in-process Socket.IO server on the app, without the message queue (Flask-SocketIO's test client
    refuses one); the app's own server and WSGI stack are put back afterwards."""
    saved = app.wsgi_app, app.extensions.get("socketio")
    server = SocketIO()
    server.init_app(app, async_mode="threading", message_queue=None, logger=False, engineio_logger=False)
    register_namespaces(server)
    yield server
    app.wsgi_app, app.extensions["socketio"] = saved


def socket_answer(app, server, people, caller, namespace, event, payload) -> int:
    """Connect as the caller, then emit the event; 200 for a connection or an ack without error, else the
    status of the refusal's or the ack's problem."""
    token = None if caller == "anon" else create_access_token(identity=getattr(people, caller))
    client = server.test_client(app)  # on "/", so the refusal below can be caught on its way out
    refusals = []
    send = server.server._send_packet

    def capture(eio_sid, pkt):
        if pkt.packet_type == packet.CONNECT_ERROR:
            refusals.append(pkt.data)
        send(eio_sid, pkt)
    server.server._send_packet = capture
    client.connect(namespace, auth={"token": token} if token else None)
    if not client.is_connected(namespace):
        return refusals[0]["data"]["status"]
    try:
        if event is None:
            return 200
        ack = client.emit(event, payload, namespace=namespace, callback=True)
        return ack["error"]["status"] if isinstance(ack, dict) and "error" in ack else 200
    finally:
        client.disconnect(namespace)


@pytest.mark.parametrize("namespace, event, resource, payload, expect", SOCKET_ROWS,
                         ids=[f"{r[0]} {r[1] or 'connect'} {r[2] or ''}".strip() for r in SOCKET_ROWS])
def test_each_caller_gets_the_socket_answer_of_its_cell(app, db, people, sockets, namespace, event, resource,
                                                        payload, expect):
    got = {}
    for caller in COLUMNS:
        cell = for_cell(db, people)
        _thing, rid = make_resource(app, db, cell, resource)
        got[caller] = socket_answer(app, sockets, cell, caller, namespace, event, payload(rid) if payload else None)
        db.session.rollback()
    assert got == codes(expect)
