"""The route engine on hand-made graphs and a small random grid, checked against brute force."""
import math
from pathlib import Path

import numpy as np
import pytest

import geo.routing
from geo.projection import haversine_m, to_lonlat, to_metres
from geo.routing import (
    EdgeInput,
    OffNetwork,
    Route,
    RouteEngine,
    RouteEngineCache,
    RoutingError,
    StreetGraph,
    Unreachable,
)

BASE_X, BASE_Y = to_metres(126.95, 37.48)
PROPERTIES = {"profile", "distance_m", "duration_s", "cctv_count", "bell_count", "covered_ratio", "safety_score",
              "shortest_distance_m", "detour_ratio"}


def lonlat(x, y):
    """A point given in metres east and north of a base point in Gwanak-gu."""
    lon, lat = to_lonlat(BASE_X + x, BASE_Y + y)
    return float(lon), float(lat)


def create_edge(edge_id, a, b, points, *, via=(), length=None, covered=0.0, cctv=0.0, bells=0, lights=0,
                safe_house=False):
    """An edge between named points (metres), optionally bent through ``via``; covered is a share."""
    xy = [points[a], *via, points[b]]
    planar = sum(math.dist(p, q) for p, q in zip(xy, xy[1:]))
    length = planar if length is None else length
    return EdgeInput(edge_id, a, b, length, covered * length, cctv, bells, lights, safe_house,
                     [lonlat(*p) for p in xy])


def random_grid(seed=3, n=10, spacing=100.0):
    """A jittered n x n grid with a few edges removed, some bent, some doubled, lengths not quite planar."""
    rng = np.random.default_rng(seed)
    points = {i * n + j + 10**10: (j * spacing + rng.uniform(-20, 20), i * spacing + rng.uniform(-20, 20))
              for i in range(n) for j in range(n)}
    pairs = [(k, k + 1) for k in points if (k - 10**10) % n < n - 1] + [(k, k + n) for k in points if k + n in points]
    edges = []
    for a, b in pairs:
        if rng.random() < 0.08:
            continue
        via = [tuple(np.add(points[a], points[b]) / 2 + rng.uniform(-15, 15, 2))] if rng.random() < 0.3 else []
        for _ in range(2 if rng.random() < 0.05 else 1):  # a few parallel edges
            planar = create_edge(0, a, b, points, via=via).length_m
            edges.append(create_edge(len(edges) + 1, a, b, points, via=via, length=planar * rng.uniform(0.9, 1.6),
                                     covered=rng.choice([0.0, 0.3, 1.0]), cctv=float(rng.integers(0, 3)),
                                     bells=int(rng.random() < 0.2), lights=int(rng.integers(0, 5)),
                                     safe_house=bool(rng.random() < 0.1)))
            via = [tuple(np.add(points[a], points[b]) / 2 + 10)]
    return points, edges


def all_pairs(points, edges):
    """Floyd-Warshall over the edge list: the brute-force reference."""
    ids = sorted(points)
    index = {k: i for i, k in enumerate(ids)}
    dist = np.full((len(ids), len(ids)), np.inf)
    np.fill_diagonal(dist, 0.0)
    for e in edges:
        i, j = index[e.source], index[e.target]
        dist[i, j] = dist[j, i] = min(dist[i, j], e.length_m)
    for k in range(len(ids)):
        dist = np.minimum(dist, dist[:, k, None] + dist[None, k, :])
    return ids, dist


@pytest.fixture(scope="module")
def grid():
    points, edges = random_grid()
    return points, edges, StreetGraph.build(edges, "grid-1")


@pytest.fixture(params=["whole", "ellipse"])
def engine_factory(request, monkeypatch):
    """Engines that search the whole small graph, or cut ellipses out of it as on a large one."""
    if request.param == "ellipse":
        monkeypatch.setattr(geo.routing, "WHOLE_GRAPH_NODES", 0)
    return lambda graph, **options: RouteEngine(graph, **options)


def sample_pairs(ids, count, seed=5):
    rng = np.random.default_rng(seed)
    return [tuple(rng.choice(len(ids), 2, replace=False)) for _ in range(count)]


def test_shortest_equals_brute_force_between_junctions(grid, engine_factory):
    points, edges, graph = grid
    engine = engine_factory(graph)
    ids, dist = all_pairs(points, edges)
    for i, j in sample_pairs(ids, 150):
        if math.isinf(dist[i, j]):
            with pytest.raises(Unreachable):
                engine.route(lonlat(*points[ids[i]]), lonlat(*points[ids[j]]), profile="shortest")
            continue
        route = engine.route(lonlat(*points[ids[i]]), lonlat(*points[ids[j]]), profile="shortest")
        assert route.distance_m == pytest.approx(dist[i, j], rel=1e-9, abs=1e-6)
        assert route.detour_ratio == 1.0 and route.shortest_distance_m == route.distance_m


def test_route_geometry_runs_from_start_to_end(grid):
    points, edges, graph = grid
    a, b = lonlat(*points[10**10]), lonlat(*points[10**10 + 99])
    route = RouteEngine(graph).route(a, b, profile="shortest")
    assert haversine_m(*route.coords[0], *a) < 0.01 and haversine_m(*route.coords[-1], *b) < 0.01
    walked = sum(haversine_m(*p, *q) for p, q in zip(route.coords, route.coords[1:]))
    assert walked <= route.distance_m / 0.9 + 1  # lengths are 0.9 to 1.6 times the drawn lines
    assert route.duration_s == pytest.approx(route.distance_m / 1.3)


@pytest.mark.parametrize("night", [False, True])
@pytest.mark.parametrize("max_detour", [1.1, 1.4, 2.0])
def test_safe_keeps_detour_bound_and_coverage(grid, engine_factory, night, max_detour):
    points, edges, graph = grid
    engine = engine_factory(graph, max_detour=max_detour)
    ids, dist = all_pairs(points, edges)
    longer = 0
    for i, j in sample_pairs(ids, 60, seed=11):
        if math.isinf(dist[i, j]):
            continue
        a, b = lonlat(*points[ids[i]]), lonlat(*points[ids[j]])
        safe = engine.route(a, b, profile="safe", night=night)
        shortest = engine.route(a, b, profile="shortest")
        assert safe.profile == "safe" and safe.shortest_distance_m == pytest.approx(shortest.distance_m)
        assert safe.distance_m <= max_detour * shortest.distance_m * (1 + 1e-9)
        assert safe.covered_ratio >= shortest.covered_ratio - 1e-12
        assert safe.detour_ratio == pytest.approx(safe.distance_m / shortest.distance_m)
        longer += safe.distance_m > shortest.distance_m + 1e-6
    assert longer > 0  # the safe profile does take detours on this grid


def line_graph(**attrs):
    """A --100 m-- B --50 m-- C along the x axis."""
    points = {1: (0.0, 0.0), 2: (100.0, 0.0), 3: (150.0, 0.0)}
    return points, [create_edge(11, 1, 2, points, **attrs), create_edge(12, 2, 3, points)]


def test_snaps_onto_the_middle_of_an_edge():
    points, edges = line_graph()
    engine = RouteEngine(StreetGraph.build(edges, "v"))
    route = engine.route(lonlat(50, 10), lonlat(150, 0), profile="shortest")
    assert route.distance_m == pytest.approx(100.0, abs=0.01)
    assert route.edge_ids == [11, 12]
    assert haversine_m(*route.coords[0], *lonlat(50, 0)) < 0.01


@pytest.mark.parametrize(("start", "end"), [(20, 70), (70, 20)])
def test_from_and_to_on_the_same_edge(start, end):
    points, edges = line_graph()
    route = RouteEngine(StreetGraph.build(edges, "v")).route(lonlat(start, 3), lonlat(end, -3), profile="safe")
    assert route.distance_m == pytest.approx(50.0, abs=0.01)
    assert route.edge_ids == [11] and len(route.coords) == 2
    assert haversine_m(*route.coords[0], *lonlat(start, 0)) < 0.01


def test_same_point_gives_a_zero_length_route():
    points, edges = line_graph()
    route = RouteEngine(StreetGraph.build(edges, "v")).route(lonlat(30, 0), lonlat(30, 0), profile="safe")
    assert route.distance_m == pytest.approx(0.0, abs=1e-6) and route.detour_ratio == 1.0
    assert len(route.coords) == 2


@pytest.mark.parametrize(("start", "end", "which"), [((50, 400), (150, 0), "from"), ((50, 0), (900, 0), "to")])
def test_point_off_the_network_is_an_error(start, end, which):
    points, edges = line_graph()
    engine = RouteEngine(StreetGraph.build(edges, "v"), snap_max_m=150.0)
    with pytest.raises(OffNetwork) as caught:
        engine.route(lonlat(*start), lonlat(*end))
    assert caught.value.which == which and caught.value.distance_m > 150.0
    assert isinstance(caught.value, RoutingError) and isinstance(caught.value, ValueError)


def test_snap_distance_is_configurable():
    points, edges = line_graph()
    engine = RouteEngine(StreetGraph.build(edges, "v"), snap_max_m=20.0)
    assert engine.route(lonlat(50, 15), lonlat(150, 0)).distance_m == pytest.approx(100.0, abs=0.01)
    with pytest.raises(OffNetwork):
        engine.route(lonlat(50, 25), lonlat(150, 0))


def test_unreachable_between_two_components():
    points = {1: (0.0, 0.0), 2: (100.0, 0.0), 3: (0.0, 100.0), 4: (100.0, 100.0)}
    graph = StreetGraph.build([create_edge(1, 1, 2, points), create_edge(2, 3, 4, points)], "v")
    with pytest.raises(Unreachable):
        RouteEngine(graph).route(lonlat(50, 0), lonlat(50, 100))


def detour_graph():
    """A direct 100 m street without cameras, and a 120 m way round under cameras."""
    points = {1: (0.0, 0.0), 2: (100.0, 0.0), 3: (50.0, 33.2)}
    return points, [create_edge(1, 1, 2, points), create_edge(2, 1, 3, points, covered=1.0, cctv=2.0),
                    create_edge(3, 3, 2, points, covered=1.0, cctv=1.0)]


def test_safe_takes_a_covered_detour_within_the_bound():
    points, edges = detour_graph()
    engine = RouteEngine(StreetGraph.build(edges, "v"))
    safe = engine.route(lonlat(0, 0), lonlat(100, 0), profile="safe")
    assert safe.edge_ids == [2, 3] and safe.covered_ratio == pytest.approx(1.0) and safe.cctv_count == 3
    assert safe.detour_ratio == pytest.approx(1.2, abs=0.01)
    assert engine.route(lonlat(0, 0), lonlat(100, 0), profile="shortest").edge_ids == [1]


def test_safe_falls_back_to_shortest_when_the_detour_is_too_long():
    points, edges = detour_graph()
    safe = RouteEngine(StreetGraph.build(edges, "v"), max_detour=1.1).route(lonlat(0, 0), lonlat(100, 0))
    assert safe.profile == "safe" and safe.edge_ids == [1] and safe.detour_ratio == 1.0


def test_night_weighting_prefers_lit_streets():
    """Day: the camera-covered dark way. Night: the lit way, half covered; both beat the dark direct street."""
    points = {1: (0.0, 0.0), 2: (100.0, 0.0), 3: (50.0, 33.2), 4: (50.0, -33.2)}
    edges = [create_edge(1, 1, 2, points),
             create_edge(2, 1, 3, points, covered=1.0), create_edge(3, 3, 2, points, covered=1.0),
             create_edge(4, 1, 4, points, covered=0.5, lights=6), create_edge(5, 4, 2, points, covered=0.5, lights=6)]
    engine = RouteEngine(StreetGraph.build(edges, "v"))
    assert engine.route(lonlat(0, 0), lonlat(100, 0), night=False).edge_ids == [2, 3]
    assert engine.route(lonlat(0, 0), lonlat(100, 0), night=True).edge_ids == [4, 5]


def test_safe_never_has_less_coverage_than_shortest():
    """At night the lit detour has less risk but less camera coverage: the shortest route wins."""
    points = {1: (0.0, 0.0), 2: (100.0, 0.0), 3: (50.0, 33.2)}
    edges = [create_edge(1, 1, 2, points, covered=0.5),
             create_edge(2, 1, 3, points, covered=0.4, lights=6), create_edge(3, 3, 2, points, covered=0.4, lights=6)]
    engine = RouteEngine(StreetGraph.build(edges, "v"))
    night = engine.route(lonlat(0, 0), lonlat(100, 0), night=True)
    assert night.edge_ids == [1] and night.covered_ratio == pytest.approx(0.5)


def test_parallel_edges_use_the_cheaper_one():
    points = {1: (0.0, 0.0), 2: (100.0, 0.0)}
    edges = [create_edge(1, 1, 2, points, via=[(50.0, 30.0)]), create_edge(2, 2, 1, points, via=[(50.0, -10.0)])]
    route = RouteEngine(StreetGraph.build(edges, "v")).route(lonlat(0, 0), lonlat(100, 0), profile="shortest")
    assert route.edge_ids == [2] and route.distance_m == pytest.approx(2 * math.hypot(50, 10))
    assert haversine_m(*route.coords[1], *lonlat(50, -10)) < 0.01


def loop_graph():
    """A 400 m square loop that leaves and returns to junction A, and a 100 m street from A to B.

    A closed way touching the network at one junction is imported as such an edge (both ends are A)."""
    points = {1: (0.0, 0.0), 2: (-100.0, 0.0)}
    loop = create_edge(1, 1, 1, points, via=[(0.0, 100.0), (100.0, 100.0), (100.0, 0.0)])
    return points, [loop, create_edge(2, 1, 2, points)]


@pytest.mark.parametrize("along", [10.0, 200.0, 390.0])
@pytest.mark.parametrize("backwards", [False, True], ids=["starting-on-the-loop", "ending-on-the-loop"])
def test_a_route_leaves_or_reaches_a_loop_by_its_nearer_end(along, backwards):
    """Starting 390 m along the loop, the walk is 10 m on to A, not 390 m back round; the line agrees."""
    points, edges = loop_graph()
    on_loop = lonlat(*((0.0, along) if along <= 100 else (along - 100, 100.0) if along <= 200
                       else (100.0, 300 - along) if along <= 300 else (400 - along, 0.0)))
    ends = (on_loop, lonlat(-100, 0))
    route = RouteEngine(StreetGraph.build(edges, "v")).route(*(ends[::-1] if backwards else ends), profile="shortest")
    expected = min(along, 400 - along) + 100
    assert route.distance_m == pytest.approx(expected, abs=0.01)
    walked = sum(haversine_m(*p, *q) for p, q in zip(route.coords, route.coords[1:]))
    assert walked == pytest.approx(expected, rel=0.01)  # haversine against the planar metres of the lengths


def test_a_route_along_one_loop_takes_the_shorter_way_round():
    points, edges = loop_graph()
    engine = RouteEngine(StreetGraph.build(edges, "v"))
    # 20 m before the loop's end to 80 m along it: 20 m on to A and 80 m up is shorter than 300 m back round.
    for a, b in [((20, 0), (0, 80)), ((0, 80), (20, 0))]:
        route = engine.route(lonlat(*a), lonlat(*b), profile="shortest")
        assert route.distance_m == pytest.approx(100, abs=0.01) and route.edge_ids == [1]
    assert engine.route(lonlat(0, 20), lonlat(0, 80), profile="shortest").distance_m == pytest.approx(60, abs=0.01)


def test_a_walk_from_a_real_loop_leaves_by_its_nearer_end():
    """OSM way 439438512 in the Nangok-dong extract is a closed 93 m footway that meets the network at one node."""
    from geo.osm import read_walk_network
    edges = read_walk_network(Path(__file__).resolve().parents[2] / "data" / "gwanak_nangok_walk.osm")
    loop = next(e for e in edges if e.osm_way_id == 439438512 and e.source_node == e.target_node)
    graph = StreetGraph.build([EdgeInput(i + 1, e.source_node, e.target_node, e.length_m, 0.0, 0.0, 0, 0, False,
                                         e.coords) for i, e in enumerate(edges)], "nangok")
    coords = np.asarray(loop.coords)
    steps = haversine_m(coords[:-1, 0], coords[:-1, 1], coords[1:, 0], coords[1:, 1])
    along = np.r_[0.0, np.cumsum(steps)] / steps.sum()
    nine_tenths = (float(np.interp(0.9, along, coords[:, 0])), float(np.interp(0.9, along, coords[:, 1])))
    route = RouteEngine(graph).route(nine_tenths, loop.coords[0], profile="shortest")
    assert route.distance_m == pytest.approx(0.1 * loop.length_m, abs=1.0)  # not 0.9 of it, back round


def test_route_properties_and_feature():
    points, edges = detour_graph()
    route = RouteEngine(StreetGraph.build(edges, "v")).route(lonlat(0, 0), lonlat(100, 0))
    feature = route.to_feature()
    assert isinstance(route, Route) and set(feature["properties"]) == PROPERTIES
    assert feature["geometry"]["type"] == "LineString" and len(feature["geometry"]["coordinates"]) >= 2
    assert 0 <= route.safety_score <= 100 and route.bell_count == 0


def test_unknown_profile_is_rejected():
    points, edges = line_graph()
    with pytest.raises(ValueError):
        RouteEngine(StreetGraph.build(edges, "v")).route(lonlat(0, 0), lonlat(100, 0), profile="fastest")


def test_build_is_deterministic_and_reports_memory(grid):
    points, edges, graph = grid
    again = StreetGraph.build(list(edges), "grid-1")
    assert graph.memory_bytes() > 0 and graph.memory_bytes() == again.memory_bytes()
    assert not graph.length.flags.writeable  # shared between threads, so frozen
    for name in ("edge_u", "edge_v", "indptr", "indices", "adj_edge", "xy", "node_xy", "segment_items"):
        assert np.array_equal(getattr(graph, name), getattr(again, name)), name
    a, b = lonlat(*points[10**10 + 5]), lonlat(*points[10**10 + 93])
    assert RouteEngine(graph).route(a, b) == RouteEngine(again).route(a, b)


def test_build_rejects_an_edge_without_geometry():
    with pytest.raises(ValueError):
        StreetGraph.build([EdgeInput(1, 1, 2, 10.0, 0.0, 0.0, 0, 0, False, [lonlat(0, 0)])], "v")


def test_cache_rebuilds_only_when_the_version_changes():
    points, edges = line_graph()
    loads = []
    cache = RouteEngineCache(snap_max_m=50.0)

    def build(version):
        loads.append(version)
        return StreetGraph.build(edges, version)

    first = cache.get("v1", lambda: build("v1"))
    assert cache.get("v1", lambda: build("v1")) is first and loads == ["v1"]
    assert cache.get("v2", lambda: build("v2")).graph.version == "v2" and loads == ["v1", "v2"]
    assert first.snap_max_m == 50.0


def test_while_a_new_version_is_built_other_callers_keep_the_engine_held():
    """A city's graph takes seconds to build: requests must not queue behind it, only a cache with nothing
    to give waits."""
    import threading
    points, edges = line_graph()
    cache = RouteEngineCache()
    first = cache.get("v1", lambda: StreetGraph.build(edges, "v1"))
    building, release = threading.Event(), threading.Event()

    def slow_build():
        building.set()
        release.wait(10)
        return StreetGraph.build(edges, "v2")

    builder = threading.Thread(target=lambda: cache.get("v2", slow_build))
    builder.start()
    assert building.wait(5)
    answered = []
    other = threading.Thread(target=lambda: answered.append(cache.get("v2", slow_build)))
    other.start()
    other.join(2)
    assert answered == [first]  # at once, the graph held
    release.set()
    builder.join(5)
    assert cache.get("v2", slow_build).graph.version == "v2"


def test_a_cache_with_no_engine_waits_for_the_first_build():
    import threading
    points, edges = line_graph()
    cache, release, answered = RouteEngineCache(), threading.Event(), []

    def slow_build():
        release.wait(10)
        return StreetGraph.build(edges, "v1")

    builder = threading.Thread(target=lambda: cache.get("v1", slow_build))
    builder.start()
    waiter = threading.Thread(target=lambda: answered.append(cache.get("v1", slow_build)))
    waiter.start()
    waiter.join(0.5)
    assert answered == []  # nothing held: it waits
    release.set()
    builder.join(5), waiter.join(5)
    assert answered[0].graph.version == "v1"


def test_cell_grid_returns_every_item_in_the_cells_of_a_box():
    from geo.gridindex import CellGrid
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1000, 500), rng.uniform(0, 700, 500)
    grid, order = CellGrid.build(x, y, 100.0, (1000.0, 700.0))
    found = order[grid.positions_in_box(250, 120, 480, 390)]
    expected = np.flatnonzero((x // 100 >= 2) & (x // 100 <= 4) & (y // 100 >= 1) & (y // 100 <= 3))
    assert sorted(found) == sorted(expected)
    ranges = grid.ranges_in_box(250, 120, 480, 390)
    assert sorted(order[np.concatenate([np.arange(a, b) for a, b in ranges])]) == sorted(expected)
    assert len(grid.positions_in_box(-500, -500, -10, -10)) == 0
