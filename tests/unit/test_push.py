"""PushSender through the real firebase-admin SDK against FakeFCM."""
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import warnings
from pathlib import Path

import firebase_admin
import pytest
import requests
from firebase_admin import exceptions, messaging

from notifications.push import PushMessage, PushSender, backoff_seconds, build_fcm_message, classify, init_firebase_app
from tests.support.fake_fcm import FakeFCM, service_account_file

PROJECT = "test-proj"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake():
    with FakeFCM() as server:
        yield server


@pytest.fixture
def sender(fake):
    app = init_firebase_app(credentials_path=None, project_id=PROJECT, endpoint=fake.url,
                            name=f"test-{uuid.uuid4().hex}", timeout_s=0.5)
    yield PushSender(app)
    firebase_admin.delete_app(app)


def make_push(token="tok-1", platform="android", urgency="critical", **fields):
    """Build a PushMessage with test defaults."""
    defaults = {"data": {"type": "incident", "id": "42"}, "title": "긴급신고",
                "body": "새 긴급신고", "collapse_key": "incident-42", "ttl_s": 900}
    return PushMessage(token=token, platform=platform, urgency=urgency, **{**defaults, **fields})


def sent_to(fake, token):
    """Return the one FCM message the fake received for ``token``."""
    [message] = [m for m in fake.sent() if m["token"] == token]
    return message


DATA = {"type": "incident", "id": "42", "title": "긴급신고", "body": "새 긴급신고"}


@pytest.mark.parametrize("urgency, priority", [("critical", "high"), ("high", "high"),
                                               ("normal", "normal")])
def test_android_push_is_a_data_message_with_priority(fake, sender, urgency, priority):
    [outcome] = sender.send([make_push(urgency=urgency)])
    assert outcome.status == "delivered"
    assert sent_to(fake, "tok-1") == {
        "token": "tok-1",
        "data": {**DATA, "urgency": urgency},
        "android": {"priority": priority, "ttl": "900s", "collapse_key": "incident-42"},
    }


def _apns(fake, token):
    apns = sent_to(fake, token)["apns"]
    expiration = int(apns["headers"].pop("apns-expiration"))
    assert abs(expiration - (time.time() + 900)) < 60
    return apns


def test_critical_ios_push_is_a_critical_alert(fake, sender):
    sender.send([make_push(platform="ios", urgency="critical")])
    assert _apns(fake, "tok-1") == {
        "headers": {"apns-push-type": "alert", "apns-priority": "10",
                    "apns-collapse-id": "incident-42"},
        "payload": {"aps": {"alert": {"title": "긴급신고", "body": "새 긴급신고"},
                            "sound": {"name": "default", "critical": 1, "volume": 1.0},
                            "interruption-level": "critical"}},
    }
    assert sent_to(fake, "tok-1")["data"] == {**DATA, "urgency": "critical"}


def test_high_ios_push_is_time_sensitive(fake, sender):
    sender.send([make_push(platform="ios", urgency="high", collapse_key=None)])
    assert _apns(fake, "tok-1") == {
        "headers": {"apns-push-type": "alert", "apns-priority": "10"},
        "payload": {"aps": {"alert": {"title": "긴급신고", "body": "새 긴급신고"},
                            "sound": "default", "interruption-level": "time-sensitive"}},
    }


def test_normal_ios_push_uses_apns_priority_5(fake, sender):
    sender.send([make_push(platform="ios", urgency="normal")])
    apns = _apns(fake, "tok-1")
    assert apns["headers"]["apns-priority"] == "5"
    assert apns["payload"]["aps"] == {"alert": {"title": "긴급신고", "body": "새 긴급신고"},
                                      "sound": "default"}


@pytest.mark.parametrize("urgency, header", [("critical", "high"), ("normal", "normal")])
def test_web_push_sets_urgency_and_ttl_headers(fake, sender, urgency, header):
    sender.send([make_push(platform="web", urgency=urgency)])
    message = sent_to(fake, "tok-1")
    assert message["webpush"] == {"headers": {"Urgency": header, "TTL": "900"}}
    assert set(message) == {"token", "data", "webpush"}


def test_delivered_push_reports_the_fcm_message_id(fake, sender):
    [outcome] = sender.send([make_push()])
    assert outcome.message_id == "projects/test-proj/messages/1"
    [request] = fake.requests
    assert request.path == "/v1/projects/test-proj/messages:send"
    assert "authorization" not in request.headers  # anonymous credentials for local runs


@pytest.mark.parametrize("code", ["UNREGISTERED", "INVALID_ARGUMENT"])
def test_token_errors_mark_the_token_dead(fake, sender, code):
    fake.fail_token("tok-1", code)
    [outcome] = sender.send([make_push()])
    assert (outcome.status, outcome.message_id) == ("dead", None)
    assert outcome.error


def test_a_sender_of_another_project_fails_the_push_and_keeps_the_token(fake, sender, caplog):
    """SENDER_ID_MISMATCH is the deployment's key, not the phone: every token would be deleted for it."""
    fake.fail_token("tok-1", "SENDER_ID_MISMATCH")
    [outcome] = sender.send([make_push()])
    assert (outcome.status, outcome.message_id) == ("failed", None)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in caplog.text


def test_invalid_payload_fails_without_killing_the_token(fake, sender):
    fake.fail_token("tok-1", "INVALID_ARGUMENT", message="Invalid value at 'message.data'",
                    field="message.data")
    assert sender.send([make_push()])[0].status == "failed"


def test_quota_exceeded_is_retried_after_the_server_says(fake, sender):
    fake.fail_token("tok-1", "QUOTA_EXCEEDED", retry_after=30)
    [outcome] = sender.send([make_push()])
    assert (outcome.status, outcome.retry_after_s) == ("retry", 30.0)


@pytest.mark.parametrize("mode", ["500", "503", "502", "504"])
def test_server_errors_are_retry_and_not_retried_inside_the_sdk(fake, sender, mode):
    """502 and 504 come from Google's front end as HTML, which firebase-admin raises as UnknownError."""
    fake.set_outage(mode)
    started = time.monotonic()
    outcomes = sender.send([make_push("a"), make_push("b")])
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert len(fake.requests) == 2  # the SDK's default would have sent 10, over ~7 s
    assert time.monotonic() - started < 2


def test_hanging_server_times_out_as_retry(fake, sender):
    fake.set_outage("hang")
    started = time.monotonic()
    [outcome] = sender.send([make_push()])
    assert outcome.status == "retry" and "DeadlineExceeded" in outcome.error
    assert time.monotonic() - started < 2


def free_port():
    """Return a local TCP port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_is_retry():
    app = init_firebase_app(credentials_path=None, project_id=PROJECT, name=uuid.uuid4().hex,
                            endpoint=f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    try:
        assert PushSender(app).send([make_push()])[0].status == "retry"
    finally:
        firebase_admin.delete_app(app)


def test_one_dead_token_among_good_ones_is_isolated(fake, sender):
    fake.fail_token("t2", "UNREGISTERED")
    outcomes = sender.send([make_push(f"t{i}", platform=p)
                            for i, p in enumerate(["android", "ios", "web", "android"])])
    assert [(o.token, o.status) for o in outcomes] == [
        ("t0", "delivered"), ("t1", "delivered"), ("t2", "dead"), ("t3", "delivered")]


def test_unencodable_message_fails_alone(fake, sender):
    outcomes = sender.send([make_push("good"), make_push("bad", collapse_key=7)])
    assert [o.status for o in outcomes] == ["delivered", "failed"]
    assert [m["token"] for m in fake.sent()] == ["good"]


def test_large_batches_are_sent_in_chunks_in_order(fake, sender):
    sender.chunk = 2
    outcomes = sender.send([make_push(f"t{i}") for i in range(5)])
    assert [o.token for o in outcomes] == [f"t{i}" for i in range(5)]
    assert {o.status for o in outcomes} == {"delivered"}


def test_nothing_to_send_makes_no_request(fake, sender):
    assert sender.send([]) == []
    assert fake.requests == []


def send_with_key(key_path, endpoint, messages):
    """Send through a fresh App authenticated by a service-account key file."""
    app = init_firebase_app(credentials_path=key_path, project_id=PROJECT, endpoint=endpoint,
                            name=uuid.uuid4().hex, timeout_s=0.5)
    try:
        return PushSender(app).send(messages)
    finally:
        firebase_admin.delete_app(app)


def test_service_account_credentials_use_the_token_endpoint(fake, tmp_path):
    key_path = service_account_file(tmp_path, PROJECT, fake.url + "/token")
    assert send_with_key(key_path, fake.url, [make_push()])[0].status == "delivered"
    token_request, send_request = fake.requests
    assert token_request.path == "/token"
    assert send_request.headers["authorization"] == "Bearer fake-access-token"


def test_apns_auth_error_fails_without_killing_the_token(fake, tmp_path):
    fake.fail_token("tok-1", "THIRD_PARTY_AUTH_ERROR")
    key_path = service_account_file(tmp_path, PROJECT, fake.url + "/token")
    [outcome] = send_with_key(key_path, fake.url, [make_push(platform="ios")])
    assert outcome.status == "failed" and "ThirdPartyAuthError" in outcome.error


def test_unreachable_token_endpoint_retries_the_whole_batch(fake, tmp_path):
    key_path = service_account_file(tmp_path, PROJECT, f"http://127.0.0.1:{free_port()}/token")
    outcomes = send_with_key(key_path, fake.url, [make_push("a"), make_push("b")])
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert fake.sent() == []


def test_without_an_endpoint_the_app_targets_google():
    app = init_firebase_app(credentials_path=None, project_id=PROJECT, name=uuid.uuid4().hex)
    try:
        service = messaging._get_messaging_service(app)  # pylint: disable=protected-access
        assert service._fcm_url == f"https://fcm.googleapis.com/v1/projects/{PROJECT}/messages:send"
    finally:
        firebase_admin.delete_app(app)


def test_building_a_message_silences_only_the_token_deprecation():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = build_fcm_message(make_push())
        with pytest.warns(DeprecationWarning, match="MulticastMessage.tokens"):
            messaging.MulticastMessage(tokens=["x"])
    assert message.token == "tok-1"


@pytest.mark.parametrize("fields", [{"platform": "symbian"}, {"urgency": "urgent"},
                                    {"data": {"id": 42}}, {"data": {"from": "x"}},
                                    {"data": {"google.c": "x"}}, {"token": ""}, {"ttl_s": -1}])
def test_push_message_rejects_bad_fields(fields):
    with pytest.raises(ValueError):
        make_push(**fields)


def _answer(status):
    response = requests.Response()
    response.status_code = status
    return response


@pytest.mark.parametrize("exc, status", [
    (messaging.UnregisteredError("gone"), "dead"),
    (exceptions.InvalidArgumentError("Invalid registration token"), "dead"),
    (exceptions.InvalidArgumentError("message too big"), "failed"),
    (exceptions.UnavailableError("down"), "retry"),
    (exceptions.DeadlineExceededError("slow"), "retry"),
    (exceptions.UnknownError("no answer at all"), "retry"),
    (exceptions.UnknownError("an answer FCM never gives", http_response=_answer(405)), "failed"),
])
def test_classify_maps_firebase_errors(exc, status):
    assert classify(exc) == status


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    assert [backoff_seconds(a, rng=lambda: 0.0) for a in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_seconds(3, rng=lambda: 1.0) == 16.0
    assert backoff_seconds(1000, rng=lambda: 1.0) == 600.0
    assert all(8.0 <= backoff_seconds(3) <= 16.0 for _ in range(50))


def test_fake_fcm_runs_as_a_subprocess_with_a_control_endpoint():
    command = [sys.executable, "-m", "tests.support.fake_fcm", "--port", "0"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        try:
            url = proc.stdout.readline().strip()
            _post(url + "/_control", {"fail_tokens": {"gone": {"code": "UNREGISTERED"}}})
            outcomes = _send_via(url, [make_push("gone"), make_push("ok")])
            with urllib.request.urlopen(url + "/_requests", timeout=5) as answer:
                recorded = json.load(answer)
        finally:
            proc.terminate()
    assert proc.returncode == 0
    assert [o.status for o in outcomes] == ["dead", "delivered"]
    assert sorted(r["body"]["message"]["token"] for r in recorded) == ["gone", "ok"]


def _send_via(url, messages):
    app = init_firebase_app(credentials_path=None, project_id=PROJECT, endpoint=url,
                            name=uuid.uuid4().hex)
    try:
        return PushSender(app).send(messages)
    finally:
        firebase_admin.delete_app(app)


def _post(url, obj):
    request = urllib.request.Request(url, data=json.dumps(obj).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)
