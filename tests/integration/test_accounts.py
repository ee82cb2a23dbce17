"""Accounts over HTTP on the real database and Redis."""
import threading

import pytest
from flask_jwt_extended import decode_token
from sqlalchemy import select, text

from safety_api.errors import Unauthorized
from safety_api.models import PushDevice, User
from safety_api.services import accounts, devices
from tests.conftest import another_app
from tests.factories import PASSWORD, auth_header, create_user

PROBLEM = "application/problem+json"


def register(client, phone="010-1234-5678", password="s3cret-pass", name="김안심", environ=None):
    return client.post("/api/v1/auth/register", json={"phone": phone, "password": password, "name": name},
                       environ_base=environ or {})


def test_register_login_refresh_me(client):
    created = register(client)
    assert created.status_code == 201
    assert created.json["user"]["phone"] == "01012345678"
    assert created.json["user"]["role"] == "citizen"

    login = client.post("/api/v1/auth/login", json={"phone": "01012345678", "password": "s3cret-pass"})
    assert login.status_code == 200
    access, refresh = login.json["access_token"], login.json["refresh_token"]

    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"})
    assert me.json == {"id": created.json["user"]["id"], "phone": "01012345678", "name": "김안심",
                       "role": "citizen", "district": None}

    renewed = client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {refresh}"})
    assert renewed.status_code == 200 and renewed.json["access_token"]


def test_a_name_is_trimmed_and_never_blank(client):
    blank = register(client, name="   ")
    assert blank.status_code == 422 and blank.content_type == PROBLEM
    assert [e["field"] for e in blank.json["errors"]] == ["name"]
    assert register(client, name="  김안심 ").json["user"]["name"] == "김안심"


def test_register_twice_is_409(client):
    assert register(client).status_code == 201
    again = register(client)
    assert again.status_code == 409 and again.content_type == PROBLEM


def test_registration_is_rate_limited_per_client_address(client, app, monkeypatch):
    """Each registration hashes a password with argon2id (64 MiB) and its 409 tells a registered phone."""
    monkeypatch.setitem(app.config, "REGISTER_LIMIT_PER_ADDRESS", "3/hour")
    here, elsewhere = {"REMOTE_ADDR": "203.0.113.7"}, {"REMOTE_ADDR": "198.51.100.20"}
    answers = [register(client, phone, environ=here).status_code for phone in ("01012340001", "01012340002")]
    assert answers + [register(client, "01012340001", environ=here).status_code] == [201, 201, 409]  # counted too
    limited = register(client, "01012340003", environ=here)
    assert limited.status_code == 429 and limited.content_type == PROBLEM and int(limited.headers["Retry-After"]) >= 1
    assert register(client, "01012340003", environ=elsewhere).status_code == 201


def test_password_hashing_past_the_process_cap_waits_its_turn_then_is_a_503_to_retry(client, monkeypatch):
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(accounts, "_slots", slots)
    monkeypatch.setattr(accounts, "_slot_wait_s", 0.1)
    assert slots.acquire()  # another request is hashing
    try:
        busy = register(client, "01012340001")
        assert busy.status_code == 503 and busy.content_type == PROBLEM and busy.headers["Retry-After"] == "5"
        login = client.post("/api/v1/auth/login", json={"phone": "01012340001", "password": "s3cret-pass"})
        assert login.status_code == 503
    finally:
        slots.release()
    monkeypatch.setattr(accounts, "_slot_wait_s", 5.0)
    assert slots.acquire()
    threading.Timer(0.2, slots.release).start()  # the other hash ends while this request waits
    assert register(client, "01012340001").status_code == 201


def test_an_alarms_pins_never_wait_behind_a_flood_of_password_checks(client, db, monkeypatch):
    """Every hashing turn is taken (a burst of logins): the duress PIN still reaches the operators."""
    from safety_api.models import Incident
    citizen = create_user(db.session)
    headers = auth_header(citizen)
    assert client.put("/api/v1/me/pins", json={"cancel_pin": "1111", "duress_pin": "2222", "password": PASSWORD},
                      headers=headers).status_code == 204
    incident_id = client.post("/api/v1/sos", json={"lat": 37.4705, "lon": 126.9190}, headers=headers).json[
        "incident"]["id"]
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(accounts, "_slots", slots)
    monkeypatch.setattr(accounts, "_slot_wait_s", 0.1)
    assert slots.acquire()
    try:
        answer = client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": "2222"}, headers=headers)
    finally:
        slots.release()
    assert answer.status_code == 200 and db.session.get(Incident, incident_id).duress


def test_wrong_password_is_401_problem(client):
    register(client)
    bad = client.post("/api/v1/auth/login", json={"phone": "01012345678", "password": "nope-nope"})
    assert bad.status_code == 401 and bad.content_type == PROBLEM
    assert bad.json["status"] == 401 and "password" in bad.json["detail"]


def test_login_is_rate_limited_per_phone(client):
    register(client)
    answers = [client.post("/api/v1/auth/login", json={"phone": "01012345678", "password": "wrong-guess"}).status_code
               for _ in range(6)]
    assert answers[:5] == [401] * 5 and answers[5] == 429
    limited = client.post("/api/v1/auth/login", json={"phone": "01012345678", "password": "s3cret-pass"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def login_from(client, address, password, phone="01012345678"):
    return client.post("/api/v1/auth/login", json={"phone": phone, "password": password},
                       environ_base={"REMOTE_ADDR": address}).status_code


def test_an_attacker_hammering_an_account_is_refused_while_its_owner_elsewhere_logs_in(client):
    register(client)
    attacker, owner = "203.0.113.7", "198.51.100.20"
    assert [login_from(client, attacker, "wrong-guess") for _ in range(6)] == [401] * 5 + [429]
    assert login_from(client, owner, "s3cret-pass") == 200
    assert [login_from(client, attacker, "wrong-guess") for _ in range(3)] == [429] * 3
    assert login_from(client, owner, "s3cret-pass") == 200


def test_the_owners_success_clears_the_count_at_their_address(client):
    register(client)
    assert [login_from(client, "198.51.100.20", "typo-typo") for _ in range(4)] == [401] * 4
    assert login_from(client, "198.51.100.20", "s3cret-pass") == 200
    assert [login_from(client, "198.51.100.20", "typo-typo") for _ in range(5)] == [401] * 5


def test_wrong_passwords_spread_over_many_addresses_stay_bounded_per_phone(client, app, monkeypatch):
    """Once the account's failures fill their limit every address is refused, the right password too: a 429
    tells nothing of the password."""
    monkeypatch.setitem(app.config, "LOGIN_FAILURE_LIMIT_PER_PHONE", "8/hour")
    register(client)
    answers = [login_from(client, f"203.0.113.{n}", "wrong-guess") for n in range(1, 5) for _ in range(2)]
    assert answers == [401] * 8
    assert login_from(client, "203.0.113.99", "wrong-guess") == 429
    assert login_from(client, "198.51.100.20", "s3cret-pass") == 429


def test_the_addresses_of_one_ipv6_subscriber_count_as_one(client, app, monkeypatch):
    """A subscriber holds a whole /64: a fresh address from it is not a fresh client."""
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ADDRESS", "2/minute")
    assert [login_from(client, f"2001:db8:1:2::{n}", "whatever-1", phone=f"0107777000{n}")
            for n in range(1, 4)] == [401, 401, 429]
    assert login_from(client, "2001:db8:1:3::1", "whatever-1", phone="01077770009") == 401


def test_login_is_rate_limited_per_address(client, app):
    for i in range(30):
        client.post("/api/v1/auth/login", json={"phone": f"0109999{i:04d}", "password": "whatever-1"})
    assert client.post("/api/v1/auth/login",
                       json={"phone": "01099998888", "password": "whatever-1"}).status_code == 429


def failed_logins_from(client, forwarded_for: str, count: int) -> list:
    """Wrong passwords for as many unknown phones, through a proxy that says the client is `forwarded_for`."""
    return [client.post("/api/v1/auth/login", json={"phone": f"0108888{i:04d}", "password": "whatever-1"},
                        headers={"X-Forwarded-For": forwarded_for}).status_code for i in range(count)]


def test_behind_one_trusted_proxy_each_forwarded_client_has_its_own_address_limit(db, redis_client):
    with another_app(TRUSTED_PROXY_HOPS=1, LOGIN_LIMIT_PER_ADDRESS="2/minute") as proxied:
        nginx = proxied.test_client()
        assert failed_logins_from(nginx, "203.0.113.7", 3) == [401, 401, 429]
        assert failed_logins_from(nginx, "198.51.100.20", 2) == [401, 401]  # another client, its own bucket
        # Only the hop nginx appended counts: what the client wrote before it is not believed.
        assert failed_logins_from(nginx, "198.51.100.99, 203.0.113.7", 1) == [429]


def test_with_no_trusted_proxy_x_forwarded_for_is_ignored(client, app, monkeypatch):
    assert app.config["TRUSTED_PROXY_HOPS"] == 0  # the default
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ADDRESS", "2/minute")
    assert failed_logins_from(client, "203.0.113.7", 2) == [401, 401]
    assert failed_logins_from(client, "198.51.100.20", 1) == [429]  # a client cannot pick a fresh address


def test_logout_revokes_the_refresh_token(client):
    register(client)
    refresh = client.post("/api/v1/auth/login",
                          json={"phone": "01012345678", "password": "s3cret-pass"}).json["refresh_token"]
    bearer = {"Authorization": f"Bearer {refresh}"}
    assert client.post("/api/v1/auth/logout", headers=bearer).status_code == 204
    refused = client.post("/api/v1/auth/refresh", headers=bearer)
    assert refused.status_code == 401 and refused.content_type == PROBLEM


def sign_in(client, phone="01012345678", password="s3cret-pass") -> dict:
    tokens = client.post("/api/v1/auth/login", json={"phone": phone, "password": password}).json
    return {"access": {"Authorization": f"Bearer {tokens['access_token']}"},
            "refresh": {"Authorization": f"Bearer {tokens['refresh_token']}"}}


def test_logout_ends_that_sign_in_only(client, db):
    """A shared phone signed out: its access token (refreshed or not) and its push device stop working at once;
    the same person's other phone goes on."""
    from safety_api.models import PushDevice
    register(client)
    shared, own = sign_in(client), sign_in(client)
    renewed = client.post("/api/v1/auth/refresh", headers=shared["refresh"]).json["access_token"]
    for phone, token in ((shared, "shared-phone-token"), (own, "own-phone-token")):
        assert client.post("/api/v1/devices", headers=phone["access"],
                           json={"token": token, "platform": "android"}).status_code == 201

    assert client.post("/api/v1/auth/logout", headers=shared["refresh"]).status_code == 204
    for headers in (shared["access"], {"Authorization": f"Bearer {renewed}"}):
        refused = client.get("/api/v1/me", headers=headers)
        assert refused.status_code == 401 and refused.content_type == PROBLEM
    assert client.get("/api/v1/me", headers=own["access"]).status_code == 200
    assert client.post("/api/v1/auth/refresh", headers=own["refresh"]).status_code == 200
    assert set(db.session.scalars(select(PushDevice.token))) == {"own-phone-token"}


def test_logout_everywhere_ends_every_sign_in_and_forgets_every_device(client, db):
    from safety_api.models import PushDevice
    register(client)
    lost, new = sign_in(client), sign_in(client)
    assert client.post("/api/v1/devices", headers=lost["access"],
                       json={"token": "lost-phone-token", "platform": "ios"}).status_code == 201
    assert client.post("/api/v1/auth/logout-all", headers=new["access"]).status_code == 204
    for phone in (lost, new):
        assert client.get("/api/v1/me", headers=phone["access"]).status_code == 401
        assert client.post("/api/v1/auth/refresh", headers=phone["refresh"]).status_code == 401
    assert db.session.scalars(select(PushDevice)).all() == []
    again = sign_in(client)  # the person signs in again and goes on
    assert client.get("/api/v1/me", headers=again["access"]).status_code == 200


def test_a_device_cannot_be_registered_under_a_sign_in_that_ended(app, client, db):
    """The service itself refuses (the gate already refuses the ended sign-in's token): a registration that
    passed the gate just before the sign-out must not outlive it."""
    register(client)
    phone = sign_in(client)
    jti = decode_token(phone["refresh"]["Authorization"].split()[1])["jti"]
    assert client.post("/api/v1/auth/logout", headers=phone["refresh"]).status_code == 204
    user = db.session.scalars(select(User)).one()
    with pytest.raises(Unauthorized):
        devices.register_device(db.session, user=user, token="late-token", platform="android", sign_in=jti)
    assert db.session.scalars(select(PushDevice)).all() == []


def test_a_registration_in_flight_makes_the_sign_out_wait_and_goes_with_it(app, client, db):
    """A registration holds its sign-in FOR SHARE until it commits: the sign-out waits for it, then deletes the
    device it made."""
    register(client)
    phone = sign_in(client)
    jti = decode_token(phone["refresh"]["Authorization"].split()[1])["jti"]
    user_id = db.session.scalars(select(User.id)).one()
    db.session.commit()
    answers = []
    with db.engine.connect() as registering:  # the registration's transaction, between its check and commit
        assert registering.execute(devices._SIGN_IN_OPEN, {"jti": jti}).first()
        logout = threading.Thread(target=lambda: answers.append(
            app.test_client().post("/api/v1/auth/logout", headers=phone["refresh"]).status_code))
        logout.start()
        logout.join(1.0)
        assert logout.is_alive(), "the sign-out did not wait for the registration"
        registering.execute(text("INSERT INTO push_devices (id, user_id, token, platform, sign_in) "
                                 "VALUES (gen_random_uuid(), :u, 'in-flight', 'android', :j)"),
                            {"u": user_id, "j": jti})
        registering.commit()
    logout.join(10)
    assert answers == [204]
    db.session.expire_all()
    assert db.session.scalars(select(PushDevice)).all() == []


def test_a_refresh_token_is_not_a_way_to_log_out_everywhere(client):
    register(client)
    phone = sign_in(client)
    assert client.post("/api/v1/auth/logout-all", headers=phone["refresh"]).status_code == 401
    assert client.get("/api/v1/me", headers=phone["access"]).status_code == 200


def test_access_token_cannot_refresh_and_refresh_token_cannot_read(client, db):
    user = create_user(db.session)
    assert client.post("/api/v1/auth/refresh", headers=auth_header(user)).status_code == 401


def test_admin_creates_operator_bound_to_a_district(client, db):
    admin = create_user(db.session, role="admin")
    made = client.post("/api/v1/admin/users", headers=auth_header(admin), json={
        "phone": "010-2222-3333", "password": PASSWORD, "name": "관제요원", "role": "operator", "district": "11620"})
    assert made.status_code == 201
    assert made.json["user"]["role"] == "operator" and made.json["user"]["district"] == "11620"


@pytest.mark.parametrize("role", ["citizen", "operator", "scout"])
def test_only_admins_create_users(client, db, role):
    caller = create_user(db.session, role=role)
    answer = client.post("/api/v1/admin/users", headers=auth_header(caller), json={
        "phone": "010-2222-3333", "password": PASSWORD, "name": "x", "role": "operator", "district": "11620"})
    assert answer.status_code == 403 and answer.content_type == PROBLEM


@pytest.mark.parametrize("body, field", [
    ({"phone": "010-2222-3333", "password": PASSWORD, "name": "x", "role": "operator"}, "district"),
    ({"phone": "010-2222-3333", "password": PASSWORD, "name": "x", "role": "operator", "district": "99999"},
     "district"),
    ({"phone": "010-2222-3333", "password": PASSWORD, "name": "x", "role": "citizen", "district": "11620"},
     "district"),
    ({"phone": "010-2222-3333", "password": PASSWORD, "name": "x", "role": "king"}, "role"),
])
def test_admin_user_validation_names_the_field(client, db, body, field):
    admin = create_user(db.session, role="admin")
    answer = client.post("/api/v1/admin/users", headers=auth_header(admin), json=body)
    assert answer.status_code == 422 and answer.content_type == PROBLEM
    assert field in [e["field"] for e in answer.json["errors"]]


def put_pins(client, user, cancel_pin="1234", duress_pin="9876", **extra):
    return client.put("/api/v1/me/pins", headers=auth_header(user),
                      json={"cancel_pin": cancel_pin, "duress_pin": duress_pin, **extra})


def test_pins_are_stored_hashed_and_must_differ(client, db):
    user = create_user(db.session)
    assert put_pins(client, user, "1234", "1234", password=PASSWORD).status_code == 422
    assert put_pins(client, user, "1234", "9876", password=PASSWORD).status_code == 204
    db.session.refresh(user)
    assert user.cancel_pin_hash.startswith("$argon2") and "1234" not in user.cancel_pin_hash


def test_setting_pins_needs_the_password(client, db):
    """Whoever holds a victim's signed-in phone cannot set a cancel PIN of their own and truly cancel the SOS."""
    user = create_user(db.session)
    assert put_pins(client, user, "1111", "2222", password=PASSWORD).status_code == 204
    missing = put_pins(client, user, "3333", "4444")
    assert missing.status_code == 422 and [e["field"] for e in missing.json["errors"]] == ["password"]
    wrong = put_pins(client, user, "3333", "4444", password="not-the-password")
    assert wrong.status_code == 401 and wrong.content_type == PROBLEM
    incident_id = client.post("/api/v1/sos", json={"lat": 37.4705, "lon": 126.9190},
                              headers=auth_header(user)).json["incident"]["id"]
    assert client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": "3333"},
                       headers=auth_header(user)).status_code == 403  # the holder's PIN was never set
    db.session.refresh(user)
    assert accounts.verify_secret(user.cancel_pin_hash, "1111")


def test_a_wrong_password_for_the_pins_tells_nothing_of_the_pins(client, db):
    """The same answer whatever PINs are sent (the current ones, equal ones, new ones), and its limit is the
    password's, not the PIN attempts'."""
    user = create_user(db.session)
    assert put_pins(client, user, "1111", "2222", password=PASSWORD).status_code == 204
    answers = [put_pins(client, user, cancel, duress, password="not-the-password")
               for cancel, duress in (("1111", "2222"), ("5555", "5555"), ("3333", "4444"))]
    assert {(a.status_code, a.get_data(as_text=True)) for a in answers} == {
        (401, answers[0].get_data(as_text=True))}
    incident_id = client.post("/api/v1/sos", json={"lat": 37.4705, "lon": 126.9190},
                              headers=auth_header(user)).json["incident"]["id"]
    for pin in ("9999", "1111"):  # the cancel PIN attempts have their own count: these are its 1st and 2nd
        assert client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": pin},
                           headers=auth_header(user)).status_code == (403 if pin == "9999" else 200)


def test_setting_pins_is_rate_limited_as_logins_are(client, db):
    user = create_user(db.session)
    answers = [put_pins(client, user, password="wrong-guess").status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]
    limited = put_pins(client, user, password=PASSWORD)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_signing_a_token_with_the_development_key_is_warned_once_outside_tests(app, db, monkeypatch, caplog):
    from safety_api import security
    from safety_api.config import DEVELOPMENT_SECRET
    monkeypatch.setattr(security, "_warned", [])
    monkeypatch.setitem(app.config, "TESTING", False)
    person = create_user(db.session)
    monkeypatch.setitem(app.config, "SECRET_KEY", "another-long-random-key-of-the-deployment-0123456789")
    with app.test_request_context():
        monkeypatch.setitem(app.config, "JWT_SECRET_KEY", "a-long-random-key-of-the-deployment-0123456789")
        security.access_token_for(person, sign_in="s")
        assert "development key" not in caplog.text
        monkeypatch.setitem(app.config, "JWT_SECRET_KEY", DEVELOPMENT_SECRET)
        security.access_token_for(person, sign_in="s")
        security.access_token_for(person, sign_in="s")
    assert caplog.text.count("development key") == 1


def change_password(client, headers, password="s3cret-pass", new_password="n3w-secret-pass", environ=None):
    return client.put("/api/v1/me/password", json={"password": password, "new_password": new_password},
                      headers=headers, environ_base=environ or {})


def test_changing_the_password_ends_every_other_sign_in_and_keeps_this_one(client, db):
    """After a leak: the phone that changes the password stays signed in; every other sign-in (a lost phone, the
    thief's) ends with its push device, and only the new password signs in."""
    register(client)
    lost, this = sign_in(client), sign_in(client)
    for phone, token in ((lost, "lost-phone-token"), (this, "this-phone-token")):
        assert client.post("/api/v1/devices", headers=phone["access"],
                           json={"token": token, "platform": "android"}).status_code == 201

    assert change_password(client, this["access"]).status_code == 204

    assert client.get("/api/v1/me", headers=lost["access"]).status_code == 401
    assert client.post("/api/v1/auth/refresh", headers=lost["refresh"]).status_code == 401
    assert client.get("/api/v1/me", headers=this["access"]).status_code == 200
    assert client.post("/api/v1/auth/refresh", headers=this["refresh"]).status_code == 200
    assert set(db.session.scalars(select(PushDevice.token))) == {"this-phone-token"}
    old = client.post("/api/v1/auth/login", json={"phone": "01012345678", "password": "s3cret-pass"})
    assert old.status_code == 401 and old.content_type == PROBLEM
    assert sign_in(client, password="n3w-secret-pass")["access"]


def test_a_token_naming_no_sign_in_changes_the_password_and_every_sign_in_ends(client, db):
    user = create_user(db.session)
    phone = sign_in(client, user.phone, PASSWORD)
    assert change_password(client, auth_header(user), password=PASSWORD).status_code == 204
    assert client.get("/api/v1/me", headers=phone["access"]).status_code == 401


def test_a_password_change_names_what_is_wrong_and_a_wrong_current_password_tells_nothing(client):
    register(client)
    phone = sign_in(client)
    missing = client.put("/api/v1/me/password", json={"new_password": "n3w-secret-pass"}, headers=phone["access"])
    assert missing.status_code == 422 and [e["field"] for e in missing.json["errors"]] == ["password"]
    short = change_password(client, phone["access"], new_password="short")
    assert short.status_code == 422 and [e["field"] for e in short.json["errors"]] == ["new_password"]
    same = change_password(client, phone["access"], new_password="s3cret-pass")
    assert same.status_code == 422 and [e["field"] for e in same.json["errors"]] == ["new_password"]
    wrong = [change_password(client, phone["access"], password="not-it-at-all", new_password=new)
             for new in ("n3w-secret-pass", "not-it-at-all")]
    assert {(a.status_code, a.get_data(as_text=True)) for a in wrong} == {(401, wrong[0].get_data(as_text=True))}
    assert client.get("/api/v1/me", headers=phone["access"]).status_code == 200  # a wrong guess signs no one out
    assert sign_in(client)["access"]  # and the password is unchanged


def test_a_password_change_is_rate_limited_as_logins_are(client):
    register(client)
    phone = sign_in(client)
    answers = [change_password(client, phone["access"], password="wrong-guess").status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]
    limited = change_password(client, phone["access"])
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_a_login_or_a_second_change_that_checked_the_old_password_just_before_a_change_is_refused(client, db):
    """A login that checked the old password just before the change committed must not come back signed in with
    it; of two changes that both checked the old password, the second is refused, not silently the winner."""
    from datetime import datetime, timezone

    from safety_api.errors import Conflict
    from safety_api.ratelimit import limiter, password_limits
    user = create_user(db.session)
    stale = db.session.get(User, user.id)  # loaded before the change, as a login in flight holds it
    assert accounts.verify_secret(stale.password_hash, PASSWORD)
    db.session.expunge(stale)  # the test client shares this session: keep what was read before the change
    assert change_password(client, auth_header(user), password=PASSWORD).status_code == 204

    with pytest.raises(Unauthorized):
        accounts.remember_refresh_token(db.session, user=stale, jti="late-login",
                                        expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(Conflict):
        accounts.change_password(db.session, limiter(), password_limits(), user=stale, password=PASSWORD,
                                 new_password="third-secret-pass", address="192.0.2.1", sign_in=None)
    db.session.expire_all()
    assert accounts.verify_secret(db.session.get(User, user.id).password_hash, "n3w-secret-pass")
    assert db.session.execute(text("SELECT count(*) FROM refresh_tokens")).scalar() == 0
