from collections import Counter, defaultdict
from pathlib import Path
from xml.etree import ElementTree

import pytest

from geo.osm import MeetingPointRecord, is_walkable, read_meeting_points, read_walk_network
from geo.projection import coords_to_metres

OSM = Path(__file__).resolve().parents[2] / "data" / "gwanak_nangok_walk.osm"


@pytest.fixture(scope="module")
def edges():
    return read_walk_network(OSM)


@pytest.fixture(scope="module")
def raw():
    """Node coordinates and way node lists, read the slow obvious way to check the reader against."""
    root = ElementTree.parse(OSM).getroot()
    nodes = {int(n.get("id")): (float(n.get("lon")), float(n.get("lat"))) for n in root.iter("node")}
    ways = {int(w.get("id")): [int(nd.get("ref")) for nd in w.iter("nd")] for w in root.iter("way")}
    return nodes, ways


def write_osm(tmp_path, body):
    path = tmp_path / "extract.osm"
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6">\n{body}\n</osm>\n', encoding="utf-8")
    return path


def nodes_xml(count):
    return "\n".join(f'<node id="{i}" lat="37.47{i:02d}" lon="126.92{i:02d}"/>' for i in range(1, count + 1))


def way_xml(way_id, refs, **tags):
    nds = "".join(f'<nd ref="{ref}"/>' for ref in refs)
    tag_xml = "".join(f'<tag k="{k.replace("_", ":")}" v="{v}"/>' for k, v in tags.items())
    return f'<way id="{way_id}">{nds}{tag_xml}</way>'


def test_edges_cover_all_623_ways_and_110_km(edges):
    assert len({edge.osm_way_id for edge in edges}) == 623
    assert sum(edge.length_m for edge in edges) == pytest.approx(110_000, abs=100)
    assert len(edges) == 1552


def test_edges_rebuild_each_way_in_order(edges, raw):
    nodes, ways = raw
    pieces = defaultdict(list)
    for edge in edges:
        pieces[edge.osm_way_id].append(edge)
    for way_id, parts in pieces.items():
        chained = list(parts[0].coords) + [c for part in parts[1:] for c in part.coords[1:]]
        assert chained == [nodes[ref] for ref in ways[way_id]]
        assert all(a.target_node == b.source_node for a, b in zip(parts, parts[1:]))


def test_every_edge_ends_at_a_junction_or_way_end_and_passes_none(edges, raw):
    nodes, ways = raw
    uses = Counter(ref for refs in ways.values() for ref in refs)
    ends = {ref for refs in ways.values() for ref in (refs[0], refs[-1])}
    junctions = ends | {ref for ref, count in uses.items() if count >= 2}
    junction_coords = {nodes[ref] for ref in junctions}
    for edge in edges:
        assert edge.source_node in junctions and edge.target_node in junctions
        assert (nodes[edge.source_node], nodes[edge.target_node]) == (edge.coords[0], edge.coords[-1])
        assert not junction_coords.intersection(edge.coords[1:-1])


def test_edge_lengths_agree_with_the_metric_projection(edges):
    for edge in edges[::50]:
        xy = coords_to_metres(edge.coords)
        planar = sum(((xy[1:] - xy[:-1]) ** 2).sum(axis=1) ** 0.5)
        # EPSG:5179 shrinks distances by its 0.9996 scale factor, plus sphere-vs-ellipsoid error.
        assert edge.length_m == pytest.approx(planar, rel=0.005)
    assert min(edge.length_m for edge in edges) > 1


def test_network_is_one_large_component_and_four_islands(edges):
    parent = {}

    def find(node):
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for edge in edges:
        parent[find(edge.source_node)] = find(edge.target_node)
    sizes = Counter(find(node) for node in list(parent))
    assert len(sizes) == 5


def test_edges_carry_way_tags(edges):
    highways = Counter(edge.highway for edge in edges)
    assert set(highways) == {"residential", "path", "living_street", "service", "secondary", "footway",
                             "tertiary", "steps", "secondary_link"}
    named = [edge for edge in edges if edge.name]
    assert named and all(isinstance(edge.name, str) for edge in named)
    assert any(edge.name is None for edge in edges)


def test_meeting_points_are_the_17_named_bus_stops():
    points = read_meeting_points(OSM)
    assert len(points) == 17
    assert {point.kind for point in points} == {"bus_stop"}
    by_id = {point.source_id: point for point in points}
    assert by_id["osm:node/357827823"] == MeetingPointRecord(
        "osm:node/357827823", "삼성산성지", "Samseongsanseongji", "bus_stop", 126.9298516, 37.4585828)
    assert by_id["osm:node/357827813"].name_en is None


def test_meeting_points_read_stations_and_skip_unnamed_stops(tmp_path):
    path = write_osm(tmp_path, """
<node id="1" lat="37.48" lon="126.93"><tag k="railway" v="subway_entrance"/><tag k="name" v="신림역 3번 출구"/></node>
<node id="2" lat="37.47" lon="126.92"><tag k="public_transport" v="station"/><tag k="name:ko" v="서원역"/>
  <tag k="name:en" v="Seowon"/></node>
<node id="3" lat="37.46" lon="126.91"><tag k="highway" v="bus_stop"/></node>
<node id="4" lat="37.46" lon="126.91"><tag k="public_transport" v="platform"/><tag k="railway" v="platform"/>
  <tag k="name" v="신림선 승강장"/></node>""")
    points = read_meeting_points(path)
    assert [(p.source_id, p.name, p.name_en, p.kind) for p in points] == [
        ("osm:node/1", "신림역 3번 출구", None, "station"),
        ("osm:node/2", "서원역", "Seowon", "station"),
    ]


@pytest.mark.parametrize("tags, walkable", [
    ({"highway": "residential"}, True),
    ({"highway": "steps"}, True),
    ({"highway": "motorway"}, False),
    ({"highway": "trunk_link"}, False),
    ({"highway": "footway", "foot": "no"}, False),
    ({"highway": "service", "access": "private"}, False),
    ({"highway": "service", "access": "private", "foot": "yes"}, True),
    ({"highway": "pedestrian", "area": "yes"}, False),
    ({"building": "yes"}, False),
])
def test_is_walkable(tags, walkable):
    assert is_walkable(tags) is walkable


def test_excluded_ways_do_not_make_junctions(tmp_path):
    path = write_osm(tmp_path, nodes_xml(5) + way_xml(10, [1, 2, 3], highway="residential")
                     + way_xml(11, [2, 4], highway="motorway") + way_xml(12, [3, 5], highway="path", foot="no"))
    [edge] = read_walk_network(path)
    assert (edge.source_node, edge.target_node, edge.osm_way_id, len(edge.coords)) == (1, 3, 10, 3)


def test_crossing_and_repeated_nodes_split_ways(tmp_path):
    path = write_osm(tmp_path, nodes_xml(6) + way_xml(10, [1, 2, 2, 3, 4, 5, 3], highway="path", name="둘레길")
                     + way_xml(11, [6, 4], highway="footway"))
    edges = read_walk_network(path)
    assert [(e.source_node, e.target_node, e.osm_way_id) for e in edges] == [
        (1, 3, 10), (3, 4, 10), (4, 3, 10), (6, 4, 11)]
    assert edges[0].coords == ((126.9201, 37.4701), (126.9202, 37.4702), (126.9203, 37.4703))
    assert edges[0].name == "둘레길" and edges[3].name is None


def test_nodes_missing_from_the_extract_break_the_way(tmp_path):
    path = write_osm(tmp_path, nodes_xml(4) + way_xml(10, [1, 2, 99, 3, 4], highway="residential"))
    edges = read_walk_network(path)
    assert [(e.source_node, e.target_node) for e in edges] == [(1, 2), (3, 4)]
