"""Raising an SOS: every read in one statement, the incident, its first event and every push it owes in one
transaction, the operators told after the commit. Also the Idempotency-Key's scope and a bell's SOS."""
import uuid
from dataclasses import dataclass

from geoalchemy2 import WKTElement
from sqlalchemy import Float, String, and_, bindparam, exists, func, insert, literal, literal_column, or_, select
from sqlalchemy.dialects.postgresql import JSONB, UUID, aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.expression import ColumnElement

from notifications import messages
from safety_api.clock import utcnow
from safety_api.extensions import commit_keeping
from safety_api.models import BellDevice, Incident, IncidentEvent, ProtectedPerson, User
from safety_api.realtime import broadcast, events
from safety_api.services import deliveries, devices, facilities, guardians
from safety_api.services.districts import served_district_code
from safety_api.services.group_commit import alarm_lane
from safety_api.services.incident_views import operator_view, point_of
from safety_api.services.incidents import NOBODY_ON_SHIFT, max_priority, on_duty_staff, staff_alerts

_ID = UUID(as_uuid=True)
NEAREST_CCTV_RADIUS_M = 300
NEAREST_CCTV_COUNT = 5
SERVER_KEY_PREFIXES = ("walk:",)  # Idempotency-Keys the server makes; clients may not send them


def walk_escalation_key(walk_id, ordinal: int = 1) -> str:
    """The key of a walk's SOS (its `ordinal`-th: a walk watched again after its SOS closed may escalate again):
    a rerun of that escalation finds the same incident."""
    return f"walk:{walk_id}" if ordinal == 1 else f"walk:{walk_id}:{ordinal}"



def raise_sos(session, *, caller: User | None, lat: float, lon: float, accuracy_m: float | None, trigger: str,
              idempotency_key: str | None, escalate_after_s: float, bell: BellDevice | None = None, walk_id=None,
              priority: str = "normal", with_incident=None) -> tuple[Incident, bool]:
    """Create an incident with its first event and every push it owes, in one transaction; emit after commit.

    Every read comes first, in one statement (`read_scene`); then two writes and the commit. A replayed key
    is found by that read rather than left to the unique index: a walk's escalation runs this inside its own
    transaction, and an IntegrityError's rollback would undo the walk's changes with it. `with_incident`
    (incident) adds the caller's own writes to the same transaction, so they commit with the incident or
    not at all. `bell`: the device that raised it, as its request authenticated it (the view names it)."""
    with alarm_lane:  # this process's location writers hold back until the operators are told
        return _raise_sos(session, caller=caller, lat=lat, lon=lon, accuracy_m=accuracy_m, trigger=trigger,
                          idempotency_key=idempotency_key, escalate_after_s=escalate_after_s,
                          bell=bell, walk_id=walk_id, priority=priority,
                          with_incident=with_incident)


def _raise_sos(session, *, caller, lat, lon, accuracy_m, trigger, idempotency_key, escalate_after_s, bell,
               walk_id, priority, with_incident) -> tuple[Incident, bool]:
    bell_device_id = bell.id if bell is not None else None
    scene = read_scene(session, caller_id=caller.id if caller else None, lat=lat, lon=lon,
                       idempotency_key=idempotency_key, bell_device_id=bell_device_id)
    if scene.existing_id is not None:
        return session.get(Incident, scene.existing_id), False
    if scene.protected:
        priority = max_priority(priority, "high")
    try:
        incident = session.scalars(_CREATE, {
            "id": uuid.uuid4(), "caller_id": caller.id if caller else None, "idempotency_key": idempotency_key,
            "trigger": trigger, "priority": priority, "district_code": scene.district_code,
            "location": WKTElement(f"POINT({lon} {lat})", srid=4326), "accuracy_m": accuracy_m,
            "nearest_cctvs": scene.cameras, "bell_device_id": bell_device_id, "walk_id": walk_id,
            "last_fix": _raised_at(lat, lon, accuracy_m),
            "actor_id": caller.id if caller else None,
            "event_data": {"trigger": trigger, "priority": priority, "district": scene.district_code}}).one()
        if bell is not None:  # the bell the request holds: naming it in the view reads nothing
            set_committed_value(incident, "bell_device", bell)
        created_view = operator_view(incident)  # built before commit: no reload of the row after it
        pushes = {"staff.created": staff_alerts(incident, created_view, scene.staff_devices)}
        if caller is not None:
            pushes["guardian.created"] = {user: messages.guardian_alert(created_view, tokens, person_name=caller.name)
                                          for user, tokens in scene.watcher_devices.items()}
        deliveries.plan_many(session, subject=f"incident:{incident.id}", messages=pushes,
                             with_jobs=[_escalation_timer(incident, scene, escalate_after_s)])
        if with_incident is not None:
            with_incident(incident)
        commit_keeping(session, incident)
    except IntegrityError:  # the same key raced in from a parallel retry: that one won
        session.rollback()
        winner = _by_key(session, caller.id if caller else None, idempotency_key, bell_device_id)
        if winner is None:
            raise
        return winner, False
    broadcast.to_district(scene.district_code, events.INCIDENT_CREATED, created_view)
    return incident, True


def _escalation_timer(incident: Incident, scene, escalate_after_s: float) -> dict:
    """The durable timer that takes the alarm to the central centre unless an operator takes it in time; due at
    once when the district has nobody on shift, since nobody there would take it."""
    unstaffed = scene.district_code is not None and not scene.staffed
    payload = {"incident_id": str(incident.id), **({"reason": NOBODY_ON_SHIFT} if unstaffed else {})}
    return {"kind": "incident.escalate", "payload": payload, "dedupe_key": f"escalate:{incident.id}",
            "delay_s": 0 if unstaffed else escalate_after_s}  # from the database's clock, as the claim reads it


@dataclass(frozen=True)
class Scene:
    """What an SOS must know before it is written."""

    existing_id: object  # the incident already raised with this Idempotency-Key, if any
    district_code: str | None  # None: outside every served district, the central centre's
    staffed: bool  # someone of the district is on shift (pushed or not: a console needs no push device)
    protected: bool
    cameras: list  # the nearest cameras, as the incident keeps them
    staff_devices: dict  # {user_id: [(token, platform)]} of whoever must be pushed
    watcher_devices: dict  # the same for the caller's guardians and protecting agency


def read_scene(session, *, caller_id, lat: float, lon: float, idempotency_key, bell_device_id) -> Scene:
    """Every read of an SOS in one statement: the replayed key, the district by point-in-polygon, protection,
    the nearest cameras (geography KNN) and the devices of the staff and the watchers. Each round trip of the
    request is a wait for the GIL among the socket threads of a busy process; this saves five."""
    row = session.execute(_SCENE, {"caller_id": caller_id, "lat": lat, "lon": lon, "key": idempotency_key,
                                   "bell_device_id": bell_device_id, "radius": NEAREST_CCTV_RADIUS_M,
                                   "kinds": ["cctv"], "limit": NEAREST_CCTV_COUNT}).one()
    return Scene(existing_id=row.existing_id, district_code=row.district_code, staffed=row.staffed,
                 protected=row.protected,
                 cameras=[_camera(*c) for c in row.cameras], staff_devices=deliveries.by_user(row.staff),
                 watcher_devices=deliveries.by_user(row.watchers))


def _scene_statement():
    """`read_scene`'s statement, built once (composed per request, it cost about what its saved round trips
    did). A NULL caller (a bell without an owner) matches no protection, no guardians and no caller's key."""
    caller_id, bell_device_id = bindparam("caller_id", type_=_ID), bindparam("bell_device_id", type_=_ID)
    lat, lon = bindparam("lat", type_=Float), bindparam("lon", type_=Float)
    district = served_district_code(lat=lat, lon=lon).cte("district")
    district_code = select(district.c.code).scalar_subquery()
    cameras = facilities.nearby_select().subquery("cameras")
    camera = func.json_build_array(cameras.c.id, cameras.c.distance_m, cameras.c.name, cameras.c.camera_count,
                                   cameras.c.lon, cameras.c.lat)
    return select(
        select(Incident.id).where(_owner(caller_id, bell_device_id),
                                  Incident.idempotency_key == bindparam("key", type_=String))
        .scalar_subquery().label("existing_id"),
        district_code.label("district_code"),
        exists().where(ProtectedPerson.user_id == caller_id).label("protected"),
        select(func.coalesce(func.json_agg(aggregate_order_by(camera, cameras.c.distance_m)),
                             literal_column("'[]'::json"))).scalar_subquery().label("cameras"),
        on_duty_staff(district_code).exists().label("staffed"),
        devices.tokens_json(on_duty_staff(district_code)).label("staff"),
        devices.tokens_json(watchers(caller_id)).label("watchers"))


def _create_statement():
    """The incident and its first audit event ("created") in one statement, the incident returned whole
    (server defaults included) and loaded by the ORM as if it had been flushed."""
    table = Incident.__table__
    columns = ("id", "caller_id", "idempotency_key", "trigger", "priority", "district_code", "location",
               "accuracy_m", "nearest_cctvs", "bell_device_id", "walk_id", "last_fix")
    created = (insert(table).values({name: bindparam(name, type_=table.c[name].type) for name in columns})
               .returning(*table.c).cte("created"))
    first_event = insert(IncidentEvent.__table__).from_select(
        ["incident_id", "kind", "actor_id", "data"],
        select(created.c.id, literal("created"), bindparam("actor_id", type_=_ID),
               bindparam("event_data", type_=JSONB))).cte("first_event")
    return select(Incident).from_statement(select(created).add_cte(first_event))


def _raised_at(lat: float, lon: float, accuracy_m: float | None) -> dict:
    """The incident's first `last_fix`: the raising point, stamped by the server's clock. `source` lets the
    phone's first fix replace it even when the phone's clock is behind the server's (sos_ingest.ADVANCE_LAST_FIX)."""
    return {"lat": lat, "lon": lon, "accuracy_m": accuracy_m, "t": utcnow().isoformat(), "source": "raise"}


def _owner(caller_id: ColumnElement, bell_device_id: ColumnElement):
    """Whose Idempotency-Key it is, as the two partial unique indexes say: a bell's own while its incident is
    open as its owner sees it (not its owner's: two bells of one owner, or the owner's phone, never answer
    for each other; and after a duress PIN as after a cancel), and otherwise the caller's, whenever the
    phone retries."""
    return or_(and_(bell_device_id.is_not(None), Incident.bell_device_id == bell_device_id,
                    Incident.caller_closed_at.is_(None)),
               and_(bell_device_id.is_(None), Incident.caller_id == caller_id, Incident.bell_device_id.is_(None)))


def _by_key(session, caller_id, key, bell_device_id=None) -> Incident | None:
    owner = _owner(literal(caller_id, _ID), literal(bell_device_id, _ID))
    return session.scalar(select(Incident).where(owner, Incident.idempotency_key == key))

def _camera(facility_id, distance_m, name, camera_count, lon, lat) -> dict:
    return {"id": str(facility_id), "distance_m": round(distance_m, 1), "name": name, "camera_count": camera_count,
            "location": {"type": "Point", "coordinates": [lon, lat]}}


def watchers(caller_id):
    """Who is told of a person's SOS besides the operators: accepted guardians and, for a protected person,
    the protecting agency's officers: the accounts that held the phones recorded with the protection when staff
    set them (`protection.agency_contacts`)."""
    return guardians.active_guardians(protected_id=caller_id).union(agency_contacts(caller_id))


def agency_contacts(caller_id):
    """The accounts a protection's contact phones reach, as a SELECT of ids. Phones are not verified at
    registration, so an account made for one of them after staff set the list is not reached: it could be
    anyone who knows an officer's number, the stalker included."""
    protection = select(ProtectedPerson.contact_phones, ProtectedPerson.contacts_set_at).where(
        ProtectedPerson.user_id == caller_id).subquery()
    phones = select(func.jsonb_array_elements_text(protection.c.contact_phones))
    return select(User.id).where(User.phone.in_(phones),  # by the unique index on phone, not a scan of users
                                 User.created_at <= select(protection.c.contacts_set_at).scalar_subquery())


def raise_bell_sos(session, *, device, lat, lon, idempotency_key, escalate_after_s) -> tuple[Incident, bool]:
    """A bell's SOS, at its registered place unless it sends one."""
    if lat is None or lon is None:
        lon, lat = point_of(device.location)
    owner = session.get(User, device.owner_id) if device.owner_id else None
    return raise_sos(session, caller=owner, lat=lat, lon=lon, accuracy_m=None, trigger="device",
                     idempotency_key=idempotency_key, escalate_after_s=escalate_after_s,
                     bell=device, priority="high")


_SCENE = _scene_statement()
_CREATE = _create_statement()
