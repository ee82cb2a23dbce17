"""Read Seoul's district (자치구) and administrative-dong (행정동) boundaries from GeoJSON."""
import json
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape

# GeoJSON without a crs member is WGS84 lon/lat by RFC 7946; older files name it explicitly.
LONLAT_CRS_NAMES = frozenset({
    "urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84", "EPSG:4326", "urn:ogc:def:crs:EPSG::4326",
})


@dataclass(frozen=True)
class DistrictRecord:
    code: str
    name: str
    name_en: str | None
    geometry: MultiPolygon


@dataclass(frozen=True)
class DongRecord:
    code: str
    name: str
    district_code: str
    geometry: MultiPolygon


def read_districts(path):
    """Read 자치구 features (SIG_CD, SIG_KOR_NM, SIG_ENG_NM) into district records."""
    return [
        DistrictRecord(
            code=str(props["SIG_CD"]),
            name=props["SIG_KOR_NM"],
            name_en=props.get("SIG_ENG_NM"),
            geometry=multipolygon(geometry),
        )
        for props, geometry in _features(path)
    ]


def read_dongs(path):
    """Read 행정동 features (adm_cd2, adm_nm, sgg) into dong records."""
    records = []
    for props, geometry in _features(path):
        code = str(props["adm_cd2"])
        records.append(DongRecord(
            code=code,
            # adm_nm is "서울특별시 관악구 난곡동"; the dong is the last word.
            name=props["adm_nm"].split()[-1],
            district_code=str(props.get("sgg") or code[:5]),
            geometry=multipolygon(geometry),
        ))
    return records


def multipolygon(geojson_geometry):
    """Return a valid MultiPolygon from a GeoJSON Polygon or MultiPolygon, repairing it if needed."""
    geom = shape(geojson_geometry)
    if not geom.is_valid:
        # 강서구 in the JUSO file has a self-touching ring; PostGIS predicates need valid shapes.
        geom = shapely.make_valid(geom)
    # Flatten two levels: make_valid may return a collection holding a MultiPolygon and stray lines.
    parts = shapely.get_parts(shapely.get_parts(geom))
    polygons = [part for part in parts if isinstance(part, Polygon) and not part.is_empty]
    if not polygons:
        raise ValueError(f"not a polygonal geometry: {geom.geom_type}")
    return MultiPolygon(polygons)


def _features(path):
    """Yield (properties, geometry) of each feature, refusing files not in lon/lat."""
    doc = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    crs = (doc.get("crs") or {}).get("properties", {}).get("name")
    if crs is not None and crs not in LONLAT_CRS_NAMES:
        raise ValueError(f"{path}: expected WGS84 lon/lat GeoJSON, found crs {crs}")
    for feature in doc["features"]:
        yield feature["properties"], feature["geometry"]
