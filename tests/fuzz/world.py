"""Seed rows the fuzzer's ids can resolve to, and the token it calls with, for one role."""
import zlib
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from safety_api.api.geodata import route_settings
from safety_api.api.walks import walk_settings
from safety_api.clock import utcnow
from safety_api.models import MeetingPoint, User
from safety_api.services import accounts, escort, guardians, meeting_points, protection, sos_raise, walks
from safety_api.services.escort_rules import policy_from_config
from tests.conftest import restore_meeting_points, truncate_user_tables
from tests.factories import auth_header, create_user
from tests.support.access import GWANAK, HOME_TO, IN_GWANAK, NEAR_SEOWON, OPEN_SERVICE, SEOWON

HOME, AWAY = (IN_GWANAK["lat"], IN_GWANAK["lon"]), (HOME_TO["lat"], HOME_TO["lon"])


@dataclass
class World:
    """Who calls, with which headers, and the ids a generated path parameter is swapped for."""

    role: str
    user: User
    headers: dict
    ids: dict = field(default_factory=dict)
    bell_key: str = ""

    def prepare(self, case, *, swap_ids=True):
        """Point most generated ids at real rows (the rest stay random), and give bells their key."""
        for name, value in list((case.path_parameters or {}).items()):
            if swap_ids and name in self.ids and zlib.crc32(repr(value).encode()) % 4:
                case.path_parameters[name] = self.ids[name]
        if case.path == "/api/v1/bells/sos" and zlib.crc32(repr(case.body).encode()) % 4:
            case.headers = {**(case.headers or {}), "X-Device-Key": self.bell_key}


def seed_world(app, db, *, role: str) -> World:
    """A Gwanak citizen with an open incident, a walk, a booking, guardian links, a bell and a protection; staff
    of each role."""
    session = db.session
    owner = create_user(session, name="시민")
    accounts.set_pins(session, user=owner, cancel_pin="1234", duress_pin="9876")
    other = create_user(session, name="이웃")
    staff = {"citizen": owner, "operator": create_user(session, role="operator", name="관제"),
             "scout": create_user(session, role="scout", name="스카우트"),
             "admin": create_user(session, role="admin", name="관리자")}
    incident, _ = sos_raise.raise_sos(session, caller=owner, lat=HOME[0], lon=HOME[1], accuracy_m=10,
                                      trigger="button", idempotency_key=None, escalate_after_s=3600)
    invited = guardians.invite(session, protected=other, guardian_phone=owner.phone)
    walk, _ = walks.start(session, walker=owner, origin=HOME, destination=AWAY, profile="safe",
                          guardian_ids=[], route_settings=route_settings(app.config),
                          settings=walk_settings(app.config), now=utcnow(), night=False)
    point = session.scalar(select(MeetingPoint).where(MeetingPoint.source_id == SEOWON))
    meet_at = utcnow() + timedelta(hours=1)
    booking = escort.create_booking(session, citizen=owner, policy=policy_from_config({**app.config, **OPEN_SERVICE}),
                                    meeting_point_id=point.id, meet_at=meet_at,
                                    to=NEAR_SEOWON, now=meet_at - timedelta(minutes=5))
    own_point = meeting_points.create(session, lat=37.4842, lon=126.9297, name="퍼징 정류장", name_en=None,
                                      kind="bus_stop")
    bell, key = protection.create_bell_device(session, name="안심벨", lat=HOME[0], lon=HOME[1],
                                              owner_phone=owner.phone)
    # Under protection, so that reading it answers a whole record with its trail (set up, then changed).
    for reference in ("2026-0001", "2026-0002"):
        protection.protect(session, actor=staff["operator"], user_id=owner.id, agency="관악경찰서",
                           case_reference=reference, contact_phones=[staff["operator"].phone], note="야간")
    ids = {"incident_id": incident.id, "walk_id": walk.id, "booking_id": booking.id, "link_id": invited.id,
           "user_id": owner.id, "device_id": bell.id, "point_id": own_point.id, "code": GWANAK}
    user = staff[role]
    return World(role=role, user=user, headers=auth_header(user), ids={k: str(v) for k, v in ids.items()},
                 bell_key=key)


def clean_world(db):
    """Empty the user tables, then put back the meeting points the run added, renamed or retired."""
    db.session.rollback()
    truncate_user_tables(db)
    restore_meeting_points(db)


def served_spec() -> dict:
    """The OpenAPI document the app serves (building the spec touches neither the database nor Redis)."""
    from safety_api import create_app
    from tests.conftest import test_config
    return create_app(test_config()).test_client().get("/api/v1/openapi.json").get_json()
