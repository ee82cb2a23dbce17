"""Escort meeting points: bus stops and stations, nearest first on `geography`, managed by admins."""
from sqlalchemy import func, select, text

from safety_api.errors import Invalid, NotFound
from safety_api.models.escort import MeetingPoint
from safety_api.services.districts import district_at

EDITABLE = ("name", "name_en", "kind", "active")
_UPSERT = text("""
    INSERT INTO meeting_points (id, source_id, name, name_en, kind, district_code, location)
    SELECT gen_random_uuid(), :source_id, :name, :name_en, :kind, d.code,
           ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography
    FROM districts d
    WHERE d.served AND ST_Intersects(d.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    LIMIT 1
    ON CONFLICT (source_id) DO UPDATE SET name = EXCLUDED.name, name_en = EXCLUDED.name_en, kind = EXCLUDED.kind,
        district_code = EXCLUDED.district_code, location = EXCLUDED.location""")


def nearest(session, *, lat: float | None = None, lon: float | None = None, district: str | None = None,
            limit: int = 20) -> list[tuple[MeetingPoint, float | None]]:
    """Active meeting points with their distance in metres, nearest first (by name without a position)."""
    query = select(MeetingPoint).where(MeetingPoint.active)
    if district:
        query = query.where(MeetingPoint.district_code == district)
    if lat is None or lon is None:
        return [(p, None) for p in session.scalars(query.order_by(MeetingPoint.name, MeetingPoint.id).limit(limit))]
    here = func.geography(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326))
    # KNN on geography (the GiST index), with the same spherical distance that it ranks by.
    distance = func.ST_Distance(MeetingPoint.location, here, False)
    rows = session.execute(query.add_columns(distance).order_by(MeetingPoint.location.op("<->")(here)).limit(limit))
    return [(point, dist) for point, dist in rows]


def create(session, *, name: str, kind: str, lat: float, lon: float, name_en: str | None = None) -> MeetingPoint:
    """Add a meeting point; its district is the served district that contains it."""
    district = district_at(session, lat=lat, lon=lon)
    if district is None:
        raise Invalid("This point is outside the served area.",
                      errors=[{"field": "location", "message": "Not in a served district."}])
    point = MeetingPoint(name=name, name_en=name_en, kind=kind, district_code=district.code,
                         location=f"SRID=4326;POINT({lon} {lat})")
    session.add(point)
    session.commit()
    return point


def update(session, *, point_id, changes: dict) -> MeetingPoint:
    """Rename, reclassify, retire (active=false) or restore a meeting point; bookings keep theirs."""
    point = session.get(MeetingPoint, point_id)
    if point is None:
        raise NotFound("No such meeting point.")
    for key in EDITABLE:
        if key in changes:
            setattr(point, key, changes[key])
    session.commit()
    return point


def load(session, *, records) -> int:
    """Upsert imported records (geo.osm.MeetingPointRecord) by source_id; points outside the area are skipped."""
    count = 0
    for rec in records:
        count += session.execute(_UPSERT, {"source_id": rec.source_id, "name": rec.name, "name_en": rec.name_en,
                                           "kind": rec.kind, "lon": rec.lon, "lat": rec.lat}).rowcount
    session.commit()
    return count
