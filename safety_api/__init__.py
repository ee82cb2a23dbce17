"""The Ansimi-style citizen-safety backend: Flask app factory."""
from flask import Flask


def create_app(config: dict | None = None) -> Flask:
    """Build the app: config, extensions, blueprints, realtime namespaces, CLI."""
    from safety_api import (
        api,
        cli,
        console,
        errors,
        observability,
        proxies,
        ratelimit,
        realtime,
        security,
    )
    from safety_api.config import Config
    from safety_api.extensions import api as openapi
    from safety_api.extensions import db, jwt, migrate, redis_store
    from safety_api.services.escort_rules import policy_from_config

    app = Flask(__name__)
    app.json.ensure_ascii = False  # Korean names stay readable in every answer
    app.config.from_object(Config())
    app.config.update(config or {})
    # Parsed once, before anything is bound: an unreadable value stops the start, naming itself, instead of
    # making every booking a 500.
    app.config["ESCORT_POLICY"] = policy_from_config(app.config)

    observability.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=app.config.get("MIGRATIONS_DIR", _migrations_dir()))
    redis_store.init_app(app)
    ratelimit.init_app(app)
    jwt.init_app(app)
    security.init_app(app)
    openapi.init_app(app)
    api.register(openapi)
    console.init_app(app)
    realtime.init_app(app)
    proxies.init_app(app)  # after realtime: wraps the Socket.IO middleware too
    cli.init_app(app)
    errors.init_app(app)  # last: replaces the JSON error shapes the extensions installed
    return app


def _migrations_dir() -> str:
    import os
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")
