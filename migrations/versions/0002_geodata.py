"""Safety geodata: facilities, street network, data versions.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "facilities",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("camera_count", sa.Integer(), server_default="1", nullable=False),
        sa.Column("attributes", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.Column("geom", Geography("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.UniqueConstraint("kind", "source_id", name="uq_facilities_kind_source"),
        sa.CheckConstraint(
            "kind IN ('cctv', 'bell', 'police', 'safe_house', 'parcel_box', 'streetlight')",
            name=op.f("ck_facilities_kind")),
    )
    op.create_index("idx_facilities_geom", "facilities", ["geom"], postgresql_using="gist")
    op.create_table(
        "street_edges",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("source", sa.BigInteger(), nullable=False),
        sa.Column("target", sa.BigInteger(), nullable=False),
        sa.Column("osm_way_id", sa.BigInteger(), nullable=False),
        sa.Column("highway", sa.Text(), nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("length_m", sa.Float(), nullable=False),
        sa.Column("geom", Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=False),
        sa.Column("covered_m", sa.Float(), server_default="0", nullable=False),
        sa.Column("cctv_weight", sa.Float(), server_default="0", nullable=False),
        sa.Column("bell_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("light_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("safe_house_near", sa.Boolean(), server_default="false", nullable=False),
    )
    op.create_index("idx_street_edges_geom", "street_edges", ["geom"], postgresql_using="gist")
    op.create_index("ix_street_edges_source", "street_edges", ["source"])
    op.create_index("ix_street_edges_target", "street_edges", ["target"])
    op.create_table(
        "data_versions",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )


def downgrade():
    op.drop_table("data_versions")
    op.drop_table("street_edges")
    op.drop_table("facilities")
