"""Safety geodata on real PostGIS: imports, safety joins, facilities, routes, and pgRouting as the oracle."""
import random
from pathlib import Path

import pytest
from sqlalchemy import text

from geo.public_data import read_facilities
from geo.routing import Unreachable
from safety_api.cli import GWANAK_LAYERS, safety_params
from safety_api.services import geodata, routes
from tests.factories import auth_header, create_user

GWANAK_POINT = {"lat": 37.4705, "lon": 126.9190}


def count(db, sql, **params):
    return db.session.execute(text(sql), params).scalar()


def test_the_demo_layers_are_loaded_with_their_published_counts(db):
    assert count(db, "SELECT count(*) FROM facilities WHERE kind='cctv'") == 4552
    assert count(db, "SELECT sum(camera_count) FROM facilities WHERE kind='cctv'") == 5366
    assert count(db, "SELECT count(*) FROM facilities WHERE kind='bell'") == 988
    assert count(db, "SELECT count(*) FROM facilities WHERE kind='police'") == 9
    assert count(db, "SELECT count(*) FROM facilities WHERE kind='safe_house'") == 51
    assert count(db, "SELECT count(*) FROM facilities WHERE kind='parcel_box'") == 16
    assert count(db, "SELECT count(*) FROM street_edges") > 1500


def test_a_reimport_updates_in_place_and_never_duplicates(app, db):
    before = count(db, "SELECT count(*) FROM facilities WHERE kind='bell'")
    result = read_facilities("bell", app.config["DATA_DIR"] + "/gwanak_emergency_bells.csv")
    report = geodata.import_facilities(db.session, kind="bell", result=result)
    assert report.loaded == 988 and report.removed == 0 and report.errors == []
    assert count(db, "SELECT count(*) FROM facilities WHERE kind='bell'") == before


def demo_file(app, kind) -> Path:
    return Path(app.config["DATA_DIR"], dict(GWANAK_LAYERS)[kind])


@pytest.fixture
def puts_the_demo_layers_back(app, db):
    """Call with a kind a test imports something else of: the demo's file of it is imported again after."""
    kinds = []
    yield kinds.append
    db.session.rollback()
    for kind in kinds:
        result = app.test_cli_runner().invoke(args=["geo", "import", kind, str(demo_file(app, kind))])
        assert result.exit_code == 0, result.output


def test_a_cp949_file_with_bad_rows_loads_the_good_rows_in_one_transaction(app, db, tmp_path,
                                                                          puts_the_demo_layers_back):
    puts_the_demo_layers_back("safe_house")
    source = demo_file(app, "safe_house").read_text(encoding="utf-8").splitlines()
    broken = source[:3] + [source[3].replace("37.", "NaN", 1)] + source[4:6]
    path = tmp_path / "safe_houses_cp949.csv"
    path.write_bytes(("\n".join(broken) + "\n").encode("cp949"))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["geo", "import", "safe_house", str(path)])
    assert result.exit_code == 0, result.output
    assert "safe_house: 4 loaded, 47 removed (not in the file), 1 rows rejected" in result.output
    assert "row 4:" in result.output
    assert count(db, "SELECT count(*) FROM facilities WHERE kind='safe_house'") == 4  # the file is the layer


def test_a_reimport_removes_what_the_file_no_longer_has(app, db, tmp_path, puts_the_demo_layers_back):
    """A camera whose published position was corrected is a new site; its old one must not stay, nor a bell the
    file dropped. Other kinds are left alone."""
    puts_the_demo_layers_back("cctv")
    puts_the_demo_layers_back("bell")
    cameras = demo_file(app, "cctv").read_text(encoding="utf-8")
    moved = "A2021 1-1RZ 신림6배수지공원#01(삼성동 336-8),37.4682,126.9265"
    assert moved in cameras
    (tmp_path / "cctv.csv").write_text(cameras.replace(moved, moved.replace("37.4682", "37.4681")), encoding="utf-8")
    bells = demo_file(app, "bell").read_text(encoding="utf-8").splitlines()
    (tmp_path / "bells.csv").write_text("\n".join(bells[:1] + bells[2:]) + "\n", encoding="utf-8")
    dropped_bell = read_facilities("bell", demo_file(app, "bell")).records[0].source_id
    police = count(db, "SELECT count(*) FROM facilities WHERE kind = 'police'")
    runner = app.test_cli_runner()
    for kind, name in [("cctv", "cctv.csv"), ("bell", "bells.csv")]:
        result = runner.invoke(args=["geo", "import", kind, str(tmp_path / name)])
        assert result.exit_code == 0 and f"{kind}: " in result.output and "1 removed" in result.output, result.output
    sites = set(db.session.execute(text("SELECT source_id FROM facilities WHERE kind = 'cctv'")).scalars())
    assert "cctv:37.4681,126.9265" in sites and "cctv:37.4682,126.9265" not in sites and len(sites) == 4552
    assert count(db, "SELECT count(*) FROM facilities WHERE kind = 'bell'") == 987
    assert count(db, "SELECT count(*) FROM facilities WHERE source_id = :id", id=dropped_bell) == 0
    assert count(db, "SELECT count(*) FROM facilities WHERE kind = 'police'") == police


def test_a_file_without_one_good_row_changes_nothing(app, db, tmp_path):
    """The wrong file, or one whose every row is broken, must not empty a layer."""
    header = demo_file(app, "bell").read_text(encoding="utf-8").splitlines()[0]
    (tmp_path / "bells.csv").write_text(header + "\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["geo", "import", "bell", str(tmp_path / "bells.csv")])
    assert result.exit_code != 0 and "No row of this file" in result.output and "unchanged" in result.output
    assert count(db, "SELECT count(*) FROM facilities WHERE kind = 'bell'") == 988


def test_edges_carry_safety_attributes_from_spatial_joins(db):
    covered, total = db.session.execute(text(
        "SELECT sum(covered_m), sum(length_m) FROM street_edges")).one()
    assert 0.2 < covered / total < 0.95
    assert count(db, "SELECT count(*) FROM street_edges WHERE covered_m > length_m + 1e-6") == 0
    # An edge with cameras within 30 m has covered metres, and one without has none.
    assert count(db, "SELECT count(*) FROM street_edges WHERE cctv_weight = 0 AND covered_m > 0") == 0
    assert count(db, "SELECT count(*) FROM street_edges WHERE bell_count > 0") > 50
    sample = db.session.execute(text("SELECT id, cctv_weight FROM street_edges WHERE cctv_weight > 0 LIMIT 1")).one()
    truth = count(db, "SELECT sum((f.attributes->>'working_cameras')::int) FROM facilities f, street_edges e "
                      "WHERE e.id = :id AND f.kind = 'cctv' AND ST_DWithin(f.geom, e.geom::geography, 30)",
                  id=sample.id)
    assert sample.cctv_weight == truth


REMOVED_CAMERAS = {"lat": 37.4689, "lon": 126.9240}  # [철거] DG024 1-2S and 2-2S, 난곡동 646-191


def test_removed_and_broken_cameras_give_a_street_no_safety(db):
    """Every edge counts the working cameras within 30 m; by 난곡동 646-191 and 646-169, where four cameras
    were removed, the edges count fewer cameras than the file lists."""
    by_edge = db.session.execute(text(
        "SELECT e.id, e.cctv_weight, e.covered_m, sum((f.attributes->>'working_cameras')::int) AS working,"
        " sum(f.camera_count) AS listed FROM street_edges e JOIN facilities f ON f.kind = 'cctv'"
        " AND ST_DWithin(f.geom, e.geom::geography, 30) GROUP BY e.id")).all()
    assert all(e.cctv_weight == e.working for e in by_edge)
    assert all(e.covered_m == 0 for e in by_edge if e.working == 0)
    removed = [e for e in by_edge if e.listed > e.working]
    assert removed and all(e.cctv_weight < e.listed for e in removed)
    near_646_191 = count(db, "SELECT count(*) FROM street_edges WHERE ST_DWithin(geom::geography, "
                             "ST_MakePoint(:lon, :lat)::geography, 30)", **REMOVED_CAMERAS)
    assert near_646_191 and any(e.listed - e.working >= 2 for e in removed)


def test_a_closed_safe_house_makes_no_street_safer(db):
    """Built in this test's transaction and rolled back: the demo's 51 safe houses are all open."""
    edge = db.session.execute(text(
        "SELECT id, ST_X(ST_LineInterpolatePoint(geom, 0.5)) AS lon, ST_Y(ST_LineInterpolatePoint(geom, 0.5)) AS lat"
        " FROM street_edges e WHERE NOT safe_house_near ORDER BY id LIMIT 1")).one()
    db.session.execute(text(
        "INSERT INTO facilities (kind, source_id, name, camera_count, attributes, geom) VALUES ('safe_house',"
        " 'safe_house:test', '문 닫은 가게', 1, '{\"in_operation\": false}', ST_MakePoint(:lon, :lat)::geography)"),
        {"lon": edge.lon, "lat": edge.lat})
    geodata.compute_safety_attributes(db.session, params=safety_params(), commit=False)
    assert count(db, "SELECT safe_house_near FROM street_edges WHERE id = :id", id=edge.id) is False
    db.session.execute(text("UPDATE facilities SET attributes = '{\"in_operation\": true}' "
                            "WHERE source_id = 'safe_house:test'"))
    geodata.compute_safety_attributes(db.session, params=safety_params(), commit=False)
    assert count(db, "SELECT safe_house_near FROM street_edges WHERE id = :id", id=edge.id) is True
    db.session.rollback()


def test_facilities_list_a_removed_camera_with_its_note_and_no_working_camera(client):
    answer = client.get("/api/v1/facilities", query_string={**REMOVED_CAMERAS, "radius": 5, "kinds": "cctv"})
    [site] = [feature["properties"] for feature in answer.json["features"]
              if feature["properties"]["source_id"] == "cctv:37.4689,126.924"]
    assert site["camera_count"] == 2 and site["working_cameras"] == 0
    assert {camera["note"] for camera in site["cameras"]} == {"철거"}


def test_facilities_come_nearest_first_in_metres_with_a_kinds_filter(client):
    answer = client.get("/api/v1/facilities", query_string={**GWANAK_POINT, "radius": 300, "kinds": "cctv,bell",
                                                             "limit": 20})
    assert answer.status_code == 200
    features = answer.json["features"]
    distances = [f["properties"]["distance_m"] for f in features]
    assert distances == sorted(distances) and distances[-1] <= 300
    assert {f["properties"]["kind"] for f in features} <= {"cctv", "bell"}
    assert features[0]["geometry"]["type"] == "Point"


@pytest.mark.parametrize("lat, lon, code, dong", [
    (37.4784, 126.9516, "11620", "청룡동"),
    # In 용산구's polygon and in 사당2동's (동작구), whose 2021 boundary reaches 618 m past its 2015 district's;
    # no dong of 용산구 holds the point, and 이촌1동 is 13 m away.
    (37.5121, 126.9777, "11170", "이촌1동"),
])
def test_the_dong_at_a_point_is_one_of_its_districts(client, lat, lon, code, dong):
    answer = client.get("/api/v1/districts/at", query_string={"lat": lat, "lon": lon})
    assert answer.status_code == 200 and (answer.json["code"], answer.json["dong"]) == (code, dong)


def test_facilities_default_to_the_documented_kinds_and_streetlights_are_asked_for(client):
    """API.md's default is cctv,bell,police,safe_house,parcel_box: 보라매 park's streetlights come only on request."""
    at_boramae = {"lat": 37.487989, "lon": 126.914577, "radius": 100, "limit": 200}
    default = client.get("/api/v1/facilities", query_string=at_boramae).json["features"]
    lights = client.get("/api/v1/facilities", query_string={**at_boramae, "kinds": "streetlight"}).json["features"]
    assert lights and "streetlight" not in {f["properties"]["kind"] for f in default}


@pytest.mark.parametrize("query, field", [
    ({"radius": 5000}, "radius"), ({"radius": 0}, "radius"), ({"limit": 1000}, "limit"),
    ({"kinds": "cctv,spaceship"}, "kinds"), ({"lat": "NaN"}, "lat"), ({"lon": 200}, "lon")])
def test_facilities_bounds_are_clear_422s(client, query, field):
    answer = client.get("/api/v1/facilities", query_string={**GWANAK_POINT, **query})
    assert answer.status_code == 422 and answer.content_type == "application/problem+json"
    assert field in [e["field"] for e in answer.json["errors"]]


def test_routes_answer_both_profiles_with_the_contract_properties(client):
    query = {"from": "37.4705,126.9190", "to": "37.4650,126.9260"}
    safe = client.get("/api/v1/routes", query_string={**query, "profile": "safe"})
    shortest = client.get("/api/v1/routes", query_string={**query, "profile": "shortest"})
    assert safe.status_code == shortest.status_code == 200
    s, p = safe.json["properties"], shortest.json["properties"]
    assert set(s) >= {"profile", "distance_m", "duration_s", "cctv_count", "bell_count", "covered_ratio",
                      "safety_score", "shortest_distance_m", "detour_ratio"}
    assert safe.json["geometry"]["type"] == "LineString"
    assert s["covered_ratio"] >= p["covered_ratio"] and s["detour_ratio"] <= 1.4 + 1e-9
    assert p["distance_m"] == pytest.approx(s["shortest_distance_m"])


@pytest.mark.parametrize("query, status, field", [
    ({"from": "37.56,126.97", "to": "37.4650,126.9260"}, 422, "from"),  # city hall: off this network
    ({"from": "37.4705", "to": "37.4650,126.9260"}, 422, "from"),
    ({"from": "nan,126.9", "to": "37.4650,126.9260"}, 422, "from"),
    ({"from": "37.4705,126.9190", "to": "37.4650,126.9260", "profile": "fastest"}, 422, "profile")])
def test_bad_route_requests_are_422s(client, query, status, field):
    answer = client.get("/api/v1/routes", query_string=query)
    assert answer.status_code == status and field in [e["field"] for e in answer.json["errors"]]


def test_a_pair_farther_apart_than_a_walk_is_refused_before_any_search(client):
    """On a city's graph a cross-city search costs the process that serves SOS half a second of CPU."""
    answer = client.get("/api/v1/routes", query_string={"from": "37.4705,126.9190", "to": "37.6688,127.0471"})
    assert answer.status_code == 422 and "km apart" in answer.json["detail"]  # to 도봉구청, 25 km
    assert [e["field"] for e in answer.json["errors"]] == ["to"]


def engine_for(app, db):
    from safety_api.api.geodata import route_settings
    return routes.engine(db.session, settings=route_settings(app.config))


def test_shortest_equals_pgr_dijkstra_on_many_random_pairs(app, db):
    db.session.execute(text("CREATE EXTENSION IF NOT EXISTS pgrouting"))
    engine = engine_for(app, db)
    nodes = db.session.execute(text(
        "SELECT source AS id, ST_X(ST_StartPoint(geom)) AS lon, ST_Y(ST_StartPoint(geom)) AS lat FROM street_edges "
        "UNION SELECT target, ST_X(ST_EndPoint(geom)), ST_Y(ST_EndPoint(geom)) FROM street_edges")).all()
    rng, compared = random.Random(7), 0
    while compared < 60:
        a, b = rng.sample(nodes, 2)
        oracle = db.session.execute(text(
            "SELECT max(agg_cost) FROM pgr_dijkstra('SELECT id, source, target, length_m AS cost, "
            "length_m AS reverse_cost FROM street_edges', :a, :b, directed => false)"), {"a": a.id, "b": b.id}).scalar()
        if oracle is None:
            continue  # different components: the next test compares those
        route = engine.route((a.lon, a.lat), (b.lon, b.lat), profile="shortest", night=False)
        assert route.distance_m == pytest.approx(oracle, rel=1e-6, abs=1e-3), (a.id, b.id)
        compared += 1


def test_pairs_pgr_dijkstra_cannot_join_are_unreachable_for_the_engine(app, db):
    """The extract has four islands beside its large component; from a junction of each to one of the large
    component, pgRouting finds no path and the engine says Unreachable."""
    db.session.execute(text("CREATE EXTENSION IF NOT EXISTS pgrouting"))
    edges_sql = "SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM street_edges"
    components = db.session.execute(text(
        "SELECT DISTINCT ON (c.component) c.component, c.node, count(*) OVER (PARTITION BY c.component) AS size,"
        " ST_X(ST_StartPoint(e.geom)) AS lon, ST_Y(ST_StartPoint(e.geom)) AS lat"
        " FROM pgr_connectedComponents(:edges) c JOIN street_edges e ON e.source = c.node"
        " ORDER BY c.component, c.node"), {"edges": edges_sql}).all()
    mainland, *islands = sorted(components, key=lambda c: -c.size)
    assert len(islands) == 4
    engine = engine_for(app, db)
    for island in islands:
        path = db.session.execute(text("SELECT count(*) FROM pgr_dijkstra(:edges, :a, :b, directed => false)"),
                                  {"edges": edges_sql, "a": island.node, "b": mainland.node}).scalar()
        assert path == 0
        with pytest.raises(Unreachable):
            engine.route((island.lon, island.lat), (mainland.lon, mainland.lat), profile="shortest")


def test_safe_never_exceeds_its_bound_nor_loses_coverage_to_shortest(app, db):
    engine = engine_for(app, db)
    nodes = db.session.execute(text(
        "SELECT ST_X(ST_StartPoint(geom)), ST_Y(ST_StartPoint(geom)) FROM street_edges ORDER BY id")).all()
    rng, better, checked = random.Random(11), 0, 0
    for _ in range(150):
        a, b = rng.sample(nodes, 2)
        try:
            shortest = engine.route(tuple(a), tuple(b), profile="shortest", night=True)
            safe = engine.route(tuple(a), tuple(b), profile="safe", night=True)
        except Unreachable:  # an island: the test above compares those with pgRouting
            continue
        checked += 1
        assert safe.distance_m <= 1.4 * shortest.distance_m + 1e-6
        assert safe.covered_ratio >= shortest.covered_ratio - 1e-9
        better += safe.covered_ratio > shortest.covered_ratio + 1e-9
    assert checked >= 100 and better > 0


@pytest.mark.parametrize("role", ["citizen", "operator"])
def test_operators_and_citizens_may_both_ask_for_routes(client, db, role):
    user = create_user(db.session, role=role)
    assert client.get("/api/v1/routes", query_string={"from": "37.4705,126.9190", "to": "37.4650,126.9260"},
                      headers=auth_header(user)).status_code == 200


def test_a_changed_data_version_reloads_the_engine(app, db):
    first = engine_for(app, db)
    geodata.compute_safety_attributes(db.session, params=safety_params())  # same data: same version
    routes._cache["checked_at"] = 0
    assert engine_for(app, db) is first
    db.session.execute(text("UPDATE data_versions SET version = 'changed'"))
    db.session.commit()
    routes._cache["checked_at"] = 0
    assert engine_for(app, db) is not first


@pytest.fixture
def no_street_network(app, db, monkeypatch):
    """A deployment whose street network is not imported (yet): no edges, no version, no graph held. The demo's
    network is imported again after, with the same content and so the same version."""
    from safety_api.cli import GWANAK_NETWORK, import_network
    monkeypatch.setitem(routes._cache, "engines", None)
    monkeypatch.setitem(routes._cache, "checked_at", 0.0)
    db.session.execute(text("DELETE FROM street_edges"))
    db.session.execute(text("DELETE FROM data_versions"))
    db.session.commit()
    yield
    db.session.rollback()
    import_network(str(Path(app.config["DATA_DIR"], GWANAK_NETWORK)), lambda _line: None)


def test_routes_are_503_while_a_layer_is_imported_before_the_street_network(app, db, client, no_street_network,
                                                                           monkeypatch):
    """Importing cameras first recomputes the (empty) network's attributes: that is still no network, not a 500."""
    result = app.test_cli_runner().invoke(args=["geo", "import", "bell", app.config["DATA_DIR"] +
                                                "/gwanak_emergency_bells.csv"])
    assert result.exit_code == 0, result.output
    reads = []
    monkeypatch.setattr(routes, "load_graph", lambda *args: reads.append(args) or pytest.fail("nothing to read"))
    for _ in range(2):
        answer = client.get("/api/v1/routes", query_string={"from": "37.4705,126.9190", "to": "37.4650,126.9260"})
        assert answer.status_code == 503 and answer.content_type == "application/problem+json"
        assert "not loaded" in answer.json["detail"] and answer.headers["Retry-After"]
    assert reads == []  # as before any import: the version says there is nothing to read


def test_a_version_recorded_for_an_empty_network_is_still_no_network(app, db, client, no_street_network):
    """An older release recorded a version for an empty network; routes and escorts must not fail on it."""
    from safety_api.api.geodata import route_settings
    from safety_api.services import escort
    geodata.compute_safety_attributes(db.session, params=safety_params())
    db.session.execute(text("INSERT INTO data_versions (name, version, updated_at) VALUES ('street_network', "
                            "'empty-by-0.x', now()) ON CONFLICT (name) DO UPDATE SET version = 'empty-by-0.x'"))
    db.session.commit()
    answer = client.get("/api/v1/routes", query_string={"from": "37.4705,126.9190", "to": "37.4650,126.9260"})
    assert answer.status_code == 503 and "not loaded" in answer.json["detail"]
    planned = escort.plan_escort_route(db.session, origin=(126.9190, 37.4705), destination=(126.9260, 37.4650),
                                       settings=route_settings(app.config))
    assert planned.source == "estimate"
