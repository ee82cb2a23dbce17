"""Districts (자치구) of the served area."""
from flask_smorest import Blueprint
from marshmallow import fields

from safety_api.api.schemas import LatLonQuery, StrictSchema
from safety_api.extensions import db
from safety_api.services import districts

blp = Blueprint("districts", __name__, url_prefix="/api/v1/districts", description="Districts")


class DistrictOut(StrictSchema):
    code = fields.String()
    name = fields.String()
    name_en = fields.String()
    dong = fields.String(allow_none=True)


@blp.get("/at")
@blp.arguments(LatLonQuery(), location="query")
@blp.response(200, DistrictOut)
@blp.alt_response(404, response="NOT_FOUND")
def at(query):
    """The district (and 행정동) containing a point; 404 outside the served area."""
    district = districts.require_district_at(db.session, **query)
    dong = districts.dong_at(db.session, **query, district_code=district.code)
    return {"code": district.code, "name": district.name, "name_en": district.name_en,
            "dong": dong.name if dong else None}
