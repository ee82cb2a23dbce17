"""Which district a point is in, and loading the boundaries."""
from geoalchemy2.shape import from_shape
from sqlalchemy import func, select, text

from safety_api.errors import NotFound
from safety_api.models import District, Dong


def district_at(session, *, lat: float, lon: float) -> District | None:
    """The served district containing the point, by point-in-polygon on the indexed geometry."""
    point = func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326)
    return session.scalar(select(District).where(District.served, func.ST_Intersects(District.geom, point))
                          .limit(1))


def codes(session) -> list[str]:
    """Every district's code."""
    return list(session.scalars(select(District.code).order_by(District.code)))


def served_district_code(*, lat: float, lon: float):
    """A SELECT of only the code of the served district at a point (no row outside the served area): the SOS
    composes it into its one read and needs no polygon."""
    point = func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326)
    return select(District.code).where(District.served, func.ST_Intersects(District.geom, point)).limit(1)


def require_district_at(session, *, lat: float, lon: float) -> District:
    """Like district_at, but 404 outside the served area."""
    district = district_at(session, lat=lat, lon=lon)
    if district is None:
        raise NotFound("This point is outside the served area.")
    return district


def dong_at(session, *, lat: float, lon: float, district_code: str) -> Dong | None:
    """The 행정동 of the district that contains the point, else that district's nearest one.

    The dong boundaries (2021) and the districts' (2015) come from different surveys and disagree by up to
    800 m (data/SOURCES.md): a point inside one district's polygon can lie in a neighbouring district's dong,
    and near the Han in none of its own."""
    point = func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326)
    of_district = select(Dong).where(Dong.district_code == district_code)
    containing = session.scalar(of_district.where(func.ST_Intersects(Dong.geom, point)).order_by(Dong.code).limit(1))
    if containing is not None:
        return containing
    # A district has at most a few dozen dongs: the exact distance to each is cheap.
    return session.scalar(of_district.order_by(func.ST_Distance(func.Geography(Dong.geom), func.Geography(point)),
                                               Dong.code).limit(1))


def load_boundaries(session, *, districts, dongs) -> tuple[int, int]:
    """Upsert district and dong records (from geo.boundaries) in one transaction."""
    for rec in districts:
        session.merge(District(code=rec.code, name=rec.name, name_en=rec.name_en,
                               geom=from_shape(rec.geometry, srid=4326)))
    session.flush()
    for rec in dongs:
        session.merge(Dong(code=rec.code, name=rec.name, district_code=rec.district_code,
                           geom=from_shape(rec.geometry, srid=4326)))
    session.commit()
    session.execute(text("ANALYZE districts; ANALYZE dongs"))
    return len(districts), len(dongs)
