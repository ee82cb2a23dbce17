import json
from pathlib import Path

import pytest
import shapely
from shapely.geometry import MultiPolygon, shape

from geo.boundaries import multipolygon, read_districts, read_dongs
from geo.projection import coords_to_metres

DATA = Path(__file__).resolve().parents[2] / "data"
GWANAK_DONGS = {"보라매동", "청림동", "행운동", "낙성대동", "중앙동", "인헌동", "남현동",
                "서원동", "신원동", "서림동", "신사동", "신림동", "난향동", "조원동",
                "대학동", "은천동", "성현동", "청룡동", "난곡동", "삼성동", "미성동"}


@pytest.fixture(scope="module")
def districts():
    return {record.code: record for record in read_districts(DATA / "seoul_districts.geojson")}


@pytest.fixture(scope="module")
def dongs():
    return read_dongs(DATA / "seoul_admin_dongs.geojson")


def km2(geometry):
    return shapely.transform(geometry, coords_to_metres).area / 1e6


def test_seoul_has_25_valid_districts_and_gwanak_is_11620(districts):
    assert len(districts) == 25
    gwanak = districts["11620"]
    assert (gwanak.name, gwanak.name_en) == ("관악구", "Gwanak-gu")
    assert all(isinstance(d.geometry, MultiPolygon) and d.geometry.is_valid for d in districts.values())
    assert km2(gwanak.geometry) == pytest.approx(29.6, abs=0.1)


def test_the_self_intersecting_gangseo_ring_is_repaired_without_losing_area(districts):
    gangseo = next(d for d in districts.values() if d.name == "강서구")
    features = json.loads((DATA / "seoul_districts.geojson").read_text(encoding="utf-8"))["features"]
    raw = shape(next(f["geometry"] for f in features if f["properties"]["SIG_CD"] == gangseo.code))
    assert not raw.is_valid
    assert gangseo.geometry.area == pytest.approx(raw.area, rel=1e-9)


def test_seoul_has_425_dongs_and_gwanak_21(dongs):
    assert len({dong.code for dong in dongs}) == 425
    gwanak = [dong for dong in dongs if dong.district_code == "11620"]
    assert {dong.name for dong in gwanak} == GWANAK_DONGS
    assert all(len(dong.code) == 10 and dong.code.startswith("11620") for dong in gwanak)
    assert all(isinstance(d.geometry, MultiPolygon) and d.geometry.is_valid for d in dongs)


def test_gwanak_dongs_tile_the_district(districts, dongs):
    union = shapely.union_all([dong.geometry for dong in dongs if dong.district_code == "11620"])
    assert km2(union) == pytest.approx(km2(districts["11620"].geometry), rel=0.02)


def test_nangok_dong_matches_its_osm_boundary(dongs):
    nangok = next(dong for dong in dongs if dong.name == "난곡동")
    assert nangok.code == "1162077500"
    feature = json.loads((DATA / "gwanak_nangok_dong_boundary_osm.geojson").read_text(encoding="utf-8"))["features"][0]
    osm = multipolygon(feature["geometry"])
    overlap = km2(nangok.geometry.intersection(osm)) / km2(nangok.geometry.union(osm))
    assert overlap > 0.85


def test_polygons_are_promoted_to_multipolygons():
    square = {"type": "Polygon", "coordinates": [[[126.9, 37.4], [127.0, 37.4], [127.0, 37.5], [126.9, 37.4]]]}
    result = multipolygon(square)
    assert isinstance(result, MultiPolygon) and len(result.geoms) == 1
    assert result.geoms[0].equals(shape(square))


def test_files_in_projected_crs_are_refused(tmp_path):
    path = tmp_path / "districts.geojson"
    path.write_text(json.dumps({
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::5179"}},
        "features": [],
    }), encoding="utf-8")
    with pytest.raises(ValueError, match="expected WGS84"):
        read_districts(path)
