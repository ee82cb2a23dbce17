"""Walking routes on the in-memory street graph, profiles ``shortest`` and ``safe`` (docs/routing.md)."""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from geo.graph import EdgeInput, StreetGraph
from geo.pathfinding import Costs, Path, Subgraph, extract, search, whole
from geo.projection import to_lonlat, to_metres
from geo.safety import DAY, NIGHT, PENALTIES, PathStats, SafetyWeights, path_stats, risk
from geo.snapping import Snap, nearest_distance, path_xy, snap

__all__ = ["EdgeInput", "OffNetwork", "PROFILES", "Route", "RouteEngine", "RouteEngineCache", "RoutingError",
           "StreetGraph", "Unreachable"]

PROFILES = ("shortest", "safe")
# Walking networks wind about 1.2-1.4 times the straight line; the first ellipse allows for that.
FIRST_GUESS_CIRCUITY = 1.45
FIRST_GUESS_SLACK_M = 150.0
GROWTH = 1.5  # area, and so work, grows with the square of the ellipse
# Below this many junctions searching the whole graph beats cutting out an ellipse (measured: 15% faster
# at 1,100 junctions, even at 3,000, twice as slow at 20,000).
WHOLE_GRAPH_NODES = 5_000
_TOLERANCE = 1e-9


class RoutingError(ValueError):
    """A route request that cannot be answered from the street graph."""


class OffNetwork(RoutingError):
    """A point farther from every street than the snapping distance."""

    def __init__(self, which: str, distance_m: float, max_m: float | None = None):
        self.which, self.distance_m, self.max_m = which, distance_m, max_m
        near = f"{distance_m:.0f} m" if math.isfinite(distance_m) else "too far"
        limit = f" (limit {max_m:.0f} m)" if max_m is not None else ""
        super().__init__(f"the '{which}' point is {near} from the street network{limit}")


class Unreachable(RoutingError):
    """No walking path joins the two points."""

    def __init__(self):
        super().__init__("no walking route joins the two points")


@dataclass(frozen=True)
class Route:
    """A route and the figures the API returns with it."""

    profile: str
    coords: list[tuple[float, float]]
    edge_ids: list[int]
    distance_m: float
    duration_s: float
    cctv_count: int
    bell_count: int
    covered_ratio: float
    safety_score: float
    shortest_distance_m: float
    detour_ratio: float

    def properties(self) -> dict:
        """The GeoJSON properties, rounded for display."""
        return {"profile": self.profile, "distance_m": round(self.distance_m, 1),
                "duration_s": round(self.duration_s), "cctv_count": self.cctv_count,
                "bell_count": self.bell_count, "covered_ratio": round(self.covered_ratio, 4),
                "safety_score": round(self.safety_score, 1),
                "shortest_distance_m": round(self.shortest_distance_m, 1), "detour_ratio": round(self.detour_ratio, 4)}

    def to_feature(self) -> dict:
        """A GeoJSON Feature with a LineString in lon/lat."""
        return {"type": "Feature", "properties": self.properties(),
                "geometry": {"type": "LineString", "coordinates": [list(c) for c in self.coords]}}


class RouteEngine:
    """Answers route requests from one immutable graph; safe to share between threads."""

    def __init__(self, graph: StreetGraph, *, max_detour: float = 1.4, snap_max_m: float = 150.0,
                 walking_speed_mps: float = 1.3, day: SafetyWeights = DAY, night: SafetyWeights = NIGHT):
        if max_detour < 1.0 or snap_max_m <= 0 or walking_speed_mps <= 0:
            raise ValueError("max_detour must be >= 1; snap distance and walking speed must be positive")
        self.graph, self.max_detour, self.snap_max_m = graph, max_detour, snap_max_m
        self.walking_speed_mps, self.weights = walking_speed_mps, {False: day, True: night}
        self._whole = whole(graph) if graph.node_count <= WHOLE_GRAPH_NODES else None
        self._whole_lengths = graph.length[self._whole.edges] if self._whole is not None else None
        # Risk per metre of every edge, day and night: one gather per query instead of a dozen.
        every = np.arange(graph.edge_count)
        self._risk = {k: risk(graph, every, w).astype(np.float32) for k, w in self.weights.items()}

    def memory_bytes(self) -> int:
        """Bytes held by the graph plus the engine's own arrays."""
        extra = sum(r.nbytes for r in self._risk.values())
        if self._whole is not None:
            extra += self._whole.nodes.nbytes + self._whole.local.nbytes + self._whole_lengths.nbytes
        return self.graph.memory_bytes() + int(extra)

    def route(self, from_lonlat, to_lonlat, *, profile: str = "safe", night: bool = False) -> Route:
        """Route between two (lon, lat) points; raises OffNetwork or Unreachable."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}, expected one of {PROFILES}")
        s, t = self._snap(from_lonlat, "from"), self._snap(to_lonlat, "to")
        g = self.graph
        if g.component[g.edge_u[s.edge]] != g.component[g.edge_u[t.edge]]:
            raise Unreachable()
        sub, shortest = self._shortest(s, t, self.max_detour if profile == "safe" else 1.0)
        short_stats = path_stats(g, shortest.edges, shortest.share)
        if profile == "shortest":
            return self._route(profile, shortest, short_stats, short_stats)
        safe = self._safest(sub, s, t, shortest, self._risk[bool(night)])
        safe_stats = path_stats(g, safe.edges, safe.share)
        # The shortest route is always allowed, so never answer with less camera coverage than it has.
        if safe_stats.covered_ratio < short_stats.covered_ratio:
            safe, safe_stats = shortest, short_stats
        return self._route(profile, safe, safe_stats, short_stats)

    def _snap(self, lonlat, which: str) -> Snap:
        x, y = to_metres(float(lonlat[0]), float(lonlat[1]))
        x, y = x - self.graph.origin[0], y - self.graph.origin[1]
        found = snap(self.graph, x, y, self.snap_max_m) if math.isfinite(x) and math.isfinite(y) else None
        if found is None:
            far = nearest_distance(self.graph, x, y, 4 * self.snap_max_m) if math.isfinite(x + y) else math.inf
            raise OffNetwork(which, far, self.snap_max_m)
        return found

    def _subgraph(self, s: Snap, t: Snap, major: float) -> Subgraph:
        return self._whole if self._whole is not None else extract(self.graph, s, t, major)

    def _shortest(self, s: Snap, t: Snap, detour: float) -> tuple[Subgraph, Path]:
        """Search ellipses until the shortest path is proven (see geo.pathfinding); size them for the detour."""
        g, ratio = self.graph, self.graph.length_ratio
        chord = math.hypot(t.x - s.x, t.y - s.y)
        major = detour * (FIRST_GUESS_CIRCUITY * chord + FIRST_GUESS_SLACK_M) / ratio if ratio > 0 else math.inf
        while True:
            sub = self._subgraph(s, t, major)
            lengths = self._whole_lengths if sub is self._whole else g.length[sub.edges]
            costs = Costs(lengths, float(g.length[s.edge]), float(g.length[t.edge]))
            # A cut-out ellipse is small already; on the whole graph a limit saves exploring all of it.
            path = search(g, sub, s, t, costs, limit=2 * ratio * major if sub is self._whole else math.inf)
            if path is None and sub.complete:
                path = search(g, sub, s, t, costs)
            if path is None and sub.complete:
                raise Unreachable()
            if path is not None and (sub.complete or path.cost <= ratio * sub.major):
                return sub, path
            # The path found is inside the next ellipse, so that one proves its answer.
            major = path.cost / ratio * (1 + _TOLERANCE) if path is not None else major * GROWTH

    def _safest(self, sub: Subgraph, s: Snap, t: Snap, shortest: Path, edge_risk: np.ndarray) -> Path:
        """Route of the strongest penalty that keeps within the detour bound, else the shortest route."""
        g, bound = self.graph, self.max_detour * shortest.cost * (1 + _TOLERANCE)
        if not sub.complete and g.length_ratio * sub.major < bound:
            sub = extract(g, s, t, bound / g.length_ratio)  # every path within the bound lies inside
        lengths = self._whole_lengths if sub is self._whole else g.length[sub.edges]
        risks = edge_risk[sub.edges]
        end_risk = (float(edge_risk[s.edge]), float(edge_risk[t.edge]))
        metres = g.length[shortest.edges] * shortest.share
        short_m, short_risk_m = float(metres.sum()), float(metres @ edge_risk[shortest.edges])

        def attempt(penalty: float) -> Path | None:
            costs = Costs(lengths * (1 + penalty * risks), float(g.length[s.edge] * (1 + penalty * end_risk[0])),
                          float(g.length[t.edge] * (1 + penalty * end_risk[1])))
            # The shortest route's cost bounds the search: the answer costs no more than it.
            limit = (short_m + penalty * short_risk_m) * (1 + _TOLERANCE) + _TOLERANCE
            path = search(g, sub, s, t, costs, limit=limit)
            return path if path is not None and float((g.length[path.edges] * path.share).sum()) <= bound else None

        # The strongest penalty fits the bound for most walks, so one search usually settles it.
        strongest = attempt(PENALTIES[-1])
        if strongest is not None:
            return strongest
        best, lo, hi = shortest, -1, len(PENALTIES) - 1
        while hi - lo > 1:  # stronger penalties only ever lengthen the route, so bisect
            mid = (lo + hi) // 2
            path = attempt(PENALTIES[mid])
            best, lo, hi = (path, mid, hi) if path is not None else (best, lo, mid)
        return best

    def _route(self, profile: str, path: Path, stats: PathStats, short: PathStats) -> Route:
        g = self.graph
        xy = path_xy(g, path.edges, path.start, path.end)
        keep = np.r_[True, np.any(np.diff(xy, axis=0) != 0, axis=1)]
        xy = xy[keep] if keep.sum() > 1 else xy[[0, 0]]  # a LineString needs two points
        lon, lat = to_lonlat(xy[:, 0] + g.origin[0], xy[:, 1] + g.origin[1])
        travelled = (path.start != path.end) | (g.length[path.edges] == 0)
        return Route(profile=profile, coords=list(zip(lon.tolist(), lat.tolist())),
                     edge_ids=_edge_ids(g, path.edges[travelled]), distance_m=stats.distance_m,
                     duration_s=stats.distance_m / self.walking_speed_mps, cctv_count=round(stats.cctv),
                     bell_count=round(stats.bells), covered_ratio=stats.covered_ratio,
                     safety_score=stats.safety_score, shortest_distance_m=short.distance_m,
                     detour_ratio=stats.distance_m / short.distance_m if short.distance_m > 0 else 1.0)


def _edge_ids(graph: StreetGraph, edges: np.ndarray) -> list[int]:
    """External ids of the travelled edges, one per run of pieces on the same edge."""
    ids = graph.edge_ids[edges].tolist()
    return [i for k, i in enumerate(ids) if k == 0 or ids[k - 1] != i]


class RouteEngineCache:
    """One engine per process, rebuilt when the data version changes.

    Building a city's graph takes seconds. The first caller to see a new version builds it; meanwhile every
    other caller keeps the engine already held (one version behind for those seconds), and only callers with
    none at all wait for the first build."""

    def __init__(self, **engine_options):
        self._options, self._engine, self._lock = engine_options, None, threading.Lock()

    @property
    def engine(self) -> RouteEngine | None:
        """The engine held now, if any."""
        return self._engine

    def get(self, version: str, build_graph: Callable[[], StreetGraph]) -> RouteEngine:
        """Return the engine for ``version``, calling ``build_graph`` only when it must rebuild (see the class)."""
        held = self._engine
        if held is not None and held.graph.version == version:
            return held
        if not self._lock.acquire(blocking=held is None):
            return held  # another caller is building the new version
        try:
            if self._engine is None or self._engine.graph.version != version:
                self._engine = RouteEngine(build_graph(), **self._options)
            return self._engine
        finally:
            self._lock.release()
