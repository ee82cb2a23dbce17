"""Draw the safe and the shortest route between two real Gwanak points over cameras and bells, to a PNG.

Usage: .venv/bin/python scripts/draw_routes.py [--from LAT,LON] [--to LAT,LON] [--out docs/img/routes.png]
Needs the demo data loaded (make run, or flask --app wsgi load-demo).
"""
import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sqlalchemy import text  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from safety_api import create_app  # noqa: E402
from safety_api.api.geodata import route_settings  # noqa: E402
from safety_api.extensions import db  # noqa: E402
from safety_api.services import routes  # noqa: E402


def parse(point: str):
    lat, lon = (float(v) for v in point.split(","))
    return lat, lon


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--from", dest="origin", default="37.4722,126.9160")
    ap.add_argument("--to", dest="destination", default="37.4634,126.9262")
    ap.add_argument("--out", default="docs/img/routes.png")
    args = ap.parse_args()
    app = create_app({"LOG_JSON": False})
    with app.app_context():
        found = {p: routes.plan_route(db.session, settings=route_settings(app.config), origin=parse(args.origin),
                                      destination=parse(args.destination), profile=p, night=True)
                 for p in ("shortest", "safe")}
        draw(found, args.out)
    for profile, route in found.items():
        print(f"{profile}: {route.distance_m:.0f} m, covered {route.covered_ratio:.0%}, "
              f"cameras {route.cctv_count:.0f}, bells {route.bell_count}")
    print(f"wrote {args.out}")


def draw(found, out):
    xs = [c[0] for r in found.values() for c in r.coords]
    ys = [c[1] for r in found.values() for c in r.coords]
    pad = 0.004
    box = {"x0": min(xs) - pad, "x1": max(xs) + pad, "y0": min(ys) - pad, "y1": max(ys) + pad}
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    for (geom,) in db.session.execute(text(
            "SELECT ST_AsText(geom) FROM street_edges WHERE geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"), box):
        pts = [tuple(map(float, p.split())) for p in geom[len("LINESTRING("):-1].split(",")]
        ax.plot(*zip(*pts), color="#cfd4da", linewidth=0.8, zorder=1)
    layers = {"cctv": ("#2b8a3e", 6, "CCTV"), "bell": ("#e8590c", 14, "Emergency bells")}
    for kind, (colour, size, label) in layers.items():
        pts = db.session.execute(text(
            "SELECT ST_X(geom::geometry), ST_Y(geom::geometry) FROM facilities WHERE kind = :k AND "
            "geom::geometry && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"), {"k": kind, **box}).all()
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=size, c=colour, alpha=0.6, label=label, zorder=2)
    styles = {"shortest": ("#868e96", "--"), "safe": ("#1c7ed6", "-")}
    for profile, route in found.items():
        colour, dash = styles[profile]
        ax.plot(*zip(*route.coords), color=colour, linestyle=dash, linewidth=3, zorder=3,
                label=f"{profile}: {route.distance_m:.0f} m, {route.covered_ratio:.0%} within 30 m of a camera")
    ax.set_xlim(box["x0"], box["x1"])
    ax.set_ylim(box["y0"], box["y1"])
    ax.set_aspect(1 / 0.7934)  # cos(37.47°): metres look like metres
    ax.set_title("Safe vs shortest walking route, Gwanak-gu (night weighting)")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    ax.set_xticks([])
    ax.set_yticks([])
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, bbox_inches="tight")


if __name__ == "__main__":
    main()
