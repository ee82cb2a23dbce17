"""Pure builders: plain dicts in, PushMessages and socket payloads out, texts in Korean.

Every push carries string data ``type`` (incident, walk, escort), ``id`` (of that object) and
``event`` (what happened), so the app can route a tap without parsing the text.
"""
from datetime import datetime
from zoneinfo import ZoneInfo

from notifications.push import PushMessage

SEOUL = ZoneInfo("Asia/Seoul")
ALERT_TTL_S = 15 * 60  # an SOS alert older than this is better read in the app than popped up
INFO_TTL_S = 6 * 3600

TRIGGER_LABELS = {
    "button": "버튼 신고",
    "shake": "흔들기 신고",
    "voice": "음성 신고",
    "walk_escalation": "안심귀가 미응답",
    "device": "비상벨 신고",
}
# alert -> (text for the walker, text for a guardian after "{name}님이 ")
WALK_ALERTS = {
    "deviated": ("경로를 벗어났어요. 괜찮으시면 앱에서 '괜찮아요'를 눌러 주세요.",
                 "안심귀가 경로를 벗어났습니다."),
    "stalled": ("한동안 움직임이 없어요. 괜찮으신가요?", "한동안 움직이지 않고 있습니다."),
    "overdue": ("도착 예정 시간이 지났어요. 괜찮으신가요?", "도착 예정 시간이 지났습니다."),
    "signal_lost": ("위치 신호가 끊겼어요. 앱을 열어 확인해 주세요.", "위치 신호가 끊겼습니다."),
    "arrived": ("목적지에 도착했어요. 안심귀가를 마칩니다.", "안전하게 도착했습니다."),
}
# event -> (title, body); {time} is the meeting time in Seoul
ESCORT_EVENTS = {
    "offered": ("귀가동행 요청", "{time} 귀가동행 요청이 있습니다. 수락할 수 있는지 확인해 주세요."),
    "confirmed": ("귀가동행 확정", "{time} 만남 장소에 안심귀가스카우트 2명이 나갑니다."),
    "reminder": ("귀가동행 알림", "{time} 만남이 곧 시작됩니다."),
    "started": ("귀가동행 시작", "안심귀가스카우트와 귀가를 시작했습니다."),
    "completed": ("귀가동행 완료", "안전하게 귀가했습니다. 이용해 주셔서 감사합니다."),
    "cancelled": ("귀가동행 취소", "{time} 귀가동행이 취소되었습니다."),
    "no_show": ("귀가동행 불참", "{time} 만남 장소에 나타나지 않아 동행이 종료되었습니다."),
}


# why operators are pushed an incident -> (title, body); {label} names the trigger
INCIDENT_ALERTS = {
    "created": ("긴급신고", "새 긴급신고가 접수되었습니다 ({label})."),
    "escalated": ("긴급신고 미접수", "제때 접수되지 않은 긴급신고입니다 ({label}). 확인해 주세요."),
    "released": ("긴급신고 재배정", "담당자가 없어진 긴급신고입니다 ({label}). 접수해 주세요."),
    "duress": ("긴급신고 강요 의심", "신고자가 강요 PIN으로 신고를 취소했습니다. 위급 상황으로 대응해 주세요."),
}


def incident_alert(incident, tokens, *, critical, event="created"):
    """Build the SOS alert for operators' devices; ``critical`` breaks through silent mode. ``event`` says why
    they are pushed (a new SOS, not taken in time, released, turned duress), so a re-alert never reads as a
    second new SOS."""
    title, body = INCIDENT_ALERTS[event]
    label = TRIGGER_LABELS.get(incident.get("trigger"), "긴급신고")
    data = {**_incident_data(incident, event=event),
            **_strings(priority=incident.get("priority"), duress=_flag(incident.get("duress")))}
    return _fan_out(tokens, data, title=title, body=body.format(label=label),
                    urgency="critical" if critical else "high",
                    collapse_key=f"incident-{incident['id']}", ttl_s=ALERT_TTL_S)


def guardian_alert(incident, tokens, *, person_name, critical=True):
    """Build the alert telling guardians that the person they watch over raised an SOS."""
    data = _incident_data(incident, event="guardian")
    return _fan_out(tokens, data, title="안심친구 긴급알림",
                    body=f"{person_name}님이 긴급신고를 했습니다. 위치를 확인해 주세요.",
                    urgency="critical" if critical else "high",
                    collapse_key=f"incident-{incident['id']}", ttl_s=ALERT_TTL_S)


def walk_alert(walk, alert, tokens, *, person_name=None):
    """Build a walk alert: a check-in prompt for the walker, or news for guardians if named."""
    to_walker, to_guardian = WALK_ALERTS[alert]
    if person_name is None:
        title, body = "안심귀가 확인", to_walker
    else:
        title, body = "안심귀가 알림", f"{person_name}님이 {to_guardian}"
    data = _strings(type="walk", id=walk["id"], event=alert, status=walk.get("status"))
    return _fan_out(tokens, data, title=title, body=body,
                    urgency="normal" if alert == "arrived" else "high",
                    collapse_key=f"walk-{walk['id']}", ttl_s=ALERT_TTL_S)


def escort_update(booking, event, tokens):
    """Build an escort-booking notice for the citizen or the scouts."""
    title, body = ESCORT_EVENTS[event]
    data = _strings(type="escort", id=booking["id"], event=event, status=booking.get("status"),
                    meet_at=booking.get("meet_at"))
    body = body.format(time=seoul_time(booking.get("meet_at")))
    return _fan_out(tokens, data, title=title, body=body,
                    urgency="high" if event in ("offered", "reminder") else "normal",
                    collapse_key=f"escort-{booking['id']}", ttl_s=INFO_TTL_S)


def walk_alert_payload(walk, alert, *, person_name, at):
    """Build the ``walk.alert`` socket payload that the walker and guardians receive."""
    return {"walk_id": str(walk["id"]), "alert": alert, "at": at,
            "message": f"{person_name}님이 {WALK_ALERTS[alert][1]}"}


def escort_payload(booking, event):
    """Build the ``escort.offered`` / ``escort.updated`` socket payload."""
    return {"booking_id": str(booking["id"]), "event": event, "status": booking.get("status"),
            "meet_at": booking.get("meet_at"), "title": ESCORT_EVENTS[event][0]}


def seoul_time(iso):
    """Format an ISO 8601 instant as Seoul wall-clock ``HH:MM`` (empty if missing)."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(SEOUL).strftime("%H:%M")


def _incident_data(incident, *, event):
    lon, lat = (incident.get("location") or {}).get("coordinates", (None, None))
    return _strings(type="incident", id=incident["id"], event=event,
                    status=incident.get("status"), trigger=incident.get("trigger"),
                    district=incident.get("district"), lat=lat, lon=lon,
                    created_at=incident.get("created_at"))


def _flag(value):
    return None if value is None else ("true" if value else "false")


def _strings(**fields):
    """Drop missing fields and stringify the rest: FCM data is str -> str."""
    return {key: str(value) for key, value in fields.items() if value is not None}


def _fan_out(tokens, data, **fields):
    return [PushMessage(token=token, platform=platform, data=dict(data), **fields)
            for token, platform in tokens]
