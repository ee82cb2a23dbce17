"""Accounts: register, login, refresh, logout."""
from datetime import datetime, timezone

from flask import current_app, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    decode_token,
    get_jwt,
)
from flask_smorest import Blueprint
from marshmallow import fields

from safety_api.api.schemas import (
    Name,
    Password,
    Phone,
    StrictSchema,
    UserEnvelope,
    UserSchema,
)
from safety_api.extensions import db
from safety_api.ratelimit import limiter
from safety_api.security import me, require
from safety_api.services import accounts

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and tokens")


class RegisterSchema(StrictSchema):
    phone = Phone(required=True)
    password = Password(required=True)
    name = Name(required=True)


class LoginSchema(StrictSchema):
    phone = Phone(required=True)
    password = fields.String(required=True)


class TokensSchema(StrictSchema):
    access_token = fields.String()
    refresh_token = fields.String()
    user = fields.Nested(UserSchema)


class AccessTokenSchema(StrictSchema):
    access_token = fields.String()


@blp.post("/register")
@blp.arguments(RegisterSchema())
@blp.response(201, UserEnvelope)
@blp.alt_response(409, response="CONFLICT")
def register(body):
    """Create a citizen account."""
    return {"user": accounts.register_citizen(db.session, **body)}


@blp.post("/login")
@blp.arguments(LoginSchema())
@blp.response(200, TokensSchema)
def login(body):
    """Exchange phone and password for an access token and a refresh token."""
    cfg = current_app.config
    user = accounts.authenticate(db.session, limiter(), per_phone=cfg["LOGIN_LIMIT_PER_PHONE"],
                                 per_address=cfg["LOGIN_LIMIT_PER_ADDRESS"], address=request.remote_addr or "-",
                                 **body)
    refresh = create_refresh_token(identity=user)
    claims = decode_token(refresh)
    accounts.remember_refresh_token(db.session, user=user, jti=claims["jti"],
                                    expires_at=_from_epoch(claims["exp"]))
    return {"access_token": create_access_token(identity=user), "refresh_token": refresh, "user": user}


@blp.post("/refresh")
@blp.response(200, AccessTokenSchema)
@require(refresh=True)
def refresh():
    """Get a fresh access token with a (non-revoked) refresh token as bearer."""
    return {"access_token": create_access_token(identity=me())}


@blp.post("/logout")
@blp.response(204)
@require(refresh=True)
def logout():
    """Revoke the refresh token presented as bearer."""
    accounts.revoke_refresh_token(db.session, jti=get_jwt()["jti"])


def _from_epoch(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc)
