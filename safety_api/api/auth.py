"""Accounts: register, login, refresh, logout (of one sign-in, or everywhere)."""
from datetime import datetime, timezone

from flask import current_app
from flask_jwt_extended import create_refresh_token, decode_token, get_jwt
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
from safety_api.ratelimit import client_address, limiter, password_limits
from safety_api.security import access_token_for, me, require
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
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def register(body):
    """Create a citizen account (429 past the registrations allowed from one client address)."""
    limiter().hit(current_app.config["REGISTER_LIMIT_PER_ADDRESS"], "register-addr", client_address())
    return {"user": accounts.register_citizen(db.session, **body)}


@blp.post("/login")
@blp.arguments(LoginSchema())
@blp.response(200, TokensSchema)
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def login(body):
    """Exchange phone and password for an access token and a refresh token (403: the account is suspended)."""
    user = accounts.authenticate(db.session, limiter(), password_limits(), address=client_address(), **body)
    refresh = create_refresh_token(identity=user)
    claims = decode_token(refresh)
    accounts.remember_refresh_token(db.session, user=user, jti=claims["jti"],
                                    expires_at=_from_epoch(claims["exp"]))
    return {"access_token": access_token_for(user, claims["jti"]), "refresh_token": refresh, "user": user}


@blp.post("/refresh")
@blp.response(200, AccessTokenSchema)
@require(refresh=True)
def refresh():
    """Get a fresh access token with a (non-revoked) refresh token as bearer."""
    return {"access_token": access_token_for(me(), get_jwt()["jti"])}


@blp.post("/logout")
@blp.response(204)
@require(refresh=True)
def logout():
    """Sign out of the sign-in whose refresh token is the bearer: the token is revoked, the access tokens issued
    with it are refused, its sockets are closed and the push devices registered with it stop receiving. Staff
    leaving their last sign-in leave their shift too."""
    accounts.sign_out(db.session, user=me(), sign_in=get_jwt()["jti"],
                      escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"])


@blp.post("/logout-all")
@blp.response(204)
@require()
def logout_all():
    """Sign out everywhere (a lost or stolen phone): every sign-in of the person ends as in logout, every
    push device is forgotten, this sign-in's included; sign in again to go on."""
    accounts.sign_out_everywhere(db.session, user=me(),
                                 escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"])


def _from_epoch(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc)
