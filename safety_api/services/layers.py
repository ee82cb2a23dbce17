"""Map layers for the operator console: district outlines, the street network, every facility of a district."""
import json

from sqlalchemy import text

from safety_api.errors import NotFound
from safety_api.realtime import events

# GeoJSON with 6 decimals (~0.1 m) keeps the payloads small; ST_AsGeoJSON answers [lon, lat].
_DISTRICT = text("""
    SELECT code, name, name_en, ST_AsGeoJSON(geom, 6) AS geometry,
           ST_XMin(geom) AS x0, ST_YMin(geom) AS y0, ST_XMax(geom) AS x1, ST_YMax(geom) AS y1
    FROM districts WHERE code = :code
""")
_DONGS = text("""
    SELECT code, name, ST_AsGeoJSON(geom, 6) AS geometry FROM dongs WHERE district_code = :code ORDER BY code
""")
# A facility belongs to the district whose polygon contains it (the GiST index on districts.geom answers).
_FACILITIES = text("""
    SELECT f.id, f.camera_count, round(ST_X(f.geom::geometry)::numeric, 6) AS lon,
           round(ST_Y(f.geom::geometry)::numeric, 6) AS lat
    FROM facilities f JOIN districts d ON ST_Intersects(d.geom, f.geom::geometry)
    WHERE d.code = :code AND f.kind = :kind
    ORDER BY f.id
""")
_STREETS = text("""
    SELECT e.id, e.highway, e.name, e.length_m, e.covered_m, ST_AsGeoJSON(e.geom, 6) AS geometry
    FROM street_edges e
    WHERE (CAST(:x0 AS float8) IS NULL
           OR e.geom && ST_MakeEnvelope(CAST(:x0 AS float8), CAST(:y0 AS float8), CAST(:x1 AS float8),
                                        CAST(:y1 AS float8), 4326))
      AND (CAST(:district AS text) IS NULL
           OR EXISTS (SELECT 1 FROM districts d WHERE d.code = :district AND ST_Intersects(d.geom, e.geom)))
    ORDER BY e.id
    LIMIT :limit
""")


def district_outline(session, *, code: str) -> dict:
    """A district's boundary, bounding box and 행정동 as GeoJSON; 404 for an unknown code."""
    row = session.execute(_DISTRICT, {"code": code}).first()
    if row is None:
        raise NotFound("No such district.")
    dongs = [{"type": "Feature", "geometry": json.loads(d.geometry), "properties": {"code": d.code, "name": d.name}}
             for d in session.execute(_DONGS, {"code": code})]
    return {"code": row.code, "name": row.name, "name_en": row.name_en, "boundary": json.loads(row.geometry),
            "bbox": [row.x0, row.y0, row.x1, row.y1], "dongs": {"type": "FeatureCollection", "features": dongs}}


def facilities_of_district(session, *, code: str, kind: str) -> dict:
    """Every facility of one kind in a district, compact: parallel ids and a flat [lon, lat, ...] array."""
    if session.execute(text("SELECT 1 FROM districts WHERE code = :code"), {"code": code}).first() is None:
        raise NotFound("No such district.")
    rows = session.execute(_FACILITIES, {"code": code, "kind": kind}).all()
    coords = []
    for r in rows:
        coords += (float(r.lon), float(r.lat))
    return {"kind": kind, "district": code, "count": len(rows), "cameras": sum(r.camera_count for r in rows),
            "ids": [str(r.id) for r in rows], "coords": coords}


def streets(session, *, bbox=None, district: str | None = None, limit: int) -> dict:
    """Street edges as a GeoJSON FeatureCollection, within a bbox and/or a district, with camera coverage;
    `truncated` when more edges than `limit` matched. 404 for an unknown district."""
    if district is not None and session.execute(text("SELECT 1 FROM districts WHERE code = :code"),
                                                {"code": district}).first() is None:
        raise NotFound("No such district.")
    x0, y0, x1, y1 = bbox or (None, None, None, None)
    rows = session.execute(_STREETS, {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "district": district,
                                      "limit": limit + 1}).all()
    features = [{"type": "Feature", "geometry": json.loads(r.geometry), "properties": {
        "id": str(r.id), "highway": r.highway, "name": r.name, "length_m": round(r.length_m, 1),
        "covered_ratio": round(min(1.0, r.covered_m / r.length_m), 2) if r.length_m else 0.0}}
        for r in rows[:limit]]
    return {"type": "FeatureCollection", "features": features, "truncated": len(rows) > limit}


def echo_heartbeat(emitter, *, sid: str, nonce: str) -> bool:
    """Send a nonce back to one console socket through Redis; answers whether Redis took it.

    The app's own emits reach local sockets even with Redis down (python-socketio delivers in-process
    first), so the echo goes through a write-only emitter: it arrives only if the queue and this
    process's listener both work, which is what every event from other processes depends on.
    """
    return emitter.emit(events.CONSOLE_HEARTBEAT, {"nonce": nonce}, namespace=events.CONTROL, room=sid)


