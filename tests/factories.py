"""Keyword-only factories that create real rows and real tokens."""
import itertools

from flask_jwt_extended import create_access_token

from safety_api.services import accounts

_phones = itertools.count(10000000)
GWANAK = "11620"
PASSWORD = "correct-horse-1"


def next_phone() -> str:
    return f"010{next(_phones):08d}"


def create_user(session, *, role="citizen", district=None, name="테스트", phone=None, password=PASSWORD):
    """Create a user of any role (operators and scouts default to 관악구)."""
    if role in ("operator", "scout") and district is None:
        district = GWANAK
    return accounts.create_staff(session, phone=phone or next_phone(), password=password, name=name,
                                 role=role, district=district)


def auth_header(user) -> dict:
    return {"Authorization": f"Bearer {create_access_token(identity=user)}"}


def token_for(user) -> str:
    return create_access_token(identity=user)
