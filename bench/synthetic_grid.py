"""A Seoul-sized jittered street grid with random but spatially clustered safety attributes."""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from geo.graph import EdgeInput
from geo.projection import coords_to_metres, to_lonlat, to_metres

SEOUL_BBOX = (126.8, 37.43, 127.2, 37.70)  # lon/lat: the extent of the city's street network
BENT_SHARE = 0.2  # edges with a middle vertex, so snapping and geometry cutting see polylines


@dataclass(frozen=True, eq=False)
class Grid:
    """Parallel edge arrays; edge e owns vertices ``offsets[e]:offsets[e+1]`` of ``lonlat``."""

    edge_id: np.ndarray
    source: np.ndarray
    target: np.ndarray
    length_m: np.ndarray
    covered_m: np.ndarray
    cctv_weight: np.ndarray
    bell_count: np.ndarray
    light_count: np.ndarray
    safe_house_near: np.ndarray
    lonlat: np.ndarray
    offsets: np.ndarray

    def edges(self) -> Iterator[EdgeInput]:
        """Yield plain records like an importer would (Python numbers, lists of coordinates)."""
        coords, offs = self.lonlat.tolist(), self.offsets.tolist()
        columns = zip(self.edge_id.tolist(), self.source.tolist(), self.target.tolist(), self.length_m.tolist(),
                      self.covered_m.tolist(), self.cctv_weight.tolist(), self.bell_count.tolist(),
                      self.light_count.tolist(), self.safe_house_near.tolist())
        for i, row in enumerate(columns):
            yield EdgeInput(*row, coords[offs[i]:offs[i + 1]])


def grid_shape(min_edges: int, width: float, height: float) -> tuple[int, int]:
    """Smallest node grid with the bbox's aspect ratio and at least ``min_edges`` edges."""
    ny = max(2, int(math.sqrt(min_edges / 2 * height / width)))
    while True:
        nx = max(2, round(ny * width / height))
        if 2 * nx * ny - nx - ny >= min_edges:
            return nx, ny
        ny += 1


def make_grid(min_edges: int = 1_000_000, *, bbox=SEOUL_BBOX, seed: int = 7) -> Grid:
    """Generate the grid: jittered junctions, some bent edges, clustered cameras, bells and lights."""
    rng = np.random.default_rng(seed)
    (x0, x1), (y0, y1) = (np.asarray(v) for v in zip(*[to_metres(bbox[0], bbox[1]), to_metres(bbox[2], bbox[3])]))
    nx, ny = grid_shape(min_edges, x1 - x0, y1 - y0)
    sx, sy = (x1 - x0) / (nx - 1), (y1 - y0) / (ny - 1)
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny))
    node_x = x0 + (gx.ravel() + rng.uniform(-0.3, 0.3, nx * ny)) * sx
    node_y = y0 + (gy.ravel() + rng.uniform(-0.3, 0.3, nx * ny)) * sy
    ids = np.arange(nx * ny).reshape(ny, nx)
    src = np.concatenate([ids[:, :-1].ravel(), ids[:-1, :].ravel()])
    dst = np.concatenate([ids[:, 1:].ravel(), ids[1:, :].ravel()])
    xy, offsets = _geometry(rng, np.column_stack([node_x, node_y]), src, dst, min(sx, sy))
    lon, lat = to_lonlat(xy[:, 0], xy[:, 1])
    seg = np.diff(xy, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    inner = np.ones(len(seg), bool)
    inner[offsets[1:-1] - 1] = False  # the step from one edge's last vertex to the next edge's first
    length = np.add.reduceat(np.where(inner, seg_len, 0.0), offsets[:-1])
    mid = (xy[offsets[:-1]] + xy[offsets[1:] - 1]) / 2
    attrs = _attributes(rng, mid[:, 0] - x0, mid[:, 1] - y0, length)
    return Grid(edge_id=np.arange(1, len(src) + 1), source=src + 1_000_001, target=dst + 1_000_001,
                length_m=length, lonlat=np.column_stack([lon, lat]), offsets=offsets, **attrs)


def attribute_records(records, seed: int = 7) -> list[EdgeInput]:
    """Give real edges (``source_node``, ``target_node``, ``length_m``, ``coords``) synthetic attributes."""
    mid = coords_to_metres([r.coords[len(r.coords) // 2] for r in records])
    length = np.array([r.length_m for r in records])
    attrs = _attributes(np.random.default_rng(seed), mid[:, 0] % 10_000, mid[:, 1] % 10_000, length)
    columns = zip(*(attrs[k].tolist() for k in ("covered_m", "cctv_weight", "bell_count", "light_count",
                                                   "safe_house_near")))
    return [EdgeInput(i + 1, r.source_node, r.target_node, r.length_m, *row, r.coords)
            for i, (r, row) in enumerate(zip(records, columns))]


def _geometry(rng, nodes: np.ndarray, src: np.ndarray, dst: np.ndarray, spacing: float):
    """Straight edges, a share of them with a middle vertex pushed sideways."""
    bent = rng.random(len(src)) < BENT_SHARE
    counts = 2 + bent.astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    xy = np.empty((offsets[-1], 2))
    a, b = nodes[src], nodes[dst]
    normal = (b - a)[:, ::-1] * [1, -1] / np.hypot(*(b - a).T)[:, None]
    middle = (a + b) / 2 + normal * rng.uniform(-0.15, 0.15, len(src))[:, None] * spacing
    xy[offsets[:-1]] = a
    xy[offsets[1:] - 1] = b
    xy[offsets[:-1][bent] + 1] = middle[bent]
    return xy, offsets


def _attributes(rng, x: np.ndarray, y: np.ndarray, length: np.ndarray) -> dict:
    """Cameras and lights cluster in smooth 'busy' areas, as they do around stations and markets."""
    busy = np.clip(0.5 + 0.3 * np.sin(x / 1900 + 1.3) * np.cos(y / 1400) + 0.2 * np.sin(y / 3100), 0, 1)
    has_camera = rng.random(len(x)) < busy
    share = np.where(has_camera, rng.uniform(0.6, 1.0, len(x)), rng.uniform(0.0, 0.2, len(x)))
    cctv = np.where(has_camera, rng.integers(1, 4, len(x)), 0).astype(float)
    return {"covered_m": share * length, "cctv_weight": cctv, "bell_count": rng.poisson(0.15 * busy),
            "light_count": rng.poisson(length / 35 * (0.2 + 0.8 * busy)),
            "safe_house_near": rng.random(len(x)) < 0.02}
