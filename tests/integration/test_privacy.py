"""A person's data: export it all, delete the account, keep incident evidence without the person."""
from datetime import timedelta

from sqlalchemy import select, text

from safety_api.clock import utcnow
from safety_api.services import accounts
from safety_api.services.escort_rules import policy_from_config
from tests.factories import PASSWORD, auth_header, create_user

IN_GWANAK = {"lat": 37.4705, "lon": 126.9190}
WALK_TO = {"lat": 37.4650, "lon": 126.9260}


def test_export_holds_my_account_incidents_and_positions_but_no_secrets(client, db):
    citizen = create_user(db.session, name="내보내기")
    incident = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(citizen)).json["incident"]
    client.post(f"/api/v1/sos/{incident['id']}/fixes", json={"fixes": [{**IN_GWANAK, "accuracy_m": 5}]},
                headers=auth_header(citizen))
    data = client.get("/api/v1/me/export", headers=auth_header(citizen)).json
    assert data["account"][0]["name"] == "내보내기"
    assert [i["id"] for i in data["incidents"]] == [incident["id"]]
    assert len(data["location_fixes"]) == 1
    assert "password" not in str(data) and "$argon2" not in str(data)


def test_export_holds_my_walks_with_their_places_my_bookings_and_my_bells(client, db):
    from safety_api.services import protection
    citizen = create_user(db.session)
    walk = client.post("/api/v1/walks", json={"from": IN_GWANAK, "to": WALK_TO},
                       headers=auth_header(citizen)).json
    protection.create_bell_device(db.session, name="가게 비상벨", lat=37.4705, lon=126.9190, owner_phone=citizen.phone)
    data = client.get("/api/v1/me/export", headers=auth_header(citizen)).json
    [exported] = data["walks"]
    assert exported["id"] == walk["id"] and exported["destination"]["type"] == "Point"
    assert exported["route"]["type"] == "LineString" and data["walk_alerts"] == []
    assert [b["name"] for b in data["bell_devices"]] == ["가게 비상벨"]
    assert "key_hash" not in str(data["bell_devices"])
    assert data["escort_bookings"] == [] and data["escort_assignments"] == []


def test_deleting_an_account_needs_the_password_and_keeps_incidents_detached(client, db):
    citizen = create_user(db.session)
    citizen_id, headers = citizen.id, auth_header(citizen)
    incident_id = client.post("/api/v1/sos", json=IN_GWANAK, headers=headers).json["incident"]["id"]
    client.post(f"/api/v1/sos/{incident_id}/fixes", json={"fixes": [{**IN_GWANAK, "accuracy_m": 5}]}, headers=headers)
    assert client.delete("/api/v1/me", json={"password": "wrong-one"}, headers=headers).status_code == 401
    assert client.delete("/api/v1/me", json={"password": PASSWORD}, headers=headers).status_code == 204
    db.session.expunge_all()
    assert db.session.execute(text("SELECT count(*) FROM users WHERE id = :u"), {"u": citizen_id}).scalar() == 0
    caller, fixes = db.session.execute(text(
        "SELECT caller_id, (SELECT count(*) FROM location_fixes WHERE incident_id = i.id AND user_id IS NULL) "
        "FROM incidents i WHERE id = :i"), {"i": incident_id}).one()
    assert caller is None and fixes == 1
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_deleting_an_account_leaves_no_name_or_phone_token_in_the_push_receipts(client, db):
    from safety_api.models import Delivery, PushDevice
    from safety_api.services import guardians
    citizen, guardian = create_user(db.session, name="지워질이름"), create_user(db.session)
    link = guardians.invite(db.session, protected=citizen, guardian_phone=guardian.phone)
    guardians.accept(db.session, guardian=guardian, link_id=link.id)
    db.session.add_all([PushDevice(user_id=guardian.id, token="guardian-phone", platform="android"),
                        PushDevice(user_id=citizen.id, token="citizen-phone", platform="android")])
    db.session.commit()
    headers = auth_header(citizen)
    client.post("/api/v1/sos", json=IN_GWANAK, headers=headers)
    walk = client.post("/api/v1/walks", json={"from": IN_GWANAK, "to": WALK_TO, "guardian_ids": [str(guardian.id)]},
                       headers=headers).json
    db.session.execute(text("UPDATE deliveries SET status = 'delivered'"))
    # ...and a push the citizen received as someone's guardian
    other = create_user(db.session)
    link = guardians.invite(db.session, protected=other, guardian_phone=citizen.phone)
    guardians.accept(db.session, guardian=citizen, link_id=link.id)
    client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(other))
    assert client.delete("/api/v1/me", json={"password": PASSWORD}, headers=headers).status_code == 204
    db.session.expire_all()
    left = db.session.scalars(select(Delivery)).all()
    assert not [d for d in left if d.subject == f"walk:{walk['id']}"]
    assert left and "지워질이름" not in str([d.message for d in left])
    assert "citizen-phone" not in str([(d.token, d.message) for d in left])


def test_the_password_asked_to_delete_the_account_is_limited_as_logins_are(client, db, app, monkeypatch):
    """Whoever holds a signed-in phone cannot guess the password here any faster than at login: the same
    limits, and wrong passwords here count toward the account's failures there."""
    monkeypatch.setitem(app.config, "LOGIN_FAILURE_LIMIT_PER_PHONE", "7/hour")
    citizen = create_user(db.session)
    headers = auth_header(citizen)

    def delete_from(address, password):
        return client.delete("/api/v1/me", json={"password": password}, headers=headers,
                             environ_base={"REMOTE_ADDR": address}).status_code
    assert [delete_from("203.0.113.7", "wrong-guess") for _ in range(6)] == [401] * 5 + [429]
    assert [delete_from("203.0.113.8", "wrong-guess") for _ in range(3)] == [401, 401, 429]  # 7 failures in all
    refused = client.post("/api/v1/auth/login", json={"phone": citizen.phone, "password": PASSWORD},
                          environ_base={"REMOTE_ADDR": "198.51.100.20"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert delete_from("198.51.100.20", PASSWORD) == 429
    assert db.session.execute(text("SELECT count(*) FROM users WHERE id = :u"), {"u": citizen.id}).scalar() == 1


def test_an_operator_reading_my_incident_is_in_my_access_log(client, db):
    citizen = create_user(db.session)
    operator = create_user(db.session, role="operator")
    incident_id = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(citizen)).json["incident"]["id"]
    assert client.get(f"/api/v1/incidents/{incident_id}", headers=auth_header(operator)).status_code == 200
    reads = client.get("/api/v1/me/export", headers=auth_header(citizen)).json["location_reads"]
    assert [(r["viewer_id"], r["purpose"]) for r in reads] == [(str(operator.id), "incident.read")]


def test_inviting_a_phone_number_reveals_no_name_or_id_until_the_person_accepts(client, db):
    inviter, invitee = create_user(db.session), create_user(db.session, name="숨은이름")
    invited = client.post("/api/v1/guardians", json={"phone": invitee.phone}, headers=auth_header(inviter))
    listed = client.get("/api/v1/guardians", headers=auth_header(inviter))
    for answer in (invited, listed):
        text = answer.get_data(as_text=True)
        assert answer.status_code in (200, 201) and "숨은이름" not in text and str(invitee.id) not in text
    client.post(f"/api/v1/guardians/{invited.json['id']}/accept", headers=auth_header(invitee))
    assert client.get("/api/v1/guardians", headers=auth_header(inviter)).json["guarded_by"][0]["name"] == "숨은이름"


def test_a_scout_offered_a_booking_learns_neither_the_citizens_name_nor_where_they_go(client, db, app, monkeypatch):
    monkeypatch.setitem(app.config, "ESCORT_POLICY", policy_from_config({
        **app.config, "ESCORT_SERVICE_HOURS": "Mon-Sun 00:00-24:00", "ESCORT_MIN_LEAD_MINUTES": 0,
        "ESCORT_SAME_DAY_ONLY": False}))
    citizen, home = create_user(db.session, name="귀가하는이"), {"lat": 37.4752, "lon": 126.9301}
    scout = create_user(db.session, role="scout")
    scout.on_duty = True
    db.session.commit()
    point = client.get("/api/v1/escort/meeting-points?lat=37.478&lon=126.932&limit=1",
                       headers=auth_header(citizen)).json["items"][0]
    meet_at = (utcnow() + timedelta(hours=1)).isoformat()
    booked = client.post("/api/v1/escort/bookings", headers=auth_header(citizen),
                         json={"meeting_point_id": point["id"], "meet_at": meet_at, "to": home})
    assert booked.status_code == 201
    for url in ("/api/v1/escort/offers", f"/api/v1/escort/bookings/{booked.json['id']}"):
        answer = client.get(url, headers=auth_header(scout))
        text = answer.get_data(as_text=True)
        assert answer.status_code == 200 and booked.json["id"] in text
        assert "귀가하는이" not in text and str(citizen.id) not in text and "37.4752" not in text


def test_my_export_names_the_guardian_i_invited_only_once_they_accept(client, db):
    inviter, invitee = create_user(db.session), create_user(db.session)
    link_id = client.post("/api/v1/guardians", json={"phone": invitee.phone}, headers=auth_header(inviter)).json["id"]
    pending = client.get("/api/v1/me/export", headers=auth_header(inviter)).json["guardian_links"]
    assert [(link["id"], link["guardian_id"], link["status"]) for link in pending] == [(link_id, None, "pending")]
    assert str(invitee.id) not in str(pending)
    asked = client.get("/api/v1/me/export", headers=auth_header(invitee)).json["guardian_links"]
    assert asked[0]["protected_id"] == str(inviter.id)  # the invited side sees who asks, to decide
    client.post(f"/api/v1/guardians/{link_id}/accept", headers=auth_header(invitee))
    accepted = client.get("/api/v1/me/export", headers=auth_header(inviter)).json["guardian_links"]
    assert accepted[0]["guardian_id"] == str(invitee.id)


def test_after_a_duress_pin_the_export_hides_only_what_that_incident_brought_until_it_is_closed(client, db):
    """Walk fixes and a guardian's reads go on after either PIN, so they stay in the export; the duress
    incident's own fixes received after the PIN (even one dated before it) and the operators' reads of it are
    left out while it is worked, as after a cancel the fixes would have been refused."""
    citizen, operator = create_user(db.session), create_user(db.session, role="operator")
    accounts.set_pins(db.session, user=citizen, cancel_pin="1111", duress_pin="2222")
    guardian = create_user(db.session, name="보호자")
    link = client.post("/api/v1/guardians", json={"phone": guardian.phone}, headers=auth_header(citizen)).json
    client.post(f"/api/v1/guardians/{link['id']}/accept", headers=auth_header(guardian))
    walk_id = client.post("/api/v1/walks", headers=auth_header(citizen), json={
        "from": IN_GWANAK, "to": WALK_TO, "guardian_ids": [str(guardian.id)]}).json["id"]
    incident_id = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(citizen)).json["incident"]["id"]
    # As if the walk had escalated to it: its operators may then read the walk, because of the incident.
    db.session.execute(text("UPDATE incidents SET walk_id = :w WHERE id = :i"), {"w": walk_id, "i": incident_id})
    db.session.commit()

    def send(kind, subject_id, seconds_ago, lat):
        fix = {"lat": lat, "lon": IN_GWANAK["lon"], "accuracy_m": 5,
               "t": (utcnow() - timedelta(seconds=seconds_ago)).isoformat()}
        path = f"/api/v1/{'walks' if kind == 'walk' else 'sos'}/{subject_id}/fixes"
        return client.post(path, json={"fixes": [fix]}, headers=auth_header(citizen)).status_code

    assert send("sos", incident_id, 3, 37.4701) == 200
    assert send("walk", walk_id, 3, 37.4702) == 200
    assert client.post(f"/api/v1/sos/{incident_id}/cancel", json={"pin": "2222"},
                       headers=auth_header(citizen)).json == {"status": "cancelled"}
    assert send("walk", walk_id, 0, 37.4703) == 200  # as after a cancel
    assert send("sos", incident_id, 0, 37.4704) == 409  # refused to the phone, stored for the operators
    assert send("sos", incident_id, 2, 37.4705) == 409  # dated before the PIN, received after it
    assert client.get(f"/api/v1/walks/{walk_id}", headers=auth_header(guardian)).status_code == 200
    assert client.get(f"/api/v1/incidents/{incident_id}", headers=auth_header(operator)).status_code == 200
    assert client.get(f"/api/v1/walks/{walk_id}", headers=auth_header(operator)).status_code == 200

    exported = client.get("/api/v1/me/export", headers=auth_header(citizen)).json
    assert [(f["subject_kind"], f["lat"]) for f in exported["location_fixes"]] == [
        ("sos", 37.4701), ("walk", 37.4702), ("walk", 37.4703)]
    assert [(r["viewer_id"], r["purpose"]) for r in exported["location_reads"]] == [
        (str(guardian.id), "walk.started"), (str(guardian.id), "walk.read")]

    assert client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"outcome": "resolved"},
                       headers=auth_header(operator)).status_code == 200
    closed = client.get("/api/v1/me/export", headers=auth_header(citizen)).json
    assert sorted(f["lat"] for f in closed["location_fixes"]) == [37.4701, 37.4702, 37.4703, 37.4704, 37.4705]
    assert {(r["viewer_id"] == str(operator.id), r["purpose"]) for r in closed["location_reads"]} == {
        (False, "walk.started"), (False, "walk.read"), (True, "incident.read"), (True, "walk.read"),
        (True, "incident.act")}


def test_deleting_an_account_withdraws_its_guardians_alarm_still_to_be_sent_leaving_no_name(client, db):
    """Queued behind an FCM outage or a busy worker: the guardians are the person's no longer, and the receipt
    kept with the incident must not keep the name either."""
    from safety_api.models import Delivery, PushDevice
    from safety_api.services import guardians
    citizen, guardian = create_user(db.session, name="지워질이름"), create_user(db.session)
    link = guardians.invite(db.session, protected=citizen, guardian_phone=guardian.phone)
    guardians.accept(db.session, guardian=guardian, link_id=link.id)
    db.session.add(PushDevice(user_id=guardian.id, token="guardian-phone", platform="android"))
    db.session.commit()
    client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(citizen))
    assert db.session.scalars(select(Delivery.status).where(Delivery.reason == "guardian.created")).all() == [
        "pending"]
    assert client.delete("/api/v1/me", json={"password": PASSWORD}, headers=auth_header(citizen)).status_code == 204
    db.session.expire_all()
    [kept] = db.session.scalars(select(Delivery).where(Delivery.reason == "guardian.created")).all()
    assert kept.status == "withdrawn" and "지워질이름" not in str(kept.message)


def test_deleting_an_account_takes_its_escorts_tracks_and_keeps_the_scouts_pushes_still_to_be_sent(client, app, db):
    """The scouts' phones traced the way to the person's door: it goes with the person, out of the scouts'
    exports too. A push to a scout about the booking, expanded just before, is theirs and is still sent."""
    from safety_api.models import Delivery
    from tests.integration.test_escort import confirmed, post
    citizen = create_user(db.session)
    booking, (first, second) = confirmed(client, app, db, citizen=citizen, meet_at=utcnow() + timedelta(minutes=10))
    assert post(client, first, booking.id, "start").status_code == 200
    fix = {"lat": 37.4770, "lon": 126.9315, "accuracy_m": 8, "t": utcnow().isoformat()}
    assert client.post(f"/api/v1/escort/bookings/{booking.id}/fixes", headers=auth_header(second),
                       json={"fixes": [fix]}).json["accepted"] == 1
    assert [f["booking_id"] for f in client.get("/api/v1/me/export", headers=auth_header(citizen)).json[
        "escort_fixes"]] == [str(booking.id)]
    assert post(client, second, booking.id, "complete").status_code == 200
    subject = f"escort:{booking.id}"
    db.session.add(Delivery(subject=subject, reason="escort.cancelled", recipient_id=first.id,
                            token="first-scouts-phone", message={"token": "first-scouts-phone"}))
    db.session.commit()
    assert client.delete("/api/v1/me", json={"password": PASSWORD}, headers=auth_header(citizen)).status_code == 204
    assert db.session.execute(text("SELECT count(*) FROM location_fixes WHERE subject_kind = 'escort'")).scalar() == 0
    assert client.get("/api/v1/me/export", headers=auth_header(second)).json["location_fixes"] == []
    assert db.session.scalars(select(Delivery.token).where(Delivery.subject == subject,
                                                           Delivery.status == "pending")).all() == [
        "first-scouts-phone"]


def test_export_holds_a_staff_members_account_history_and_whom_my_walks_were_shared_with(client, db):
    from safety_api.services import guardians
    admin, operator = create_user(db.session, role="admin"), create_user(db.session, role="operator")
    assert client.post(f"/api/v1/admin/users/{operator.id}/suspend", json={"reason": "휴직"},
                       headers=auth_header(admin)).status_code == 200
    assert client.post(f"/api/v1/admin/users/{operator.id}/reinstate", json={"reason": "복직"},
                       headers=auth_header(admin)).status_code == 200
    history = client.get("/api/v1/me/export", headers=auth_header(operator)).json["account_history"]
    assert [(e["kind"], e["actor_id"], e["data"].get("reason")) for e in history][-2:] == [
        ("suspended", str(admin.id), "휴직"), ("reinstated", str(admin.id), "복직")]
    citizen, guardian = create_user(db.session), create_user(db.session)
    link = guardians.invite(db.session, protected=citizen, guardian_phone=guardian.phone)
    guardians.accept(db.session, guardian=guardian, link_id=link.id)
    walk = client.post("/api/v1/walks", json={"from": IN_GWANAK, "to": WALK_TO, "guardian_ids": [str(guardian.id)]},
                       headers=auth_header(citizen)).json
    shared = client.get("/api/v1/me/export", headers=auth_header(citizen)).json["walk_guardians"]
    assert shared == [{"walk_id": walk["id"], "guardian_id": str(guardian.id)}]
