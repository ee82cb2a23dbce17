"""Seoul's 자치구 and 행정동 with their boundaries."""
from geoalchemy2 import Geometry

from safety_api.extensions import db


class District(db.Model):
    __tablename__ = "districts"

    code = db.Column(db.String(5), primary_key=True)  # SIG_CD, e.g. 11620 = 관악구
    name = db.Column(db.Text, nullable=False)
    name_en = db.Column(db.Text, nullable=False)
    served = db.Column(db.Boolean, nullable=False, server_default="true")
    geom = db.Column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=True), nullable=False)


class Dong(db.Model):
    __tablename__ = "dongs"

    code = db.Column(db.String(10), primary_key=True)  # 행정기관코드 (adm_cd2)
    name = db.Column(db.Text, nullable=False)
    district_code = db.Column(db.String(5), db.ForeignKey("districts.code"), nullable=False, index=True)
    geom = db.Column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=True), nullable=False)
