"""Snap a point to the nearest place on the street network and cut edge geometry at fractions."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geo.graph import SEGMENT_CELL_M, StreetGraph

JUNCTION_TOLERANCE_M = 0.01
NEAR_M = 30.0


@dataclass(frozen=True)
class Snap:
    """A point on an edge: ``fraction`` of its geometry from the source end."""

    edge: int
    fraction: float
    x: float
    y: float
    distance_m: float


def snap(graph: StreetGraph, x: float, y: float, max_m: float) -> Snap | None:
    """Return the nearest point on any edge within ``max_m`` of (x, y) in graph metres, or None."""
    # Most requests come from a pavement: look close first, which reads a quarter of the cells.
    if max_m > NEAR_M:
        found = _nearest(graph, x, y, NEAR_M)
        if found is not None:
            return found
    return _nearest(graph, x, y, max_m)


def _nearest(graph: StreetGraph, x: float, y: float, max_m: float) -> Snap | None:
    first = _candidates(graph, x, y, max_m)
    if len(first) == 0:
        return None
    a = graph.xy[first].astype(np.float64)
    ab = graph.xy[first + 1] - a
    px, py, dist = _project(a, ab, x, y)
    best = int(np.argmin(dist))  # candidates come in a fixed cell order, so ties resolve the same way every time
    if dist[best] > max_m:
        return None
    vertex = int(first[best])
    edge = int(np.searchsorted(graph.geom_offsets, vertex, side="right") - 1)
    return Snap(edge, _fraction(graph, edge, vertex, float(px[best]), float(py[best])), float(px[best]),
                float(py[best]), float(dist[best]))


def nearest_distance(graph: StreetGraph, x: float, y: float, search_m: float) -> float:
    """Distance to the network if it is within ``search_m``, else infinity (for error messages)."""
    found = snap(graph, x, y, search_m)
    return found.distance_m if found else float("inf")


def _candidates(graph: StreetGraph, x: float, y: float, max_m: float) -> np.ndarray:
    """First-vertex indexes of segments that may lie within ``max_m``."""
    # A piece's midpoint is at most half a cell from any point of the piece.
    r = max_m + SEGMENT_CELL_M / 2
    ranges = graph.segment_grid.ranges_in_box(x - r, y - r, x + r, y + r)
    # A segment split into pieces may come back more than once; measuring it twice is cheaper than np.unique.
    return np.concatenate([graph.segment_items[lo:hi] for lo, hi in ranges]) if ranges else np.empty(0, np.int32)


def _project(a: np.ndarray, ab: np.ndarray, x: float, y: float):
    """Closest points of segments a -> a+ab to (x, y), and their distances."""
    ab = ab.astype(np.float64)
    denom = np.einsum("ij,ij->i", ab, ab)
    dot = (x - a[:, 0]) * ab[:, 0] + (y - a[:, 1]) * ab[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(denom > 0, np.clip(dot / denom, 0.0, 1.0), 0.0)
    px, py = a[:, 0] + t * ab[:, 0], a[:, 1] + t * ab[:, 1]
    return px, py, np.hypot(px - x, py - y)


def _fraction(graph: StreetGraph, edge: int, vertex: int, px: float, py: float) -> float:
    """Share of the edge's geometry length from its source to the point on segment ``vertex``."""
    # Edges have a handful of vertices: plain floats beat numpy's per-call cost here.
    first, last = int(graph.geom_offsets[edge]), int(graph.geom_offsets[edge + 1])
    pts = graph.xy[first:last].tolist()
    steps = [math.dist(a, b) for a, b in zip(pts, pts[1:])]
    along = sum(steps[:vertex - first]) + math.dist(pts[vertex - first], (px, py))
    total = sum(steps)
    # Stored coordinates have millimetre resolution: a point that close to a junction starts at it.
    if along <= JUNCTION_TOLERANCE_M or total <= 0:
        return 0.0
    return 1.0 if total - along <= JUNCTION_TOLERANCE_M else along / total


def _cumulative(vertices: np.ndarray) -> np.ndarray:
    """Distance along a polyline at each vertex."""
    step = np.hypot(*np.diff(vertices, axis=0).T)
    return np.concatenate([[0.0], np.cumsum(step)])


def cut(graph: StreetGraph, edge: int, start: float, end: float) -> np.ndarray:
    """Vertices of the edge between two fractions, in travel order (reversed when start > end)."""
    vertices = graph.edge_vertices(edge)
    if start == end:
        return vertices[[0 if start == 0.0 else -1]] if start in (0.0, 1.0) else _at(vertices, start)
    if start == 0.0 and end == 1.0:
        return vertices
    if start == 1.0 and end == 0.0:
        return vertices[::-1]
    cum = _cumulative(vertices)
    lo, hi = sorted((start * cum[-1], end * cum[-1]))
    inner = vertices[(cum > lo) & (cum < hi)]
    ends = [np.array([[np.interp(d, cum, vertices[:, 0]), np.interp(d, cum, vertices[:, 1])]]) for d in (lo, hi)]
    piece = np.concatenate([ends[0], inner, ends[1]])
    return piece[::-1] if start > end else piece


def _at(vertices: np.ndarray, fraction: float) -> np.ndarray:
    """The single point at a fraction of a polyline's length."""
    cum = _cumulative(vertices)
    d = fraction * cum[-1]
    return np.array([[np.interp(d, cum, vertices[:, 0]), np.interp(d, cum, vertices[:, 1])]])


def path_xy(graph: StreetGraph, edges: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Vertices along pieces of edges; only the first and last piece may be partial."""
    if len(edges) == 1:
        return cut(graph, int(edges[0]), float(start[0]), float(end[0]))
    middle = _whole_edges(graph, edges[1:-1], start[1:-1] == 0.0)
    return np.concatenate([cut(graph, int(edges[0]), float(start[0]), float(end[0])),
                           graph.xy[middle].astype(np.float64),
                           cut(graph, int(edges[-1]), float(start[-1]), float(end[-1]))])


def _whole_edges(graph: StreetGraph, edges: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Vertex indexes of whole edges, each walked forward or backward, in one vectorised pass."""
    lo, hi = graph.geom_offsets[edges], graph.geom_offsets[edges + 1]
    counts = hi - lo
    rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    first, step = np.where(forward, lo, hi - 1), np.where(forward, 1, -1)
    return np.repeat(first, counts) + np.repeat(step, counts) * rank
