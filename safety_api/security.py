"""Authentication: JWT callbacks, the current user, and the gate every request passes before its view reads it:
who is calling (token and role, or a bell's device key), then whether its body is JSON at all."""
import logging
from functools import partial, wraps

from flask import Flask, current_app, g, request
from flask_jwt_extended import create_access_token, current_user, get_jwt, verify_jwt_in_request

from safety_api.config import DEVELOPMENT_SECRET
from safety_api.errors import Forbidden, UnsupportedMediaType
from safety_api.extensions import db, jwt
from safety_api.models import BellDevice, RefreshToken, User
from safety_api.services import accounts, protection

BEARER = [{"bearerAuth": []}]
DEVICE_KEY = [{"deviceKey": []}]
DEVICE_KEY_HEADER = "X-Device-Key"
SIGN_IN_CLAIM = "sid"  # in access tokens: the sign-in (its refresh token's jti) they were issued under (OIDC's name)
JSON_API = "/api/v1/"


def init_app(app: Flask):
    """Wire flask-jwt-extended to our users and revocable refresh tokens; set the password hashing cost."""
    accounts.configure_hashing(time_cost=app.config["ARGON2_TIME_COST"], memory_kib=app.config["ARGON2_MEMORY_KIB"],
                               max_concurrent=app.config["ARGON2_MAX_CONCURRENT"], wait_s=app.config["ARGON2_WAIT_S"])

    @jwt.user_identity_loader
    def _identity(user):
        _warn_if_signing_with_the_development_key()
        return str(user.id) if isinstance(user, User) else str(user)

    @jwt.additional_claims_loader
    def _claims(user):
        if isinstance(user, User):
            return {"role": user.role, "district": user.district_code}
        return {}

    @jwt.user_lookup_loader
    def _lookup(_header, payload):  # None (a 401) for a deleted person or a signed-out sign-in
        return accounts.signed_in_user(db.session, payload["sub"], payload.get(SIGN_IN_CLAIM))

    @app.before_request
    def _gate_first():
        """Authenticate and authorise before the body or query is parsed: a caller without the right
        token, role or device key learns 401/403, never how their input would have been judged (not even
        that its body is no JSON)."""
        if request.method == "OPTIONS":  # answered by Flask without the view (Allow, CORS preflight)
            return
        gate = getattr(current_app.view_functions.get(request.endpoint), "_gate", None)
        if gate is not None:
            gate()
        _json_bodies_only()

    @jwt.token_in_blocklist_loader
    def _revoked(_header, payload):
        if payload.get("type") != "refresh":
            return False  # access tokens are short-lived; revocation is enforced at refresh
        row = db.session.get(RefreshToken, payload["jti"])
        return row is None or row.revoked_at is not None


def require(*roles: str, refresh: bool = False):
    """Let a request through only with a valid token and, if given, one of the roles."""

    def decorate(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            if not g.get("gate_passed"):  # the app's before_request hook checks first; this is the backstop
                _check(roles, refresh)
            return fn(*args, **kwargs)

        # Copied outwards by every decorator's functools.wraps, so the hook finds it on the routed view.
        wrapper._gate = partial(_check, roles, refresh)

        apidoc = getattr(wrapper, "_apidoc", {})
        manual = apidoc.setdefault("manual_doc", {})
        manual["security"] = BEARER
        # Document the answers this gate gives, as references to the problem+json responses.
        responses = apidoc.setdefault("response", {}).setdefault("responses", {})
        responses.setdefault(401, []).append("UNAUTHORIZED")
        if roles:
            responses.setdefault(403, []).append("FORBIDDEN")
        wrapper._apidoc = apidoc
        return wrapper

    return decorate


def _check(roles: tuple, refresh: bool):
    verify_jwt_in_request(refresh=refresh)
    if roles and current_user.role not in roles:
        raise Forbidden(f"This needs the role {' or '.join(roles)}.")
    g.gate_passed = True


def require_device(fn):
    """Let a request through only with the key of a registered, unrevoked bell device (X-Device-Key)."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        if not g.get("gate_passed"):  # the backstop, as in require
            _check_device()
        return fn(*args, **kwargs)

    wrapper._gate = _check_device
    apidoc = getattr(wrapper, "_apidoc", {})
    apidoc.setdefault("manual_doc", {})["security"] = DEVICE_KEY
    apidoc.setdefault("response", {}).setdefault("responses", {}).setdefault(401, []).append("UNAUTHORIZED")
    wrapper._apidoc = apidoc
    return wrapper


def _check_device():
    g.device = protection.authenticate_bell(db.session, request.headers.get(DEVICE_KEY_HEADER))
    g.gate_passed = True


def _json_bodies_only():
    """The JSON API reads bodies as JSON only. webargs takes a body of any other type for no body at all, so
    a point sent as text/plain or as a form would be dropped without a word where every field is optional
    (a bell's): refuse it instead. A request without a body needs no Content-Type."""
    if not request.path.startswith(JSON_API) or request.is_json:
        return
    if request.content_length or "Transfer-Encoding" in request.headers:  # chunked: a body of unknown length
        raise UnsupportedMediaType(
            f"Send the body as application/json (it came as {request.mimetype or 'no Content-Type'}).")


def access_token_for(user: User, sign_in: str) -> str:
    """An access token of one sign-in: signing out of it refuses the token, closes the sockets it opened and
    forgets the push devices it registered."""
    return create_access_token(identity=user, additional_claims={SIGN_IN_CLAIM: sign_in})


_warned = []


def development_key_in_use(config) -> bool:
    return DEVELOPMENT_SECRET in (config["SECRET_KEY"], config["JWT_SECRET_KEY"])


def refuse_to_serve_with_the_development_key(app: Flask):
    """The serving process's check (gunicorn.conf.py), not the app factory's: `flask db upgrade` and the demo
    loader build the app before `make run` has made its keys, and sign nothing."""
    if development_key_in_use(app.config) and not app.config["ALLOW_DEVELOPMENT_KEY"]:
        raise RuntimeError(
            "SECRET_KEY and JWT_SECRET_KEY are not set: tokens would be signed with the development key printed in "
            "safety_api/config.py, and anyone could forge an admin's. Set both (make run does; docs/operations.md), "
            "or ALLOW_DEVELOPMENT_KEY=1 for a trial on your own machine.")


def _warn_if_signing_with_the_development_key():
    """Once per process, as the first token is signed (not when the command line builds the app to migrate)."""
    if not _warned and not current_app.testing and development_key_in_use(current_app.config):
        _warned.append(True)
        logging.getLogger(__name__).warning(
            "tokens are signed with the development key printed in safety_api/config.py: anyone can forge them. "
            "Set SECRET_KEY and JWT_SECRET_KEY (make run does; docs/operations.md)")


def sign_in_of_request() -> str | None:
    """The sign-in of this request's access token (None for a token issued without one)."""
    return get_jwt().get(SIGN_IN_CLAIM)


def me() -> User:
    """The authenticated user of this request."""
    return current_user


def device() -> BellDevice:
    """The bell device whose key this request carries (routes under require_device)."""
    return g.device
