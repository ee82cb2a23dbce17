"""Push devices and guardian links over HTTP on the real database."""
import secrets
import threading
import time
from types import SimpleNamespace

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from safety_api.errors import to_problem
from safety_api.models import GuardianLink, PushDevice
from safety_api.services import accounts, devices, guardians
from tests.factories import auth_header, create_user

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """Argon2 at its lowest cost: these tests are about links and devices, not hashing strength."""
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def people(db):
    return SimpleNamespace(mina=create_user(db.session, name="김민아", phone="01020000001"),
                           jun=create_user(db.session, name="이준", phone="01020000002"),
                           stranger=create_user(db.session, name="박낯선", phone="01020000003"))


def register_device(client, user, token="fcm-token-aaaa-0001", platform="android"):
    return client.post("/api/v1/devices", headers=auth_header(user), json={"token": token, "platform": platform})


def invite(client, protected, phone):
    return client.post("/api/v1/guardians", headers=auth_header(protected), json={"phone": phone})


def links_of(client, user) -> dict:
    answer = client.get("/api/v1/guardians", headers=auth_header(user))
    assert answer.status_code == 200
    return answer.json


def test_a_new_token_is_201_and_a_known_one_200(client, db, people):
    first = register_device(client, people.mina)
    assert first.status_code == 201 and first.json["platform"] == "android" and first.json["id"]
    again = register_device(client, people.mina)
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    assert devices.tokens_of(db.session, [people.mina.id]) == [(str(people.mina.id), "fcm-token-aaaa-0001", "android")]


def test_one_person_may_have_several_devices(client, db, people):
    assert register_device(client, people.mina, token="phone-token-0001").status_code == 201
    assert register_device(client, people.mina, token="tablet-token-0002", platform="ios").status_code == 201
    assert sorted(t for _u, t, _p in devices.tokens_of(db.session, [people.mina.id])) == [
        "phone-token-0001", "tablet-token-0002"]


def test_a_token_moves_to_its_newest_owner(client, db, people):
    first = register_device(client, people.mina, platform="android")
    moved = register_device(client, people.jun, platform="ios")
    assert moved.status_code == 200 and moved.json == {"id": first.json["id"], "platform": "ios"}
    assert devices.tokens_of(db.session, [people.mina.id]) == []
    assert devices.tokens_of(db.session, [people.jun.id]) == [(str(people.jun.id), "fcm-token-aaaa-0001", "ios")]
    assert db.session.scalar(select(PushDevice.user_id)) == people.jun.id


def test_a_token_over_1024_characters_is_422_naming_token(client, db, people):
    assert register_device(client, people.mina, token="t" * 1024).status_code == 201
    too_long = register_device(client, people.mina, token=secrets.token_urlsafe(2048)[:1025])
    assert too_long.status_code == 422 and too_long.content_type == PROBLEM
    assert [e["field"] for e in too_long.json["errors"]] == ["token"]


def test_a_value_too_large_for_an_index_is_422_not_an_outage(db, people):
    """PostgreSQL refuses a unique index entry over ~2.7 KB (SQLSTATE 54000, raised by psycopg as an
    OperationalError): the request was at fault, the database is not away."""
    db.session.add(PushDevice(user_id=people.mina.id, token=secrets.token_urlsafe(3000), platform="android"))
    with pytest.raises(DBAPIError) as refused:
        db.session.flush()
    db.session.rollback()
    assert refused.value.orig.sqlstate == "54000"
    problem, status, headers = to_problem(refused.value)
    assert status == 422 and headers == {} and "too large" in problem["detail"]


def test_invite_accept_and_list_both_directions_with_names(client, people):
    invited = invite(client, people.mina, "010-2000-0002")
    assert invited.status_code == 201
    assert invited.json == {"id": invited.json["id"], "status": "pending"}
    link_id = invited.json["id"]

    # Pending: the inviter sees only the number typed; the invited person sees who asks, to decide.
    assert links_of(client, people.mina) == {"guarding": [], "guarded_by": [
        {"id": link_id, "status": "pending", "phone": "01020000002"}]}
    assert links_of(client, people.jun) == {"guarded_by": [], "guarding": [
        {"id": link_id, "status": "pending", "user_id": str(people.mina.id), "name": "김민아", "phone": "01020000001"}]}

    accepted = client.post(f"/api/v1/guardians/{link_id}/accept", headers=auth_header(people.jun))
    assert accepted.status_code == 200 and accepted.json == {"id": link_id, "status": "active"}
    assert links_of(client, people.mina)["guarded_by"] == [
        {"id": link_id, "status": "active", "user_id": str(people.jun.id), "name": "이준", "phone": "01020000002"}]
    assert links_of(client, people.jun)["guarding"][0]["status"] == "active"
    assert links_of(client, people.stranger) == {"guarding": [], "guarded_by": []}


def test_accepting_twice_is_harmless(client, db, people):
    link_id = invite(client, people.mina, "01020000002").json["id"]
    for _ in range(2):
        answer = client.post(f"/api/v1/guardians/{link_id}/accept", headers=auth_header(people.jun))
        assert answer.status_code == 200 and answer.json["status"] == "active"
    assert db.session.scalar(select(GuardianLink.accepted_at)) is not None


def test_both_directions_may_exist_at_once(client, people):
    assert invite(client, people.mina, "01020000002").status_code == 201
    assert invite(client, people.jun, "01020000001").status_code == 201
    mina = links_of(client, people.mina)
    assert [p["name"] for p in mina["guarding"]] == ["이준"]  # 이준 asked 민아
    assert [(p["phone"], "name" in p) for p in mina["guarded_by"]] == [("01020000002", False)]  # 이준 has not agreed


def test_inviting_yourself_is_422_naming_phone(client, people):
    answer = invite(client, people.mina, "+82 10-2000-0001")
    assert answer.status_code == 422 and answer.content_type == PROBLEM
    assert [e["field"] for e in answer.json["errors"]] == ["phone"]


def test_inviting_an_unknown_phone_is_404(client, people):
    answer = invite(client, people.mina, "010-9999-0000")
    assert answer.status_code == 404 and answer.content_type == PROBLEM


def test_invites_are_rate_limited_per_inviter(client, app, people, monkeypatch):
    monkeypatch.setitem(app.config, "GUARDIAN_INVITE_LIMIT", "3/hour")
    answers = [invite(client, people.mina, phone).status_code
               for phone in ("01020000002", "01099990001", "01099990002", "01020000003")]
    assert answers == [201, 404, 404, 429]  # unknown numbers count too: they are the guesses
    limited = invite(client, people.mina, "01099990003")
    assert limited.status_code == 429 and limited.content_type == PROBLEM and int(limited.headers["Retry-After"]) >= 1
    assert invite(client, people.jun, "01020000003").status_code == 201  # another inviter has their own count


def test_the_invite_limit_defaults_to_ten_a_day_as_documented(app):
    assert app.config["GUARDIAN_INVITE_LIMIT"] == "10/day"


@pytest.mark.parametrize("accept_first", [False, True])
def test_inviting_twice_is_409(client, people, accept_first):
    link_id = invite(client, people.mina, "01020000002").json["id"]
    if accept_first:
        client.post(f"/api/v1/guardians/{link_id}/accept", headers=auth_header(people.jun))
    again = invite(client, people.mina, "010-2000-0002")
    assert again.status_code == 409 and again.content_type == PROBLEM
    assert len(links_of(client, people.mina)["guarded_by"]) == 1


@pytest.mark.parametrize("who", ["mina", "stranger"])
def test_only_the_invited_guardian_can_accept(client, people, who):
    link_id = invite(client, people.mina, "01020000002").json["id"]
    answer = client.post(f"/api/v1/guardians/{link_id}/accept", headers=auth_header(getattr(people, who)))
    assert answer.status_code == 404 and answer.content_type == PROBLEM
    assert links_of(client, people.jun)["guarding"][0]["status"] == "pending"


@pytest.mark.parametrize("who", ["mina", "jun"])
def test_either_side_may_end_a_link(client, people, who):
    link_id = invite(client, people.mina, "01020000002").json["id"]
    client.post(f"/api/v1/guardians/{link_id}/accept", headers=auth_header(people.jun))
    assert client.delete(f"/api/v1/guardians/{link_id}", headers=auth_header(getattr(people, who))).status_code == 204
    assert links_of(client, people.mina) == {"guarding": [], "guarded_by": []}
    assert links_of(client, people.jun) == {"guarding": [], "guarded_by": []}
    gone = client.delete(f"/api/v1/guardians/{link_id}", headers=auth_header(people.mina))
    assert gone.status_code == 404 and gone.content_type == PROBLEM
    assert invite(client, people.mina, "01020000002").status_code == 201  # may invite again afterwards


def test_a_stranger_cannot_end_a_link(client, people):
    link_id = invite(client, people.mina, "01020000002").json["id"]
    answer = client.delete(f"/api/v1/guardians/{link_id}", headers=auth_header(people.stranger))
    assert answer.status_code == 404 and answer.content_type == PROBLEM
    assert len(links_of(client, people.mina)["guarded_by"]) == 1


def test_accepting_an_invitation_while_it_is_being_removed_is_404_not_500(app, db, people):
    """The removal holds the link's row (uncommitted) when the acceptance arrives; once it commits, the
    acceptance finds no invitation: 404, not a 500 from an UPDATE that matched a deleted row."""
    link_id = guardians.invite(db.session, protected=people.mina, guardian_phone=people.jun.phone).id
    answers, headers = [], auth_header(people.jun)

    def accept():
        try:
            answers.append(app.test_client().post(f"/api/v1/guardians/{link_id}/accept",
                                                  headers=headers).status_code)
        except Exception as exc:  # a 500 propagates in testing
            answers.append(repr(exc))

    with db.engine.connect() as removing:
        removing.execute(text("DELETE FROM guardian_links WHERE id = :id"), {"id": link_id})
        accepting = threading.Thread(target=accept)
        accepting.start()
        time.sleep(0.5)  # the acceptance reaches the row and waits for the removal
        removing.commit()
    accepting.join(10)
    assert answers == [404]
