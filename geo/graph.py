"""The street graph in compact arrays: CSR adjacency, flat edge geometry and two cell-grid indexes."""
from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from itertools import chain
from typing import NamedTuple

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from geo.gridindex import CellGrid
from geo.projection import to_metres

# Segment cells stay small so a snap looks at a few hundred segments at most.
SEGMENT_CELL_M = 100.0
# Node cells are coarser: a route query takes whole rows of them, and fewer rows mean fewer ranges.
NODE_CELL_M = 250.0


class EdgeInput(NamedTuple):
    """One undirected street edge as the importer delivers it; ``coords`` run from source to target."""

    edge_id: int
    source: int
    target: int
    length_m: float
    covered_m: float  # metres of the edge within 30 m of a camera
    cctv_weight: float  # working cameras within 30 m; the app's importer counts a camera on every edge it reaches
    bell_count: int  # emergency bells within 50 m
    light_count: int
    safe_house_near: bool
    coords: Sequence[tuple[float, float]]  # (lon, lat), at least two points


@dataclass(frozen=True, eq=False)
class StreetGraph:
    """Immutable arrays for one data version; nodes are renumbered in cell order for locality."""

    version: str
    origin: tuple[float, float]  # EPSG:5179 metres subtracted from every stored coordinate
    length_ratio: float  # min length_m / planar geometry length: turns straight lines into length bounds
    edge_ids: np.ndarray  # int64, input order
    edge_u: np.ndarray  # int32 internal node of the first coordinate
    edge_v: np.ndarray  # int32 internal node of the last coordinate
    length: np.ndarray  # float64 length_m (the exact costs the shortest profile sums)
    covered: np.ndarray  # float32
    cctv: np.ndarray  # float32
    bells: np.ndarray  # int32
    lights: np.ndarray  # int32
    safe_house: np.ndarray  # bool
    geom_offsets: np.ndarray  # int64, edge e owns vertices geom_offsets[e]:geom_offsets[e+1]
    xy: np.ndarray  # float32 (V, 2) vertex metres relative to origin (within 2 mm up to 65 km away)
    node_xy: np.ndarray  # float32 (N, 2)
    component: np.ndarray  # int32 connected-component label per node
    indptr: np.ndarray  # int32 CSR row starts (both directions of every edge)
    indices: np.ndarray  # int32 neighbour node per CSR entry
    adj_edge: np.ndarray  # int32 edge index per CSR entry
    node_grid: CellGrid  # node i lies in the cell whose range holds position i
    segment_grid: CellGrid  # over pieces of segments, see segment_items
    segment_items: np.ndarray  # int32 first-vertex index of each indexed segment piece, in cell order

    def __post_init__(self):
        # Threads share one graph: make every array read-only so nothing can change it by accident.
        for f in fields(self):
            value = getattr(self, f.name)
            for array_ in (value.starts,) if isinstance(value, CellGrid) else (value,):
                if isinstance(array_, np.ndarray):
                    array_.flags.writeable = False

    @classmethod
    def build(cls, edges: Iterable[EdgeInput], version: str) -> StreetGraph:
        """Build the compact graph from importer records (or plain tuples in EdgeInput order)."""
        return cls.from_columns(version=version, **_columns(edges))

    @classmethod
    def from_columns(cls, *, version, edge_id, source, target, length_m, covered_m, cctv_weight,
                     bell_count, light_count, safe_house_near, lonlat, offsets) -> StreetGraph:
        """Build from parallel arrays; ``lonlat`` is (V, 2) and edge e owns ``offsets[e]:offsets[e+1]``."""
        # Copies: the graph freezes its arrays and must not freeze the caller's.
        offsets, length = np.array(offsets, np.int64), np.array(length_m, np.float64)
        _check(offsets, length)
        mx, my = to_metres(np.asarray(lonlat)[:, 0], np.asarray(lonlat)[:, 1])
        origin = (float(np.floor(mx.min())), float(np.floor(my.min())))
        xy64 = np.column_stack([mx - origin[0], my - origin[1]])
        u, v, node_xy, node_grid = _nodes(np.asarray(source), np.asarray(target), xy64, offsets)
        indptr, indices, adj_edge = _csr(u, v, len(node_xy))
        seg_grid, seg_items, geom_len = _segments(xy64, offsets)
        return cls(
            version=version, origin=origin, length_ratio=_length_ratio(length, geom_len),
            edge_ids=np.array(edge_id, np.int64), edge_u=u, edge_v=v, length=length,
            covered=np.array(covered_m, np.float32), cctv=np.array(cctv_weight, np.float32),
            bells=np.array(bell_count, np.int32), lights=np.array(light_count, np.int32),
            safe_house=np.array(safe_house_near, bool),
            geom_offsets=offsets, xy=xy64.astype(np.float32), node_xy=node_xy,
            component=_components(indptr, indices, len(node_xy)), indptr=indptr, indices=indices,
            adj_edge=adj_edge, node_grid=node_grid, segment_grid=seg_grid, segment_items=seg_items)

    @property
    def node_count(self) -> int:
        """Number of junctions."""
        return len(self.node_xy)

    @property
    def edge_count(self) -> int:
        """Number of undirected edges."""
        return len(self.edge_ids)

    def memory_bytes(self) -> int:
        """Bytes held by the graph's arrays and indexes."""
        total = 0
        for f in fields(self):
            value = getattr(self, f.name)
            total += value.nbytes() if isinstance(value, CellGrid) else getattr(value, "nbytes", 0)
        return int(total)

    def edge_vertices(self, edge: int) -> np.ndarray:
        """Return one edge's vertices as float64 metres, source to target."""
        return self.xy[self.geom_offsets[edge]:self.geom_offsets[edge + 1]].astype(np.float64)


def _columns(edges: Iterable[EdgeInput]) -> dict:
    """Collect records into typed buffers in one pass; array.array avoids a Python object per number."""
    names = ("edge_id", "source", "target", "length_m", "covered_m", "cctv_weight", "bell_count", "light_count")
    bufs = [array(code) for code in "qqqdddqq"]
    eid, src, dst, length, covered, cctv, bells, lights = (b.append for b in bufs)
    safe, flat, offsets = array("b"), array("d"), array("q", [0])
    for e in edges:
        eid(e[0]), src(e[1]), dst(e[2]), length(e[3]), covered(e[4]), cctv(e[5]), bells(e[6]), lights(e[7])
        safe.append(bool(e[8]))
        flat.extend(chain.from_iterable(e[9]))
        offsets.append(len(flat) // 2)
    columns = {name: np.frombuffer(buf, np.int64 if buf.typecode == "q" else np.float64)
               for name, buf in zip(names, bufs)}
    columns.update(safe_house_near=np.frombuffer(safe, np.int8).astype(bool),
                   lonlat=np.frombuffer(flat, np.float64).reshape(-1, 2), offsets=np.frombuffer(offsets, np.int64))
    return columns


def _check(offsets: np.ndarray, length: np.ndarray) -> None:
    """Reject input the router cannot use; the importer should never produce it."""
    if len(offsets) < 2:
        raise ValueError("a street graph needs at least one edge")
    if np.any(np.diff(offsets) < 2):
        raise ValueError("every edge needs at least two coordinates")
    if not np.all(np.isfinite(length)) or np.any(length < 0):
        raise ValueError("edge lengths must be finite and non-negative")


def _nodes(source, target, xy64, offsets):
    """Map node ids to 0..N-1 in cell order; a node's position is the end of one of its edges."""
    ids, inverse = np.unique(np.concatenate([source, target]), return_inverse=True)
    u0, v0 = inverse[:len(source)], inverse[len(source):]
    pos = np.empty((len(ids), 2))
    pos[u0] = xy64[offsets[:-1]]
    pos[v0] = xy64[offsets[1:] - 1]
    extent = (float(xy64[:, 0].max()), float(xy64[:, 1].max()))
    grid, order = CellGrid.build(pos[:, 0], pos[:, 1], NODE_CELL_M, extent)
    rank = np.empty(len(ids), np.int32)
    rank[order] = np.arange(len(ids), dtype=np.int32)
    return rank[u0], rank[v0], pos[order].astype(np.float32), grid


def _csr(u: np.ndarray, v: np.ndarray, n: int):
    """Both directions of every edge, grouped by row; self-loops never shorten a path, so drop them."""
    keep = np.flatnonzero(u != v).astype(np.int32)
    rows = np.concatenate([u[keep], v[keep]])
    order = np.argsort(rows, kind="stable")
    indices = np.concatenate([v[keep], u[keep]])[order].astype(np.int32)
    adj_edge = np.concatenate([keep, keep])[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int32)
    return indptr, indices, adj_edge


def _components(indptr, indices, n) -> np.ndarray:
    """Label connected components so an unreachable pair fails before any search."""
    matrix = csr_matrix((np.ones(len(indices), np.int8), indices, indptr), shape=(n, n))
    _, labels = connected_components(matrix, directed=True, connection="weak")
    return labels.astype(np.int32)


def _segments(xy64: np.ndarray, offsets: np.ndarray):
    """Index segments by the midpoints of pieces no longer than a cell, so one long segment stays cheap."""
    is_first = np.ones(len(xy64), bool)
    is_first[offsets[1:] - 1] = False
    first = np.flatnonzero(is_first)
    seg = xy64[first + 1] - xy64[first]
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    pieces = np.maximum(1, np.ceil(seg_len / SEGMENT_CELL_M)).astype(np.int64)
    owner = np.repeat(np.arange(len(first)), pieces)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    t = (rank + 0.5) / pieces[owner]
    mid = xy64[first[owner]] + seg[owner] * t[:, None]
    extent = (float(xy64[:, 0].max()), float(xy64[:, 1].max()))
    grid, order = CellGrid.build(mid[:, 0], mid[:, 1], SEGMENT_CELL_M, extent)
    seg_edge = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets) - 1)
    geom_len = np.bincount(seg_edge, weights=seg_len, minlength=len(offsets) - 1)
    return grid, first[owner[order]].astype(np.int32), geom_len


def _length_ratio(length: np.ndarray, geom_len: np.ndarray) -> float:
    """Smallest length per planar metre (capped at 1): any path is at least this times its chord."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(geom_len > 0, length / geom_len, np.inf)
    return float(min(1.0, ratio.min())) if len(ratio) else 1.0
