"""The operator console page and the front-end packages it (and /docs) load from npm."""
import os

from flask import Blueprint, Flask, abort, redirect, send_from_directory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
# Only these npm package folders are served, each under a short public name.
VENDOR = {
    "leaflet": "node_modules/leaflet/dist",
    "socket.io": "node_modules/socket.io-client/dist",
    "swagger-ui": "node_modules/swagger-ui-dist",
}

bp = Blueprint("console", __name__)


@bp.get("/console")
def console_root():
    return redirect("/console/", code=308)


@bp.get("/console/")
@bp.get("/console/<path:path>")
def console_page(path="index.html"):
    """Serve the console's own files."""
    return send_from_directory(STATIC, path, max_age=0)


@bp.get("/vendor/<package>/<path:path>")
def vendor(package, path):
    """Serve a file of an allowed npm package installed by the set-up."""
    folder = VENDOR.get(package)
    if folder is None:
        abort(404)
    return send_from_directory(os.path.join(ROOT, folder), path, max_age=3600)


def init_app(app: Flask):
    app.register_blueprint(bp)
