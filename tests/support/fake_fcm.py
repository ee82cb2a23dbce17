"""A stand-in for the FCM HTTP v1 API that records requests and fails on command.

In-process: ``with FakeFCM() as fcm: ...``. Out of process (live-server tests run the worker as a
subprocess): ``python -m tests.support.fake_fcm --port N`` prints its URL, accepts JSON on
``POST /_control`` and lists what it received at ``GET /_requests``.
"""
import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# errorCode -> (HTTP status, google.rpc status, message), as the real FCM v1 API answers them.
FCM_ERRORS = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT",
                         "The registration token is not a valid FCM registration token"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
}
OUTAGES = {"500": "INTERNAL", "503": "UNAVAILABLE", "hang": "UNAVAILABLE", "502": None, "504": None}
# Google's front end answers a bad gateway or a gateway time-out with an HTML page, not FCM's JSON.
GATEWAY_PAGE = "<!DOCTYPE html><html><title>Error {status} (Server Error)!!1</title></html>"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received; header names are lower-cased."""

    path: str
    headers: dict
    body: object


def error_body(code, *, message=None, field=None):
    """Return (HTTP status, JSON body) of an FCM v1 error answer with this errorCode."""
    status, rpc_status, default_message = FCM_ERRORS[code]
    if code == "INVALID_ARGUMENT" and message is None:
        field = field or "message.token"
    details = [{"@type": FCM_ERROR_TYPE, "errorCode": code}]
    if field:
        details.append({"@type": BAD_REQUEST_TYPE,
                        "fieldViolations": [{"field": field, "description": "Invalid value"}]})
    return status, {"error": {"code": status, "message": message or default_message,
                              "status": rpc_status, "details": details}}


class FakeFCM:
    """A threaded HTTP server on 127.0.0.1 that speaks just enough FCM v1 and OAuth."""

    def __init__(self, host="127.0.0.1", port=0, *, hang_limit_s=30.0):
        self.hang_limit_s = hang_limit_s
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._requests = []
        self._failures = {}
        self._outage = None
        self._retry_after = None
        self._sent = 0
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = None

    def start(self):
        """Serve in a daemon thread; return self."""
        # A short poll interval lets close() return at once instead of after 0.5 s.
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        return self

    def close(self):
        """Release hanging requests and stop serving."""
        self._released.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()

    @property
    def requests(self):
        """Return a copy of every recorded request, oldest first."""
        with self._lock:
            return list(self._requests)

    def sent(self):
        """Return the ``message`` objects of every FCM send request, oldest first."""
        return [r.body["message"] for r in self.requests if r.path.endswith("/messages:send")]

    def fail_token(self, token, code="UNREGISTERED", *, message=None, field=None,
                   retry_after=None):
        """Answer every send to ``token`` with the FCM error ``code``."""
        with self._lock:
            self._failures[token] = {"code": code, "message": message, "field": field,
                                     "retry_after": retry_after}

    def set_outage(self, mode, *, retry_after=None):
        """Answer every send with 500 or 503 (FCM's JSON), 502 or 504 (a gateway's HTML page), or hang ("hang")
        until cleared; None clears."""
        if mode is not None and mode not in OUTAGES:
            raise ValueError(f"unknown outage mode {mode!r}")
        with self._lock:
            self._outage, self._retry_after = mode, retry_after
        if mode == "hang":
            self._released.clear()
        else:
            self._released.set()

    def reset(self):
        """Forget requests, failures and any outage."""
        self.set_outage(None)
        with self._lock:
            self._requests.clear()
            self._failures.clear()

    def control(self, command):
        """Apply a JSON control command (the body of ``POST /_control``)."""
        if command.get("reset"):
            self.reset()
        for token, spec in command.get("fail_tokens", {}).items():
            self.fail_token(token, **spec)
        if "outage" in command:
            self.set_outage(command["outage"], retry_after=command.get("retry_after"))

    def answer_send(self, path, headers, body):
        """Record one send and return (status, JSON body, extra headers)."""
        with self._lock:
            self._requests.append(RecordedRequest(path, headers, body))
            outage, retry_after = self._outage, self._retry_after
            failure = self._failures.get(_target(body))
            self._sent += 1
            number = self._sent
        if outage == "hang":
            self._released.wait(self.hang_limit_s)
        if outage in ("502", "504"):
            return int(outage), GATEWAY_PAGE.format(status=outage), _retry_header(retry_after)
        if outage:
            return (*error_body(OUTAGES[outage]), _retry_header(retry_after))
        if failure:
            status, reply = error_body(failure["code"], message=failure["message"],
                                       field=failure["field"])
            return status, reply, _retry_header(failure["retry_after"])
        project = path.split("/")[3]
        return 200, {"name": f"projects/{project}/messages/{number}"}, {}

    def answer_token(self, path, headers, raw):
        """Record an OAuth token request and grant a fake access token."""
        with self._lock:
            self._requests.append(RecordedRequest(path, headers, raw))
        return 200, {"access_token": "fake-access-token", "expires_in": 3600,
                     "token_type": "Bearer"}, {}


def service_account_file(directory, project_id, token_uri):
    """Write a service-account key whose OAuth endpoint is ``token_uri``; return its path.

    Lets tests drive firebase-admin's real auth path (signed JWT -> access token) offline.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = Path(directory) / f"{project_id}-service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": project_id, "private_key_id": "fake-key",
        "private_key": pem, "client_email": f"fcm@{project_id}.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri}))
    return str(path)


def _target(body):
    message = body.get("message", {}) if isinstance(body, dict) else {}
    return message.get("token") or message.get("fid")


def _retry_header(retry_after):
    return {"Retry-After": str(retry_after)} if retry_after is not None else {}


def _handler_for(fake):
    """Build the request handler class bound to one FakeFCM."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            """Keep test output quiet."""

        def _reply(self, status, obj, headers=None):
            page = isinstance(obj, str)
            data = obj.encode() if page else json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=UTF-8" if page else "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out while we hung, which is what a hang test wants

        def _read(self):
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def do_GET(self):
            if self.path != "/_requests":
                return self._reply(404, {"error": "not found"})
            return self._reply(200, [asdict(r) for r in fake.requests])

        def do_POST(self):
            raw = self._read()
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path == "/_control":
                fake.control(json.loads(raw or b"{}"))
                return self._reply(200, {"ok": True})
            if self.path == "/token":
                return self._reply(*fake.answer_token(self.path, headers, raw.decode()))
            if self.path.startswith("/v1/projects/") and self.path.endswith("/messages:send"):
                return self._reply(*fake.answer_send(self.path, headers, json.loads(raw)))
            return self._reply(404, {"error": {"code": 404, "status": "NOT_FOUND",
                                               "message": f"no route {self.path}"}})

    return Handler


def main(argv=None):
    """Serve a FakeFCM until SIGTERM or Ctrl-C, printing its URL first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeFCM(args.host, args.port).start()
    signal.signal(signal.SIGTERM, _exit_on_signal)
    print(fake.url, flush=True)
    try:
        threading.Event().wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        fake.close()
    return 0


def _exit_on_signal(signum, frame):
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
