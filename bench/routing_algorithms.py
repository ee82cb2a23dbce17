"""Compare ways to answer one walking route on the synthetic Seoul grid (why geo.pathfinding is built as it is).

    .venv/bin/python -m bench.routing_algorithms [--edges 1000000] [--pairs 40]

Times, per junction pair 0.5-5 km apart: the engine (ellipse subgraph + scipy Dijkstra), scipy's
Dijkstra on the whole graph (with and without a distance limit), and A* and Dijkstra in pure Python
with heapq over Python lists, on the shortest cost and on the safe cost with the strongest penalty.
Only the engine rows include snapping and building the answer; the others time the search alone.
"""
from __future__ import annotations

import argparse
import gc
import heapq
import math
import time

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from bench.routes_engine import node_positions, random_pairs
from bench.synthetic_grid import make_grid
from geo.routing import RouteEngine, StreetGraph
from geo.safety import PENALTIES


def python_search(adj, xy, s: int, t: int, heuristic: bool) -> float:
    """A* (Euclidean heuristic, admissible because every cost is at least the length) or plain Dijkstra."""
    indptr, indices, weights = adj
    xs, ys = xy
    tx, ty = xs[t], ys[t]
    best, queue, done = {s: 0.0}, [(0.0, 0.0, s)], set()
    while queue:
        _, cost, node = heapq.heappop(queue)
        if node == t:
            return cost
        if node in done:
            continue
        done.add(node)
        for k in range(indptr[node], indptr[node + 1]):
            nxt, new = indices[k], cost + weights[k]
            if new < best.get(nxt, math.inf):
                best[nxt] = new
                h = math.hypot(xs[nxt] - tx, ys[nxt] - ty) if heuristic else 0.0
                heapq.heappush(queue, (new + h, new, nxt))
    return math.inf


def timed(fn, pairs, repeat: int = 1) -> list[float]:
    """Milliseconds per call of fn(a, b), the best of ``repeat`` tries per pair."""
    times = []
    for a, b in pairs:
        tries = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn(a, b)
            tries.append((time.perf_counter() - started) * 1000)
        times.append(min(tries))
    return times


def main(argv=None):
    """Build the grid, run every method on the same pairs, print p50/p99."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=1, help="tries per pair, keep the best (for busy machines)")
    args = parser.parse_args(argv)
    rep = args.repeat
    gc.disable()
    edges = list(make_grid(args.edges).edges())
    gc.freeze()
    gc.enable()
    engine = RouteEngine(StreetGraph.build(edges, "bench"))
    g, positions = engine.graph, node_positions(edges)
    pairs = random_pairs(positions, args.pairs, 500, 5000)
    node_of = {}  # engine node of each junction id
    for e, u, v in zip(edges, g.edge_u.tolist(), g.edge_v.tolist()):
        node_of[e.source], node_of[e.target] = u, v
    internal = [(node_of[a], node_of[b]) for a, b in pairs]
    safe_cost = g.length * (1 + PENALTIES[-1] * engine._risk[True].astype(np.float64))
    xy = (g.node_xy[:, 0].astype(float).tolist(), g.node_xy[:, 1].astype(float).tolist())
    rows = {}
    for profile in ("shortest", "safe"):
        rows[f"engine {profile} (ellipse + scipy), whole request"] = timed(
            lambda a, b, p=profile: engine.route(positions[a], positions[b], profile=p, night=True), pairs, rep)
    for name, cost in (("shortest", g.length), ("safe cost", safe_cost)):
        matrix = csr_matrix((cost[g.adj_edge], g.indices, g.indptr), shape=(g.node_count,) * 2)
        rows[f"scipy whole graph, no limit, {name}"] = timed(
            lambda a, b, m=matrix: dijkstra(m, indices=a), internal, rep)
        if name == "shortest":  # a length limit means nothing to the safe cost
            chord = {p: float(np.hypot(*(g.node_xy[p[0]] - g.node_xy[p[1]]))) for p in internal}
            rows["scipy whole graph, limit 1.45 x chord + 150 m, shortest"] = timed(
                lambda a, b, m=matrix, c=chord: dijkstra(m, indices=a, limit=1.45 * c[(a, b)] + 150), internal, rep)
        adj = (g.indptr.tolist(), g.indices.tolist(), cost[g.adj_edge].tolist())
        rows[f"python A* (heapq), {name}"] = timed(lambda a, b, j=adj: python_search(j, xy, a, b, True), internal, rep)
        rows[f"python Dijkstra (heapq), {name}"] = timed(
            lambda a, b, j=adj: python_search(j, xy, a, b, False), internal[:10], rep)
    print(f"{g.edge_count:,} edges, {len(pairs)} pairs 0.5-5 km (python Dijkstra: first 10)")
    for name, times in rows.items():
        print(f"{name:58} p50 {np.percentile(times, 50):8.1f} ms  p99 {np.percentile(times, 99):8.1f} ms")


if __name__ == "__main__":
    main()
