"""Time the route engine against pgr_dijkstra on the same edges, costs and pairs.

    .venv/bin/python -m bench.routes_engine                  # synthetic Seoul-sized grid, >= 1M edges
    .venv/bin/python -m bench.routes_engine --gwanak [OSM]   # the real Gwanak walk network

Pairs are random junction pairs 0.5-5 km apart in a straight line (walks people take), plus a few
cross-city pairs reported on their own. ``pgr_dijkstra`` re-reads the whole edge table on every
call; the bbox variant reads only the edges near the pair, the usual way to make it fast.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import time

import numpy as np
import psycopg
from scipy.spatial import cKDTree

from bench.synthetic_grid import make_grid
from geo.projection import coords_to_metres
from geo.routing import RouteEngine, StreetGraph, Unreachable

DEFAULT_DSN = "host=127.0.0.1 user=postgres dbname=bench_routes"
PGR_SQL = "SELECT id, source, target, cost, reverse_cost FROM bench_edges"
BBOX_SQL = PGR_SQL + " WHERE geom && ST_Expand(ST_MakeEnvelope({}, {}, {}, {}, 4326), {})"


def node_positions(edges) -> dict[int, tuple[float, float]]:
    """Lon/lat of every junction, taken from the ends of its edges."""
    positions = {}
    for e in edges:
        positions[e.source] = tuple(e.coords[0])
        positions[e.target] = tuple(e.coords[-1])
    return positions


def random_pairs(positions: dict, n: int, min_m: float, max_m: float, seed: int = 1) -> list[tuple[int, int]]:
    """Junction pairs whose straight-line distance is drawn uniformly from [min_m, max_m]."""
    ids = np.fromiter(positions, np.int64, len(positions))
    xy = coords_to_metres([positions[i] for i in ids])
    tree, rng, pairs = cKDTree(xy), np.random.default_rng(seed), []
    for _ in range(200 * n):
        a, d, angle = rng.integers(len(ids)), rng.uniform(min_m, max_m), rng.uniform(0, 2 * math.pi)
        _, b = tree.query(xy[a] + d * np.array([math.cos(angle), math.sin(angle)]))
        if min_m <= np.hypot(*(xy[b] - xy[a])) <= max_m:
            pairs.append((int(ids[a]), int(ids[b])))
        if len(pairs) == n:
            break
    return pairs


def load_pg(edges, admin_dsn: str, dsn: str) -> float:
    """Recreate the benchmark database and COPY the edges in; return the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS bench_routes")
        admin.execute("CREATE DATABASE bench_routes")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE EXTENSION postgis; CREATE EXTENSION pgrouting")
        conn.execute("CREATE UNLOGGED TABLE bench_edges (id bigint, source bigint, target bigint, "
                     "cost float8, reverse_cost float8, geom geometry(LineString, 4326))")
        with conn.cursor().copy("COPY bench_edges FROM STDIN") as copy:
            for e in edges:
                line = ",".join(f"{lon!r} {lat!r}" for lon, lat in e.coords)
                copy.write_row((e.edge_id, e.source, e.target, e.length_m, e.length_m,
                                f"SRID=4326;LINESTRING({line})"))
        conn.execute("CREATE INDEX ON bench_edges USING gist (geom)")
        conn.execute("ANALYZE bench_edges")
    return time.perf_counter() - started


def time_engine(engine: RouteEngine, positions, pairs, profile: str, night: bool = False, repeat: int = 1):
    """Milliseconds per route (the best of ``repeat`` tries) and the routes, in pair order."""
    times, routes = [], []
    for a, b in pairs:
        tries = []
        for _ in range(repeat):
            started = time.perf_counter()
            route = engine.route(positions[a], positions[b], profile=profile, night=night)
            tries.append((time.perf_counter() - started) * 1000)
        times.append(min(tries))
        routes.append(route)
    return times, routes


def time_pgr(conn, positions, pairs, bbox: bool, repeat: int = 1):
    """Milliseconds per pgr_dijkstra call (best of ``repeat``) and its total cost (None: no path)."""
    times, costs = [], []
    for a, b in pairs:
        sql, tries = _bbox_sql(positions[a], positions[b]) if bbox else PGR_SQL, []
        for _ in range(repeat):
            started = time.perf_counter()
            rows = conn.execute("SELECT node, edge, agg_cost FROM pgr_dijkstra(%s, %s, %s)", (sql, a, b)).fetchall()
            tries.append((time.perf_counter() - started) * 1000)
        times.append(min(tries))
        costs.append(rows[-1][2] if rows else (0.0 if a == b else None))
    return times, costs


def _bbox_sql(p, q) -> str:
    """Edge SQL limited to the pair's box grown by a quarter of its length (at least 200 m)."""
    chord = math.dist(coords_to_metres([p])[0], coords_to_metres([q])[0])
    margin = max(200.0, chord / 4) / 88_000  # metres to degrees; a degree of longitude is ~88 km here
    return BBOX_SQL.format(min(p[0], q[0]), min(p[1], q[1]), max(p[0], q[0]), max(p[1], q[1]), margin)


def _stats(times) -> dict:
    return {"n": len(times), "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def _matches(costs, routes) -> int:
    """How many pgRouting costs equal the engine's shortest distances (to a micrometre per metre)."""
    return sum(c is not None and abs(c - r.distance_m) <= 1e-6 * max(1.0, c) for c, r in zip(costs, routes))


def run_benchmark(edges, pairs, dsn=DEFAULT_DSN, *, admin_dsn=None, pgr_pairs=20, extra_pairs=(), repeat=1,
                  out=print):
    """Build the graph, load PostGIS, time both on ``pairs``; return the figures as a dict."""
    edges, load_before = list(edges), os.getloadavg()[0]
    engine, result = _build(edges, out)
    positions = node_positions(edges)
    pairs = [p for p in pairs if _reachable(engine, positions, p)]
    few = pairs[:pgr_pairs]
    engine_times, shortest_routes = _time_profiles(engine, positions, pairs, repeat, result)
    result["pg_load_s"] = load_pg(edges, admin_dsn or dsn.replace("dbname=bench_routes", "dbname=postgres"), dsn)
    gc.collect()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT * FROM pgr_dijkstra(%s, %s, %s)", (PGR_SQL, *pairs[0]))  # load the library once
        times, costs = time_pgr(conn, positions, few, bbox=False, repeat=repeat)
        result["pgr_dijkstra"] = {**_stats(times), "equal_cost": _matches(costs, shortest_routes[:len(few)])}
        times, costs = time_pgr(conn, positions, pairs, bbox=True, repeat=repeat)
        result["pgr_dijkstra_bbox"] = {**_stats(times), "equal_cost": _matches(costs, shortest_routes)}
        if extra_pairs:
            result["cross_city"] = _cross_city(engine, conn, positions, list(extra_pairs))
    result["speedup_p50"] = _speedups(result, engine_times, len(few))
    result["load_average"] = [load_before, os.getloadavg()[0]]
    _report(result, out)
    return result


def _build(edges, out) -> tuple[RouteEngine, dict]:
    """Build graph and engine, timing each and reporting memory."""
    started = time.perf_counter()
    graph = StreetGraph.build(edges, "bench")
    built = time.perf_counter()
    engine = RouteEngine(graph)
    result = {"edges": graph.edge_count, "nodes": graph.node_count, "build_s": built - started,
              "engine_s": time.perf_counter() - built, "graph_mb": graph.memory_bytes() / 1e6,
              "engine_mb": engine.memory_bytes() / 1e6}
    out(f"graph: {graph.edge_count:,} edges, {graph.node_count:,} nodes, built in {result['build_s']:.2f} s "
        f"(+{result['engine_s']:.2f} s engine), {result['graph_mb']:.1f} MB of arrays "
        f"({result['engine_mb']:.1f} MB with the engine's risk arrays)")
    return engine, result


def _time_profiles(engine, positions, pairs, repeat, result):
    """Time shortest, safe by day and safe at night on every pair; return the times and shortest routes."""
    engine_times = {}
    for profile, night in (("shortest", False), ("safe", False), ("safe", True)):
        times, routes = time_engine(engine, positions, pairs, profile, night, repeat)
        key = profile + ("_night" if night else "")
        result[key], engine_times[key] = _stats(times), times
        result[key]["mean_detour"] = float(np.mean([r.detour_ratio for r in routes]))
        result[key]["mean_covered"] = float(np.mean([r.covered_ratio for r in routes]))
        result[key]["mean_km"] = float(np.mean([r.distance_m for r in routes])) / 1000
        if profile == "shortest":
            shortest_routes = routes
    return engine_times, shortest_routes


def _reachable(engine, positions, pair) -> bool:
    try:
        engine.route(positions[pair[0]], positions[pair[1]], profile="shortest")
    except Unreachable:
        return False
    return True


def _cross_city(engine, conn, positions, pairs) -> dict:
    """Routes across the whole city: far beyond a walk, reported for honesty."""
    short, routes = time_engine(engine, positions, pairs, "shortest")
    safe, _ = time_engine(engine, positions, pairs, "safe", night=True)
    pgr, costs = time_pgr(conn, positions, pairs, bbox=False)
    return {"n": len(pairs), "mean_km": float(np.mean([r.distance_m for r in routes])) / 1000,
            "shortest_ms": short, "safe_night_ms": safe, "pgr_dijkstra_ms": pgr, "equal_cost": _matches(costs, routes)}


def _speedups(result, engine_times, n_few) -> dict:
    """p50 ratios; against the full-table pgr_dijkstra on the very pairs it ran."""
    pgr, bbox = result["pgr_dijkstra"]["p50_ms"], result["pgr_dijkstra_bbox"]["p50_ms"]
    return {"shortest_vs_pgr": pgr / np.percentile(engine_times["shortest"][:n_few], 50),
            "safe_night_vs_pgr": pgr / np.percentile(engine_times["safe_night"][:n_few], 50),
            "shortest_vs_pgr_bbox": bbox / result["shortest"]["p50_ms"],
            "safe_night_vs_pgr_bbox": bbox / result["safe_night"]["p50_ms"]}


def _report(result, out):
    for key in ("shortest", "safe", "safe_night", "pgr_dijkstra", "pgr_dijkstra_bbox"):
        row = result[key]
        extra = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k not in _stats([0])}
        out(f"{key:18} n={row['n']:4}  p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  {extra}")
    out("speed-up at p50: " + ", ".join(f"{k} {v:.1f}x" for k, v in result["speedup_p50"].items()))
    if "cross_city" in result:
        c = result["cross_city"]
        out(f"cross-city ({c['n']} pairs, mean {c['mean_km']:.1f} km): shortest {_ms(c['shortest_ms'])}, "
            f"safe night {_ms(c['safe_night_ms'])}, pgr_dijkstra {_ms(c['pgr_dijkstra_ms'])}, "
            f"equal cost {c['equal_cost']}/{c['n']}")
    out(f"PostGIS load {result['pg_load_s']:.1f} s; 1-minute load average {result['load_average'][0]:.1f} "
        f"before, {result['load_average'][1]:.1f} after (the machine has {os.cpu_count()} CPUs)")


def _ms(times) -> str:
    return "/".join(f"{t:.0f}" for t in times) + " ms"


def gwanak_edges(path: str):
    """The real walk network from OSM, with synthetic safety attributes until the database ones are wired."""
    from bench.synthetic_grid import attribute_records
    from geo.osm import read_walk_network
    return attribute_records(read_walk_network(path))


def main(argv=None):
    """Parse arguments, make the graph and pairs, run, optionally save JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", type=int, default=1_000_000, help="minimum synthetic grid size")
    parser.add_argument("--gwanak", nargs="?", const="data/gwanak_nangok_walk.osm", help="use an OSM walk network")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--pgr-pairs", type=int, default=20, help="pairs timed with the full-table pgr_dijkstra")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--repeat", type=int, default=1, help="time each request this often, keep the best")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    gc.disable()  # millions of small records otherwise trigger full collections over and over
    edges = gwanak_edges(args.gwanak) if args.gwanak else list(make_grid(args.edges).edges())
    gc.freeze()  # and keep them out of every later collection (the COPY loop makes garbage)
    gc.enable()
    positions = node_positions(edges)
    near, far = (0.3, 3.0) if args.gwanak else (0.5, 5.0)
    pairs = random_pairs(positions, args.pairs, near * 1000, far * 1000)
    cross = [] if args.gwanak else random_pairs(positions, 5, 20_000, 40_000, seed=2)
    result = run_benchmark(edges, pairs, args.dsn, pgr_pairs=args.pgr_pairs, extra_pairs=cross, repeat=args.repeat)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
