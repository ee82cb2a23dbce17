"""Message builders: plain dicts in, PushMessages and socket payloads out."""
import pytest

from notifications.messages import (
    ESCORT_EVENTS,
    WALK_ALERTS,
    escort_payload,
    escort_update,
    guardian_alert,
    incident_alert,
    seoul_time,
    walk_alert,
    walk_alert_payload,
)

TOKENS = [("tok-a", "android"), ("tok-i", "ios")]
INCIDENT = {"id": 42, "status": "open", "trigger": "button", "priority": "high",
            "district": "11620", "accuracy_m": 12.5, "acknowledged_by": None,
            "location": {"type": "Point", "coordinates": [126.9515, 37.4784]},
            "created_at": "2025-03-01T13:05:00+00:00"}
WALK = {"id": "w-7", "status": "active"}
BOOKING = {"id": "b-3", "status": "confirmed", "meet_at": "2025-03-01T13:30:00+00:00"}


def test_incident_alert_goes_to_every_token_with_string_data():
    pushes = incident_alert(INCIDENT, TOKENS, critical=True)
    assert [(p.token, p.platform) for p in pushes] == TOKENS
    push = pushes[0]
    assert (push.title, push.urgency, push.collapse_key) == ("긴급신고", "critical", "incident-42")
    assert "버튼 신고" in push.body
    assert push.data == {"type": "incident", "id": "42", "event": "created", "status": "open",
                         "trigger": "button", "district": "11620", "lat": "37.4784",
                         "lon": "126.9515", "created_at": "2025-03-01T13:05:00+00:00", "priority": "high"}


@pytest.mark.parametrize("event", ["escalated", "released", "duress"])
def test_an_incident_pushed_again_says_why_and_never_reads_as_a_new_sos(event):
    [push] = incident_alert({**INCIDENT, "duress": event == "duress"}, TOKENS[:1], critical=True, event=event)
    [new] = incident_alert(INCIDENT, TOKENS[:1], critical=True)
    assert push.data["event"] == event and push.title != new.title and "새 긴급신고" not in push.body
    assert push.data["duress"] == ("true" if event == "duress" else "false")


def test_incident_alert_that_is_not_critical_is_high():
    assert {p.urgency for p in incident_alert(INCIDENT, TOKENS, critical=False)} == {"high"}


def test_incident_alert_without_location_leaves_coordinates_out():
    [push] = incident_alert({"id": "9", "trigger": "shake"}, TOKENS[:1], critical=True)
    assert push.data == {"type": "incident", "id": "9", "event": "created", "trigger": "shake"}


def test_guardian_alert_names_the_person():
    [push] = guardian_alert(INCIDENT, TOKENS[:1], person_name="김민지")
    assert push.title == "안심친구 긴급알림"
    assert push.body.startswith("김민지님이 긴급신고를 했습니다")
    assert (push.urgency, push.data["event"], push.data["id"]) == ("critical", "guardian", "42")


def test_walk_alert_prompts_the_walker_to_check_in():
    [push] = walk_alert(WALK, "deviated", TOKENS[:1])
    assert (push.title, push.urgency) == ("안심귀가 확인", "high")
    assert push.body == WALK_ALERTS["deviated"][0]
    assert push.data == {"type": "walk", "id": "w-7", "event": "deviated", "status": "active"}


def test_walk_alert_tells_guardians_who():
    [push] = walk_alert(WALK, "overdue", TOKENS[:1], person_name="김민지")
    assert (push.title, push.body) == ("안심귀가 알림", "김민지님이 도착 예정 시간이 지났습니다.")


def test_arrival_is_not_urgent():
    assert walk_alert(WALK, "arrived", TOKENS[:1])[0].urgency == "normal"


def test_unknown_walk_alert_is_a_programming_error():
    with pytest.raises(KeyError):
        walk_alert(WALK, "teleported", TOKENS)


@pytest.mark.parametrize("event", sorted(ESCORT_EVENTS))
def test_escort_update_has_text_for_every_event(event):
    [push] = escort_update(BOOKING, event, TOKENS[:1])
    assert push.title == ESCORT_EVENTS[event][0]
    assert "{" not in push.body
    assert push.data["type"] == "escort" and push.data["event"] == event


def test_escort_times_are_shown_in_seoul():
    [push] = escort_update(BOOKING, "confirmed", TOKENS[:1])
    assert push.body.startswith("22:30 ")
    assert push.urgency == "normal"


def test_escort_offer_is_high():
    assert escort_update(BOOKING, "offered", TOKENS[:1])[0].urgency == "high"


def test_no_tokens_means_no_pushes():
    assert incident_alert(INCIDENT, [], critical=True) == []


def test_pushes_do_not_share_their_data_dicts():
    first, second = incident_alert(INCIDENT, TOKENS, critical=True)
    assert first.data == second.data and first.data is not second.data


def test_seoul_time_handles_missing_and_utc_times():
    assert seoul_time(None) == ""
    assert seoul_time("2025-03-01T15:00:00Z") == "00:00"


def test_socket_payloads_are_plain_json_values():
    assert walk_alert_payload(WALK, "stalled", person_name="김민지", at="2025-03-01T13:00:00Z") == {
        "walk_id": "w-7", "alert": "stalled", "at": "2025-03-01T13:00:00Z",
        "message": "김민지님이 한동안 움직이지 않고 있습니다."}
    assert escort_payload(BOOKING, "confirmed") == {
        "booking_id": "b-3", "event": "confirmed", "status": "confirmed",
        "meet_at": "2025-03-01T13:30:00+00:00", "title": "귀가동행 확정"}
