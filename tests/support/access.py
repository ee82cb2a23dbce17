"""People and resources for the access matrix: who calls, and a fresh thing of `owner`'s for every cell."""
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from flask_jwt_extended import create_access_token, create_refresh_token, decode_token

from safety_api.api.geodata import route_settings
from safety_api.api.walks import walk_settings
from safety_api.clock import utcnow
from safety_api.models import User
from safety_api.services import accounts, escort, guardians, meeting_points, protection, sos_raise, walks
from safety_api.services.escort_rules import policy_from_config
from tests.factories import create_user

GWANAK, GANGNAM = "11620", "11680"
IN_GWANAK = {"lat": 37.4705, "lon": 126.9190}
HOME_TO = {"lat": 37.4650, "lon": 126.9260}
NEAR_SEOWON = {"lat": 37.4752, "lon": 126.9301}
SEOWON = "osm:node/357900646"
# Escorts start any time before their meeting, too: each cell's booking is hours ahead of the others'.
OPEN_SERVICE = {"ESCORT_SERVICE_HOURS": "Mon-Sun 00:00-24:00", "ESCORT_MIN_LEAD_MINUTES": 0,
                "ESCORT_SAME_DAY_ONLY": False, "ESCORT_START_LEAD_MINUTES": 31 * 24 * 60}


def for_cell(db, people) -> SimpleNamespace:
    """The people of one cell: the same staff, and a new owner (one walk and one escort at a time each).

    Loaded afresh: a socket handler ends the session it shares with the test, detaching what it held."""
    owner = create_user(db.session, name="시민")
    accounts.set_pins(db.session, user=owner, cancel_pin="1234", duress_pin="9876")
    staff = {name: db.session.get(User, uid) for name, uid in people.ids.items()}
    return SimpleNamespace(**staff, owner=owner, seowon=people.seowon, slots=people.slots)


def _booking(app, db, people, *, past=False):
    # Three hours apart, so the pair of scouts is never busy with another cell's escort.
    spread = timedelta(hours=1 + 3 * next(people.slots))
    meet_at = utcnow() - spread if past else utcnow() + spread
    return escort.create_booking(db.session, citizen=people.owner,
                                 policy=policy_from_config({**app.config, **OPEN_SERVICE}),
                                 meeting_point_id=people.seowon, meet_at=meet_at, to=NEAR_SEOWON,
                                 now=meet_at - timedelta(minutes=5))


def _paired(app, db, people, *, past=False):
    booking = _booking(app, db, people, past=past)
    for scout in (people.scout, people.partner):
        escort.accept(db.session, scout=scout, booking_id=booking.id, now=booking.meet_at - timedelta(minutes=5))
    return booking


def _walk(app, db, people, *, guardian_ids=()):
    walk, _ = walks.start(db.session, walker=people.owner, origin=tuple(IN_GWANAK.values()),
                          destination=tuple(HOME_TO.values()), profile="safe", guardian_ids=list(guardian_ids),
                          route_settings=route_settings(app.config), settings=walk_settings(app.config),
                          now=utcnow(), night=False)
    return walk


def _guarded_walk(app, db, people, *, chosen=True):
    """A walk of a walker whom `other` guards, chosen (or not) to watch this walk."""
    link = guardians.invite(db.session, protected=people.owner, guardian_phone=people.other.phone)
    guardians.accept(db.session, guardian=people.other, link_id=link.id)
    return _walk(app, db, people, guardian_ids=[people.other.id] if chosen else [])


def _escalated_walk(app, db, people):
    walk = _walk(app, db, people)
    walks.escalate(db.session, walk, reason="test", now=utcnow())
    return walk


def protect_in_gwanak(db, people):
    """`owner` under protection, set up by the 관악구 operator."""
    protection.protect(db.session, actor=people.op, user_id=people.owner.id, agency="관악경찰서",
                       case_reference="2026-0001", contact_phones=[], note=None)
    return people.owner


def _in_progress(app, db, people):
    booking = _paired(app, db, people)
    return escort.start(db.session, user=people.op, booking_id=booking.id,
                        policy=policy_from_config({**app.config, **OPEN_SERVICE}))


RESOURCES = {
    "incident": lambda app, db, p: sos_raise.raise_sos(
        db.session, caller=p.owner, accuracy_m=10, trigger="button", idempotency_key=None, escalate_after_s=3600,
        **IN_GWANAK)[0],
    "link": lambda app, db, p: guardians.invite(db.session, protected=create_user(db.session, name="부탁한 이"),
                                                guardian_phone=p.owner.phone),
    "link_sent": lambda app, db, p: guardians.invite(db.session, protected=p.owner, guardian_phone=p.other.phone),
    "walk": _walk,
    "guarded_walk": _guarded_walk,
    "unchosen_walk": lambda app, db, p: _guarded_walk(app, db, p, chosen=False),
    "escalated_walk": _escalated_walk,
    "booking": _booking,
    "confirmed": _paired,
    "in_progress": _in_progress,
    "due": lambda app, db, p: _paired(app, db, p, past=True),
    "citizen": lambda app, db, p: p.owner,
    "staff": lambda app, db, p: create_user(db.session, role="operator", name="관제 대상"),
    "protected": lambda app, db, p: protect_in_gwanak(db, p),
    "bell": lambda app, db, p: protection.create_bell_device(db.session, name="안심벨", owner_phone=None,
                                                             **IN_GWANAK)[0],
    "point": lambda app, db, p: meeting_points.create(db.session, name="퍼징 정류장", kind="bus_stop",
                                                      lat=37.4842, lon=126.9297),
    "district": lambda app, db, p: SimpleNamespace(id=GWANAK),
}


def make_resource(app, db, people, kind):
    """A fresh resource of this kind, owned by `owner`, and its id; (None, None) for rows without one."""
    if kind is None:
        return None, None
    thing = RESOURCES[kind](app, db, people)
    return thing, str(thing.id)


def credentials(db, people, caller: str, kind: str) -> dict:
    """The headers a caller sends: an access or a (remembered) refresh token, or a bell's key."""
    if kind == "bell":
        _device, key = protection.create_bell_device(db.session, name="벨", owner_phone=None, **IN_GWANAK)
        return {"X-Device-Key": key}
    if caller == "anon":
        return {}
    user = getattr(people, caller)
    if kind == "refresh":
        token = create_refresh_token(identity=user)
        claims = decode_token(token)
        accounts.remember_refresh_token(db.session, user=user, jti=claims["jti"],
                                        expires_at=datetime.fromtimestamp(claims["exp"], timezone.utc))
        return {"Authorization": f"Bearer {token}"}
    return {"Authorization": f"Bearer {create_access_token(identity=user)}"}
