"""Read an OSM XML 0.6 extract into walkable street edges and named meeting points."""
from collections import Counter
from dataclasses import dataclass
from xml.etree.ElementTree import iterparse

import numpy as np

from geo.projection import haversine_m

# Ways a pedestrian may not use whatever else they carry; the rest of OSMnx's walk filter, plus trunk.
EXCLUDED_HIGHWAYS = frozenset({
    "motorway", "motorway_link", "trunk", "trunk_link", "construction", "proposed", "planned",
    "abandoned", "razed", "raceway", "bus_guideway", "platform", "no",
})
NO_FOOT = frozenset({"no", "private"})
YES_FOOT = frozenset({"yes", "designated", "permissive"})


@dataclass(frozen=True)
class EdgeRecord:
    source_node: int
    target_node: int
    coords: tuple
    length_m: float
    highway: str
    name: str | None
    osm_way_id: int


@dataclass(frozen=True)
class MeetingPointRecord:
    source_id: str
    name: str
    name_en: str | None
    kind: str
    lon: float
    lat: float


def read_walk_network(path):
    """Split the walkable ways of an OSM file into undirected junction-to-junction edges."""
    nodes, _, ways = _parse(path, keep_ways=True)
    walkable = [(way_id, _runs(refs, nodes), tags) for way_id, refs, tags in ways if is_walkable(tags)]
    junctions = _junctions(run for _, runs, _ in walkable for run in runs)
    return [
        edge
        for way_id, runs, tags in walkable
        for run in runs
        for edge in _split(way_id, run, tags, junctions, nodes)
    ]


def read_meeting_points(path):
    """Read named bus stops and subway stations or entrances, where a walk can start or end."""
    nodes, node_tags, _ = _parse(path, keep_ways=False)
    points = []
    for node_id, tags in node_tags.items():
        kind, name = meeting_kind(tags), tags.get("name") or tags.get("name:ko")
        if kind and name:
            lon, lat = nodes[node_id]
            points.append(MeetingPointRecord(f"osm:node/{node_id}", name, tags.get("name:en"), kind, lon, lat))
    return points


def is_walkable(tags):
    """Tell whether a way's tags let a pedestrian walk along it."""
    if "highway" not in tags or tags["highway"] in EXCLUDED_HIGHWAYS:
        return False
    # Areas (pedestrian squares) have no centre line to walk along.
    if tags.get("area") == "yes" or tags.get("foot") in NO_FOOT:
        return False
    return tags.get("access") not in NO_FOOT or tags.get("foot") in YES_FOOT


def meeting_kind(tags):
    """Return "station", "bus_stop" or None for a node's tags."""
    if tags.get("railway") in ("station", "subway_entrance") or tags.get("public_transport") == "station":
        return "station"
    # A railway platform is underground or behind gates, not a place to meet on the street.
    platform = tags.get("public_transport") == "platform" and "railway" not in tags
    if tags.get("highway") == "bus_stop" or platform:
        return "bus_stop"
    return None


def _parse(path, keep_ways):
    """Stream the file: node coordinates, tags of tagged nodes, and (optionally) ways."""
    nodes, node_tags, ways = {}, {}, []
    for _, elem in iterparse(path, events=("end",)):
        if elem.tag == "node":
            node_id = int(elem.get("id"))
            nodes[node_id] = (float(elem.get("lon")), float(elem.get("lat")))
            tags = _tags(elem)
            if tags:
                node_tags[node_id] = tags
            elem.clear()
        elif elem.tag == "way":
            if keep_ways:
                refs = [int(nd.get("ref")) for nd in elem.iter("nd")]
                ways.append((int(elem.get("id")), refs, _tags(elem)))
            elem.clear()
        elif elem.tag == "relation":
            elem.clear()
    return nodes, node_tags, ways


def _tags(elem):
    return {tag.get("k"): tag.get("v") for tag in elem.iter("tag")}


def _runs(refs, nodes):
    """Cut a way's node list into runs of known nodes, dropping repeated consecutive refs."""
    runs, current = [], []
    for ref in refs:
        if ref not in nodes:
            # A node clipped out of the extract: never draw a straight line across the gap.
            runs.append(current)
            current = []
        elif not current or current[-1] != ref:
            current.append(ref)
    runs.append(current)
    return [run for run in runs if len(run) >= 2]


def _junctions(runs):
    """Return the nodes where edges must break: used twice or more, or the end of a run."""
    uses, ends = Counter(), set()
    for run in runs:
        uses.update(run)
        ends.update((run[0], run[-1]))
    return ends | {node for node, count in uses.items() if count >= 2}


def _split(way_id, run, tags, junctions, nodes):
    """Cut one run of a way at its junctions into edges."""
    edges, start = [], 0
    for i in range(1, len(run)):
        if run[i] in junctions:
            edges.append(_edge(way_id, run[start:i + 1], tags, nodes))
            start = i
    return edges


def _edge(way_id, refs, tags, nodes):
    coords = tuple(nodes[ref] for ref in refs)
    arr = np.asarray(coords)
    length = float(np.sum(haversine_m(arr[:-1, 0], arr[:-1, 1], arr[1:, 0], arr[1:, 1])))
    return EdgeRecord(refs[0], refs[-1], coords, length, tags["highway"], tags.get("name"), way_id)
