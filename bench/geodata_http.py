"""Facilities and routes over HTTP against their raw baselines, measured in the same run.

    .venv/bin/python -m bench.geodata_http [--synthetic 200000] [--queries 1000]

Facilities: 200,000 synthetic cameras are added across Seoul (Seoul has about 177,000 public CCTV),
then `GET /api/v1/facilities` (one gunicorn api process, one keep-alive connection, http.client) is
timed against the same
geography KNN query sent raw through psycopg, for the same random points.
Routes: `GET /api/v1/routes` on the Gwanak network against the in-process engine for the same pairs.
"""
import argparse
import http.client
import os
import random
import time
from urllib.parse import urlencode

os.environ.setdefault("BENCH_DB_NAME", "safety_bench_geo")  # 200k synthetic cameras stay out of other benches

import psycopg  # noqa: E402

from bench.common import (  # noqa: E402
    BENCH_DATABASE_URL,
    Gunicorn,
    fmt_ms,
    percentiles,
    prepare_app,
    rss_mib,
    server_env,
)

SEOUL = (126.80, 127.18, 37.43, 37.70)
RAW_KNN = """
    SELECT id, kind, name, camera_count, attributes, ST_X(geom::geometry), ST_Y(geom::geometry),
           ST_Distance(geom, p.g)
    FROM facilities, (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography AS g) AS p
    WHERE kind = 'cctv' AND ST_DWithin(geom, p.g, 300) ORDER BY geom <-> p.g LIMIT 50
"""


def dsn() -> str:
    return BENCH_DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")


def add_synthetic_cameras(n: int, seed: int = 1):
    """COPY n synthetic cameras across Seoul (idempotent by source_id), then ANALYZE."""
    rng = random.Random(seed)
    with psycopg.connect(dsn(), autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM facilities WHERE source_id LIKE 'synthetic:%'").fetchone()[0]
        if have >= n:
            return have
        conn.execute("DELETE FROM facilities WHERE source_id LIKE 'synthetic:%'")
        with conn.cursor().copy("COPY facilities (kind, source_id, name, geom) FROM STDIN") as copy:
            for i in range(n):
                lon, lat = rng.uniform(SEOUL[0], SEOUL[1]), rng.uniform(SEOUL[2], SEOUL[3])
                copy.write_row(("cctv", f"synthetic:{i}", f"synthetic camera {i}", f"SRID=4326;POINT({lon} {lat})"))
        conn.execute("ANALYZE facilities")
    return n


def points(n: int, seed: int = 2):
    rng = random.Random(seed)
    return [(rng.uniform(SEOUL[2], SEOUL[3]), rng.uniform(SEOUL[0], SEOUL[1])) for _ in range(n)]


def time_raw(pts) -> list:
    with psycopg.connect(dsn()) as conn:
        conn.execute("SET jit = off")
        out = []
        for lat, lon in pts:
            t0 = time.perf_counter()
            conn.execute(RAW_KNN, {"lat": lat, "lon": lon}, prepare=True).fetchall()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def time_http(url: str, path: str, params_list) -> tuple[list, int]:
    """GETs over one keep-alive connection with the standard library's thin client: `requests` alone spends
    about a millisecond of Python per call, which would be charged to the server."""
    host, port = url.removeprefix("http://").split(":")
    conn, out, errors = http.client.HTTPConnection(host, int(port), timeout=10), [], 0
    for params in params_list:
        t0 = time.perf_counter()
        conn.request("GET", path + ("?" + urlencode(params) if params else ""))
        answer = conn.getresponse()
        answer.read()
        out.append((time.perf_counter() - t0) * 1000)
        errors += answer.status != 200
    conn.close()
    return out, errors


def bench_facilities(server, n_queries):
    pts = points(n_queries)
    time_raw(pts[:50]), time_http(server.url, "/api/v1/facilities", [{"lat": 37.5, "lon": 127.0}] * 50)  # warm
    raw = percentiles(time_raw(pts))
    queries = [{"lat": lat, "lon": lon, "radius": 300, "kinds": "cctv", "limit": 50} for lat, lon in pts]
    http, errors = time_http(server.url, "/api/v1/facilities", queries)
    http = percentiles(http)
    floor = percentiles(time_http(server.url, "/healthz", [None] * len(pts))[0])
    print(f"HTTP floor (GET /healthz) : {fmt_ms(floor)}")
    print(f"facilities raw SQL KNN    : {fmt_ms(raw)}")
    print(f"GET /api/v1/facilities    : {fmt_ms(http)}  errors={errors}")
    print(f"ratio endpoint/raw at p50 : {http['p50'] / raw['p50']:.2f}x  (goal <= 3x); p99 "
          f"{http['p99'] / raw['p99']:.2f}x")


def route_pairs(app, n, seed=3):
    from sqlalchemy import text

    from safety_api.extensions import db
    with app.app_context():
        nodes = db.session.execute(text(
            "SELECT ST_Y(ST_StartPoint(geom)), ST_X(ST_StartPoint(geom)) FROM street_edges ORDER BY id")).all()
    rng = random.Random(seed)
    return [(rng.choice(nodes), rng.choice(nodes)) for _ in range(n)]


def bench_routes(app, server, n):
    from safety_api.api.geodata import route_settings
    from safety_api.extensions import db
    from safety_api.services import routes
    pairs = route_pairs(app, n)
    with app.app_context():
        engine = routes.engine(db.session, settings=route_settings(app.config))
        for profile in ("shortest", "safe"):
            alone, params = [], []
            for (a, b) in pairs:
                t0 = time.perf_counter()
                try:
                    engine.route((a[1], a[0]), (b[1], b[0]), profile=profile, night=True)
                except ValueError:
                    pass
                alone.append((time.perf_counter() - t0) * 1000)
                params.append({"from": f"{a[0]},{a[1]}", "to": f"{b[0]},{b[1]}", "profile": profile})
            http, _errors = time_http(server.url, "/api/v1/routes", params)
            alone, http = percentiles(alone), percentiles(http)
            print(f"routes {profile:8s} engine alone: {fmt_ms(alone)}")
            print(f"routes {profile:8s} GET /routes : {fmt_ms(http)}  (HTTP+JSON overhead at p50 "
                  f"{http['p50'] - alone['p50']:.1f} ms)")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--synthetic", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--route-pairs", type=int, default=300)
    args = ap.parse_args()
    app = prepare_app()
    t0 = time.time()
    total = add_synthetic_cameras(args.synthetic)
    print(f"synthetic cameras: {total} (+ Gwanak's 4,552 positions), loaded in {time.time() - t0:.1f} s")
    server = Gunicorn("wsgi:app", server_env("bench-geo"), threads=16)
    try:
        bench_facilities(server, args.queries)
        bench_routes(app, server, args.route_pairs)
        print(f"api process RSS: {rss_mib(server.worker_pid()):.0f} MiB")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
