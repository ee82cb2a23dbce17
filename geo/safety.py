"""The safe profile's per-edge risk and the safety figures of a route (documented in docs/routing.md)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geo.graph import StreetGraph

# Street-light spacing of about 33 m (3 per 100 m) counts as fully lit.
LIT_LIGHTS_PER_100M = 3.0
# Penalty strengths the safe profile tries, weakest first; bisection keeps the strongest that fits.
PENALTIES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


@dataclass(frozen=True)
class SafetyWeights:
    """Risk per metre: exposure (out of camera range, unlit) times what mitigation leaves of it."""

    uncovered: float
    dark: float
    bell_discount: float
    safe_house_discount: float


DAY = SafetyWeights(uncovered=1.0, dark=0.0, bell_discount=0.25, safe_house_discount=0.10)
# At night darkness counts, and a bell or an open safe house nearby is worth more.
NIGHT = SafetyWeights(uncovered=1.0, dark=0.75, bell_discount=0.35, safe_house_discount=0.25)


@dataclass(frozen=True)
class PathStats:
    """Sums over the pieces of a path, partial edges pro rata."""

    distance_m: float
    covered_m: float
    cctv: float
    bells: float
    score_m: float  # safety score times metres, divided by distance for the route's score

    @property
    def covered_ratio(self) -> float:
        """Share of the length within camera range."""
        return self.covered_m / self.distance_m if self.distance_m > 0 else 0.0

    @property
    def safety_score(self) -> float:
        """Length-weighted edge score, 0 to 100."""
        return 100.0 * self.score_m / self.distance_m if self.distance_m > 0 else 0.0


def covered_share(graph: StreetGraph, edges: np.ndarray) -> np.ndarray:
    """Share of each edge within camera range (0 for zero-length edges)."""
    length = graph.length[edges]
    share = np.divide(graph.covered[edges], length, out=np.zeros(len(length)), where=length > 0)
    return np.clip(share, 0.0, 1.0, out=share)


def lit_share(graph: StreetGraph, edges: np.ndarray) -> np.ndarray:
    """How lit each edge is, 0 to 1, from its lights per 100 m."""
    per_100m = graph.lights[edges] * 100.0 / np.maximum(graph.length[edges], 1.0)
    return np.minimum(1.0, per_100m / LIT_LIGHTS_PER_100M)


def risk(graph: StreetGraph, edges: np.ndarray, weights: SafetyWeights) -> np.ndarray:
    """Risk per metre of each edge, never negative, so the safe cost never falls below the length."""
    exposure = weights.uncovered * (1.0 - covered_share(graph, edges))
    if weights.dark:
        exposure += weights.dark * (1.0 - lit_share(graph, edges))
    mitigation = (1.0 - weights.bell_discount * (graph.bells[edges] > 0)
                  - weights.safe_house_discount * graph.safe_house[edges])
    return exposure * np.maximum(mitigation, 0.0)


def path_stats(graph: StreetGraph, edges: np.ndarray, share: np.ndarray) -> PathStats:
    """Add up length, coverage, cameras, bells and score along pieces of ``edges``."""
    metres = graph.length[edges] * share
    covered = covered_share(graph, edges)
    # Edge score, 0 to 1: cameras weigh most, then light, a bell nearby, a safe house nearby.
    score = (0.6 * covered + 0.2 * lit_share(graph, edges) + 0.1 * (graph.bells[edges] > 0)
             + 0.1 * graph.safe_house[edges])
    return PathStats(distance_m=float(metres.sum()), covered_m=float(covered @ metres),
                     cctv=float(graph.cctv[edges] @ share), bells=float(graph.bells[edges] @ share),
                     score_m=float(score @ metres))
