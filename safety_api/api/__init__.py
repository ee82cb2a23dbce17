"""REST blueprints, one per resource, registered on the flask-smorest Api."""
from safety_api.api import (
    admin,
    auth,
    devices,
    districts,
    escort,
    geodata,
    guardians,
    incidents,
    layers,
    me,
    ops,
    protection,
    walks,
)

BLUEPRINTS = [auth.blp, me.blp, admin.blp, devices.blp, guardians.blp, districts.blp, geodata.blp,
              incidents.blp, protection.blp, escort.blp, ops.blp, layers.blp, walks.blp]


def register(openapi):
    """Register every blueprint and the shared OpenAPI components."""
    openapi.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    openapi.spec.components.security_scheme(
        "deviceKey", {"type": "apiKey", "in": "header", "name": "X-Device-Key"})
    for blp in BLUEPRINTS:
        openapi.register_blueprint(blp)
