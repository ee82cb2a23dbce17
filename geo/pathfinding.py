"""Shortest paths between two snapped points on an ellipse-bounded subgraph, searched by scipy's Dijkstra.

Any path through a node x is at least ``length_ratio * (|s-x| + |x-t|)`` long, so nodes outside the
ellipse ``|s-x| + |x-t| <= major`` cannot lie on a path shorter than ``length_ratio * major``. A path
found inside the ellipse and no longer than that is therefore optimal on the whole graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from geo.graph import StreetGraph
from geo.gridindex import gather_ranges
from geo.snapping import Snap


@dataclass(frozen=True, eq=False)
class Subgraph:
    """Induced subgraph in local numbering; local node ``n`` (one past the last) is the virtual start."""

    nodes: np.ndarray  # global node per local node
    local: np.ndarray  # local node per global node, -1 outside
    indptr: np.ndarray
    indices: np.ndarray
    edges: np.ndarray  # global edge per CSR entry
    major: float  # the ellipse's major axis in planar metres
    complete: bool  # holds every node of the graph: no larger ellipse can change a result

    @property
    def n(self) -> int:
        """Number of real nodes."""
        return len(self.nodes)


@dataclass(frozen=True, eq=False)
class Costs:
    """Edge costs of one search: per subgraph CSR entry, and the whole cost of each snapped edge."""

    entries: np.ndarray
    start_edge: float
    end_edge: float


@dataclass(frozen=True, eq=False)
class Path:
    """A path as pieces of edges in travel order: piece i runs along ``edges[i]`` from fraction
    ``start[i]`` to ``end[i]`` of its geometry (0 = source end, 1 = target end)."""

    cost: float
    edges: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @property
    def share(self) -> np.ndarray:
        """Share of each piece's edge that the path travels."""
        return np.abs(self.end - self.start)


def whole(graph: StreetGraph) -> Subgraph:
    """The whole graph as a subgraph, for graphs small enough that cutting one out costs more than it saves."""
    n = graph.node_count
    return Subgraph(np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32), graph.indptr, graph.indices,
                    graph.adj_edge, math.inf, True)


def extract(graph: StreetGraph, s: Snap, t: Snap, major: float) -> Subgraph:
    """Take the nodes inside the ellipse with foci s, t plus the snapped edges' ends, and their edges."""
    cx, cy, half = (s.x + t.x) / 2, (s.y + t.y) / 2, major / 2
    pos = graph.node_grid.positions_in_box(cx - half, cy - half, cx + half, cy + half)
    xy = graph.node_xy[pos].astype(np.float64)
    inside = np.hypot(xy[:, 0] - s.x, xy[:, 1] - s.y) + np.hypot(xy[:, 0] - t.x, xy[:, 1] - t.y) <= major
    nodes = pos[inside].astype(np.int32)
    local = np.full(graph.node_count, -1, np.int32)
    local[nodes] = np.arange(len(nodes), dtype=np.int32)
    ends = {int(graph.edge_u[s.edge]), int(graph.edge_v[s.edge]), int(graph.edge_u[t.edge]), int(graph.edge_v[t.edge])}
    missing = sorted(node for node in ends if local[node] < 0)
    if missing:  # a long snapped edge may end outside the ellipse; the search still starts there
        local[missing] = np.arange(len(nodes), len(nodes) + len(missing), dtype=np.int32)
        nodes = np.concatenate([nodes, np.asarray(missing, np.int32)])
    begin, end = graph.indptr[nodes], graph.indptr[nodes + 1]
    entries = gather_ranges(begin, end)
    cols = local[graph.indices[entries]]
    keep = cols >= 0
    rows = np.repeat(np.arange(len(nodes)), end - begin)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=len(nodes)))]).astype(np.int32)
    return Subgraph(nodes, local, indptr, cols[keep], graph.adj_edge[entries[keep]], major,
                    len(nodes) == graph.node_count)


def search(graph: StreetGraph, sub: Subgraph, s: Snap, t: Snap, costs: Costs,
           limit: float = math.inf) -> Path | None:
    """Cheapest path from s to t on the subgraph, or None if none costs at most ``limit``."""
    starts = _links(graph, sub, s, costs.start_edge)
    matrix = _matrix(sub, costs.entries, starts)
    dist, pred = dijkstra(matrix, directed=True, indices=sub.n, return_predecessors=True, limit=limit)
    options = [(dist[node] + cost, node, frac) for node, cost, frac in _links(graph, sub, t, costs.end_edge)]
    if s.edge == t.edge:
        options.append((abs(t.fraction - s.fraction) * costs.start_edge, -1, t.fraction))
    cost, last, frac = min(options, key=lambda o: o[0])
    if not (math.isfinite(cost) and cost <= limit):
        return None
    if last < 0:
        return Path(float(cost), np.array([s.edge]), np.array([s.fraction]), np.array([t.fraction]))
    chain = _walk(pred, last, sub.n)
    hops, forward = _hops(graph, sub, matrix, chain)
    # The end the search left by; for a loop (one junction at both ends) _links kept only the nearer way.
    leave = next(frac for node, _, frac in starts if node == chain[0])
    start = np.concatenate([[s.fraction], np.where(forward, 0.0, 1.0), [frac]])
    end = np.concatenate([[leave], np.where(forward, 1.0, 0.0), [t.fraction]])
    return Path(float(cost), np.concatenate([[s.edge], hops, [t.edge]]).astype(np.int64), start, end)


def _links(graph: StreetGraph, sub: Subgraph, snap: Snap, edge_cost: float):
    """(local node, cost, fraction of the node) for both ends of a snapped edge, or for the nearer end only when
    both are one junction: a closed way that touches the network once is a loop edge, and a walk on it reaches
    that junction the shorter way round (two links to one node would leave the path's end ambiguous)."""
    e, f = snap.edge, snap.fraction
    ends = ((graph.edge_u[e], f, 0.0), (graph.edge_v[e], 1.0 - f, 1.0))
    if ends[0][0] == ends[1][0]:
        ends = (min(ends, key=lambda end: end[1]),)
    return [(int(sub.local[node]), share * edge_cost, frac) for node, share, frac in ends]


def _matrix(sub: Subgraph, entry_cost: np.ndarray, starts) -> csr_matrix:
    """CSR of the subgraph with one extra row: the virtual start linked to the snapped edge's ends."""
    n = sub.n
    indptr = np.append(sub.indptr, sub.indptr[-1] + len(starts)).astype(np.int32, copy=False)
    indices = np.concatenate([sub.indices, np.array([node for node, _, _ in starts], np.int32)])
    data = np.concatenate([entry_cost, np.array([cost for _, cost, _ in starts], np.float64)])
    # Explicit zeros are zero-cost edges for scipy's csgraph, which a start on a junction needs.
    return csr_matrix((data, indices, indptr), shape=(n + 1, n + 1))


def _walk(pred: np.ndarray, last: int, start: int) -> list[int]:
    """Local nodes from the first real node to ``last`` by following predecessors."""
    chain = [last]
    while pred[chain[-1]] != start:
        chain.append(int(pred[chain[-1]]))
    return chain[::-1]


def _hops(graph: StreetGraph, sub: Subgraph, matrix: csr_matrix, chain: list[int]):
    """Cheapest edge of every hop and whether it is walked source to target (parallel edges differ)."""
    if len(chain) < 2:
        return np.empty(0, np.int64), np.empty(0, bool)
    a, b = np.asarray(chain[:-1]), np.asarray(chain[1:])
    begin, end = matrix.indptr[a], matrix.indptr[a + 1]
    entries = gather_ranges(begin, end)
    hop = np.repeat(np.arange(len(a)), end - begin)
    match = matrix.indices[entries] == b[hop]
    entries, hop = entries[match], hop[match]
    if len(entries) > len(a):  # parallel edges: keep the cheapest of each hop
        order = np.lexsort((matrix.data[entries], hop))
        entries = entries[order[np.r_[True, hop[order][1:] != hop[order][:-1]]]]
    edges = sub.edges[entries]
    return edges, graph.edge_u[edges] == sub.nodes[a]
