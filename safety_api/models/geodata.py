"""Safety facilities (points on geography) and the street network with its safety attributes."""
from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects.postgresql import JSONB

from safety_api.extensions import db

FACILITY_KINDS = ("cctv", "bell", "police", "safe_house", "parcel_box", "streetlight")


class Facility(db.Model):
    """A camera position, emergency bell, police box, safe house, parcel box or streetlight."""

    __tablename__ = "facilities"
    __table_args__ = (
        # A re-import updates in place by the source's own id.
        db.UniqueConstraint("kind", "source_id", name="uq_facilities_kind_source"),
        db.CheckConstraint(f"kind IN {FACILITY_KINDS}", name="kind"),
    )

    id = db.Column(db.BigInteger, primary_key=True)
    kind = db.Column(db.String(16), nullable=False)
    source_id = db.Column(db.Text, nullable=False)
    name = db.Column(db.Text, nullable=False, server_default="")
    camera_count = db.Column(db.Integer, nullable=False, server_default="1")
    attributes = db.Column(JSONB, nullable=False, server_default="{}")
    # geography: distances and KNN in metres (KNN on 4326 geometry would rank by degrees).
    geom = db.Column(Geography("POINT", srid=4326, spatial_index=True), nullable=False)
    updated_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


class StreetEdge(db.Model):
    """A walkable street piece between two junctions, with safety attributes from spatial joins."""

    __tablename__ = "street_edges"

    id = db.Column(db.BigInteger, primary_key=True)
    source = db.Column(db.BigInteger, nullable=False, index=True)  # OSM node id of the first vertex
    target = db.Column(db.BigInteger, nullable=False, index=True)
    osm_way_id = db.Column(db.BigInteger, nullable=False)
    highway = db.Column(db.Text, nullable=False)
    name = db.Column(db.Text)
    length_m = db.Column(db.Float, nullable=False)
    geom = db.Column(Geometry("LINESTRING", srid=4326, spatial_index=True), nullable=False)
    covered_m = db.Column(db.Float, nullable=False, server_default="0")
    cctv_weight = db.Column(db.Float, nullable=False, server_default="0")
    bell_count = db.Column(db.Integer, nullable=False, server_default="0")
    light_count = db.Column(db.Integer, nullable=False, server_default="0")
    safe_house_near = db.Column(db.Boolean, nullable=False, server_default="false")


class DataVersion(db.Model):
    """Tells each api process when a dataset changed, so it reloads its in-memory copy."""

    __tablename__ = "data_versions"

    name = db.Column(db.String(32), primary_key=True)
    version = db.Column(db.Text, nullable=False)
    updated_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
