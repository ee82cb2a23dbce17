"""Loading the safety geodata and computing each street edge's safety attributes in PostGIS."""
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert

from safety_api.clock import utcnow
from safety_api.errors import Invalid
from safety_api.models import DataVersion, Facility
from safety_api.services.facilities import IN_SERVICE, WORKING_CAMERAS

STREET_NETWORK = "street_network"


@dataclass(frozen=True)
class SafetyParams:
    """Radii of the spatial joins that give an edge its safety attributes (metres)."""

    cctv_m: float = 30.0
    bell_m: float = 50.0
    light_m: float = 30.0
    safe_house_m: float = 100.0


@dataclass(frozen=True)
class ImportReport:
    kind: str
    loaded: int
    removed: int  # rows of the kind the file no longer has
    errors: list  # geo.public_data.RowError


def import_facilities(session, *, kind: str, result) -> ImportReport:
    """Make an importer's records the whole layer of their kind, in one transaction: upsert by (kind, source_id)
    and delete the kind's rows the file no longer has (a camera whose position was corrected is a new site, a
    renamed safe house a new id; the old ones must not go on counting). Bad rows are reported, and their
    facilities go too until the file is put right. A file without one good row changes nothing (Invalid): it
    is the wrong file far more often than a layer to empty. Nothing refers to a facility by key (an incident
    keeps its nearest cameras as a copy), so deleting breaks nothing."""
    if not result.records:
        raise Invalid(f"No row of this file could be loaded ({len(result.errors)} rejected); "
                      f"the {kind} layer is unchanged.")
    rows = [{"kind": r.kind, "source_id": r.source_id, "name": r.name or "", "camera_count": r.camera_count,
             "attributes": r.attributes, "geom": f"SRID=4326;POINT({r.lon} {r.lat})", "updated_at": utcnow()}
            for r in result.records]
    for start in range(0, len(rows), 2000):
        stmt = insert(Facility).values(rows[start:start + 2000])
        stmt = stmt.on_conflict_do_update(
            constraint="uq_facilities_kind_source",
            set_={c: stmt.excluded[c] for c in ("name", "camera_count", "attributes", "geom", "updated_at")})
        session.execute(stmt)
    removed = session.execute(
        delete(Facility).where(Facility.kind == kind, Facility.source_id.not_in([r["source_id"] for r in rows])))
    session.commit()
    return ImportReport(kind=kind, loaded=len(rows), removed=removed.rowcount, errors=list(result.errors))


def load_street_network(session, *, edges, params: SafetyParams) -> int:
    """Replace the street network with the importer's edges and compute safety attributes; one transaction."""
    session.execute(text("DELETE FROM street_edges"))
    rows = [{"id": i + 1, "source": e.source_node, "target": e.target_node, "osm_way_id": e.osm_way_id,
             "highway": e.highway, "name": e.name, "length_m": e.length_m,
             "geom": "SRID=4326;LINESTRING(" + ",".join(f"{lon} {lat}" for lon, lat in e.coords) + ")"}
            for i, e in enumerate(edges)]
    if rows:
        session.execute(text(
            "INSERT INTO street_edges (id, source, target, osm_way_id, highway, name, length_m, geom) "
            "VALUES (:id, :source, :target, :osm_way_id, :highway, :name, :length_m, ST_GeomFromEWKT(:geom))"),
            rows)
    compute_safety_attributes(session, params=params, commit=False)
    session.commit()
    return len(rows)


# Only facilities in service count (facilities.IN_SERVICE): a removed or broken camera covers nothing, and a
# closed safe house is no refuge.
_SAFETY_SQL = f"""
WITH e AS (SELECT id, geom::geography AS g, ST_Transform(geom, 5179) AS m FROM street_edges)
UPDATE street_edges s SET
  cctv_weight = COALESCE((SELECT sum({WORKING_CAMERAS}) FROM facilities f
                          WHERE f.kind = 'cctv' AND {IN_SERVICE} AND ST_DWithin(f.geom, e.g, :cctv_m)), 0),
  covered_m = COALESCE((SELECT ST_Length(ST_Intersection(e.m, ST_Union(ST_Buffer(ST_Transform(f.geom::geometry, 5179),
                                                                                  :cctv_m, 8))))
                        FROM facilities f
                        WHERE f.kind = 'cctv' AND {IN_SERVICE} AND ST_DWithin(f.geom, e.g, :cctv_m)), 0),
  bell_count = (SELECT count(*) FROM facilities f WHERE f.kind = 'bell' AND ST_DWithin(f.geom, e.g, :bell_m)),
  light_count = (SELECT count(*) FROM facilities f
                 WHERE f.kind = 'streetlight' AND ST_DWithin(f.geom, e.g, :light_m)),
  safe_house_near = EXISTS (SELECT 1 FROM facilities f
                            WHERE f.kind = 'safe_house' AND {IN_SERVICE} AND ST_DWithin(f.geom, e.g, :safe_house_m))
FROM e WHERE s.id = e.id
"""


def compute_safety_attributes(session, *, params: SafetyParams, commit: bool = True):
    """Join each edge with the facilities around it (cameras by count, covered metres, bells, lights)."""
    session.execute(text(_SAFETY_SQL), params.__dict__)
    # covered_m can exceed length_m by float noise of the projection; clamp so ratios stay in [0, 1].
    session.execute(text("UPDATE street_edges SET covered_m = LEAST(covered_m, length_m)"))
    bump_version(session, name=STREET_NETWORK, params=params)
    if commit:
        session.commit()


def bump_version(session, *, name: str, params: SafetyParams):
    """Record a new version of the street network, derived from its content, so api processes reload.

    A network without edges has no version: it is not loaded, and routes answer 503 as before any import (a
    facility layer imported first recomputes the empty network's attributes and used to record one)."""
    digest = session.execute(text(
        "SELECT md5(string_agg(id || ':' || length_m || ':' || covered_m || ':' || cctv_weight || ':' || bell_count"
        " || ':' || light_count || ':' || safe_house_near, ',' ORDER BY id)) FROM street_edges")).scalar()
    if digest is None:
        session.execute(delete(DataVersion).where(DataVersion.name == name))
        return
    version = hashlib.sha1((digest + json.dumps(params.__dict__, sort_keys=True)).encode()).hexdigest()[:16]
    session.merge(DataVersion(name=name, version=version, updated_at=utcnow()))


def current_version(session, name: str = STREET_NETWORK) -> str | None:
    """The version string of a dataset, or None before it is loaded."""
    row = session.get(DataVersion, name)
    return row.version if row else None
