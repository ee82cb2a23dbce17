"""Safety facilities near a point: geography KNN within a radius, on the GiST index."""
from sqlalchemy import bindparam, column, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import String

# What is in service, in one place for every query (the facilities table aliased f): a camera site's cameras
# without a status note (geo.public_data.in_service; rows imported before that count was kept count all of
# theirs), and a safe house unless its file says it is not operating (운영여부 N).
WORKING_CAMERAS = "COALESCE((f.attributes->>'working_cameras')::int, f.camera_count)"
SAFE_HOUSE_OPEN = "f.attributes->'in_operation' IS DISTINCT FROM 'false'::jsonb"
IN_SERVICE = f"""CASE f.kind WHEN 'cctv' THEN {WORKING_CAMERAS} > 0
                             WHEN 'safe_house' THEN {SAFE_HOUSE_OPEN} ELSE true END"""

# Prebuilt once: the hot path pays no query-building cost. `geom <-> point` on geography ranks by metres.
# Only facilities in service: the SOS offers its operators these cameras to look through.
_NEARBY = text(f"""
    SELECT id, kind, source_id, name, camera_count, attributes,
           ST_X(geom::geometry) AS lon, ST_Y(geom::geometry) AS lat,
           ST_Distance(geom, p.g) AS distance_m
    FROM facilities f, (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography AS g) AS p
    WHERE kind = ANY(:kinds) AND ST_DWithin(geom, p.g, :radius) AND {IN_SERVICE}
    ORDER BY geom <-> p.g
    LIMIT :limit
""").bindparams(bindparam("kinds", type_=ARRAY(String)))


# The whole FeatureCollection is built by PostgreSQL: the hot path does no per-row Python work. It lists what the
# files publish, out of service too, with the status attributes (a camera's `note` and the site's
# `working_cameras`, a safe house's `in_operation`): a removed camera's note is worth seeing on a map.
_NEARBY_GEOJSON = text("""
    WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography AS g),
    hits AS (
        SELECT f.*, ST_Distance(f.geom, p.g) AS distance_m
        FROM facilities f, p
        WHERE f.kind = ANY(:kinds) AND ST_DWithin(f.geom, p.g, :radius)
        ORDER BY f.geom <-> p.g
        LIMIT :limit)
    SELECT json_build_object('type', 'FeatureCollection', 'features', COALESCE(json_agg(json_build_object(
        'type', 'Feature',
        'geometry', ST_AsGeoJSON(geom, 7)::json,
        'properties', attributes || jsonb_build_object(
            'id', id::text, 'kind', kind, 'distance_m', round(distance_m::numeric, 1), 'name', name,
            'source_id', source_id)
            || CASE WHEN kind = 'cctv' THEN jsonb_build_object('camera_count', camera_count) ELSE '{}' END
        ) ORDER BY distance_m), '[]'::json))::text
    FROM hits
""").bindparams(bindparam("kinds", type_=ARRAY(String)))


def nearby_geojson(conn, *, lat: float, lon: float, radius_m: float, kinds, limit: int) -> str:
    """The same query as `nearby`, answered as GeoJSON text ready to send (on a session or a connection)."""
    return conn.execute(_NEARBY_GEOJSON, {"lat": lat, "lon": lon, "radius": radius_m, "kinds": list(kinds),
                                             "limit": limit}).scalar_one()


def nearby(session, *, lat: float, lon: float, radius_m: float, kinds, limit: int) -> list:
    """Facilities in service of the given kinds within radius_m of a point, nearest first."""
    return session.execute(_NEARBY, {"lat": lat, "lon": lon, "radius": radius_m, "kinds": list(kinds),
                                     "limit": limit}).all()


def nearby_select():
    """The same query as a SELECT to compose into a bigger statement, its parameters (lat, lon, radius, kinds,
    limit) given when that statement runs (the SOS reads everything in one)."""
    return _NEARBY.columns(column("id"), column("kind"), column("source_id"), column("name"), column("camera_count"),
                           column("attributes"), column("lon"), column("lat"), column("distance_m"))


def as_feature(row) -> dict:
    """A GeoJSON Feature for one facility row."""
    props = {"id": str(row.id), "kind": row.kind, "distance_m": round(row.distance_m, 1), "name": row.name,
             "source_id": row.source_id}
    if row.kind == "cctv":
        props["camera_count"] = row.camera_count
    props.update(row.attributes or {})
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [row.lon, row.lat]},
            "properties": props}
