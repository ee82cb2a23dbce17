"""A person's data: export it all, delete the account, keep incident evidence without the person."""
from sqlalchemy import text

from tests.factories import PASSWORD, auth_header, create_user

IN_GWANAK = {"lat": 37.4705, "lon": 126.9190}


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


def test_an_operator_reading_my_incident_is_in_my_access_log(client, db):
    citizen = create_user(db.session)
    operator = create_user(db.session, role="operator")
    incident_id = client.post("/api/v1/sos", json=IN_GWANAK, headers=auth_header(citizen)).json["incident"]["id"]
    assert client.get(f"/api/v1/incidents/{incident_id}", headers=auth_header(operator)).status_code == 200
    reads = client.get("/api/v1/me/export", headers=auth_header(citizen)).json["location_reads"]
    assert [(r["viewer_id"], r["purpose"]) for r in reads] == [(str(operator.id), "incident.read")]
