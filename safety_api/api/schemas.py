"""Request and response schemas shared by the blueprints; they validate and they document."""
import re
from collections.abc import Mapping
from urllib.parse import quote

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from safety_api.errors import ProblemSchema  # noqa: F401  (re-exported: the schemas of the API live here)

PHONE_RE = re.compile(r"^01[016789][0-9]{7,8}$")  # ASCII digits: \d would also take other scripts' digits


class StrictSchema(Schema):
    class Meta:
        ordered = True

    @pre_load
    def refuse_unstorable_text(self, data, **_kwargs):
        """Name the fields holding text that PostgreSQL cannot store and argon2 cannot hash: a NUL character, or a
        lone UTF-16 surrogate (valid JSON, "\\ud800", but no UTF-8 encodes it). Nested values are searched too."""
        if isinstance(data, Mapping):
            bad = {key: ["Must not contain NUL characters or unpaired surrogates."]
                   for key in data if _unstorable(data.get(key))}
            if bad:
                raise ValidationError(bad)
        return data


def _unstorable(value, depth: int = 0) -> bool:
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if depth > 8:  # deeper than any body of ours: the fields' own validation refuses it
        return False
    if isinstance(value, Mapping):
        return any(_unstorable(k, depth + 1) or _unstorable(v, depth + 1) for k, v in value.items())
    return isinstance(value, list) and any(_unstorable(v, depth + 1) for v in value)


class Phone(fields.String):
    """A Korean mobile number, normalised to digits (010-1234-5678 -> 01012345678)."""

    # What the document promises to accept (the parser also takes spaces, and dashes anywhere).
    PATTERN = r"^(\+82|0)1[016789]-?[0-9]{3,4}-?[0-9]{4}$"

    def __init__(self, **kwargs):
        kwargs["metadata"] = {"pattern": self.PATTERN, "example": "010-1234-5678", **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs)
        digits = re.sub(r"[\s-]", "", raw)
        if digits.startswith("+82"):
            digits = "0" + digits[3:]
        if not PHONE_RE.match(digits):
            raise ValidationError("Not a Korean mobile number (e.g. 010-1234-5678).")
        return digits


def Latitude(**kw):
    return fields.Float(validate=validate.Range(-90, 90), allow_nan=False, **kw)


def Longitude(**kw):
    return fields.Float(validate=validate.Range(-180, 180), allow_nan=False, **kw)


def check_lat_lon_together(data: dict):
    """Refuse a point given by one coordinate (absent and null alike): it is no point, and leaving it out
    without a word would answer for another place than the one the client meant."""
    if (data.get("lat") is None) != (data.get("lon") is None):
        raise ValidationError("Give lat and lon together, or neither.",
                              "lon" if data.get("lat") is not None else "lat")


class PointSchema(StrictSchema):
    lat = Latitude(required=True)
    lon = Longitude(required=True)


class LatLonQuery(StrictSchema):
    lat = Latitude(required=True)
    lon = Longitude(required=True)


Password = lambda **kw: fields.String(validate=validate.Length(8, 128), **kw)  # noqa: E731
class Text(fields.String):
    """Free text that a person reads later (a name, the reason for a suspension): trimmed, never blank."""

    def __init__(self, max_length: int, **kwargs):
        super().__init__(validate=validate.Length(1, max_length), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


Name = lambda **kw: Text(80, **kw)  # noqa: E731
Reason = lambda **kw: Text(500, **kw)  # noqa: E731
District = lambda **kw: fields.String(validate=validate.Regexp(r"^\d{5}$"), **kw)  # noqa: E731


class UserSchema(StrictSchema):
    id = fields.String()
    phone = fields.String()
    name = fields.String()
    role = fields.String()
    district = fields.String(attribute="district_code", allow_none=True)


class UserEnvelope(StrictSchema):
    user = fields.Nested(UserSchema)


def links(status: int, pointer: str, param: str, *operations: str) -> dict:
    """`blp.doc` arguments declaring OpenAPI links from an answer's id to the operations that take it.

    `pointer` is a JSON pointer into the answer ("/incident/id"), each operation "METHOD /path/{param}". Clients
    read them as "what next"; schemathesis follows them in its stateful runs.
    """
    found = {}
    for operation in operations:
        method, path = operation.split(" ", 1)
        name = method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path.removeprefix("/api/v1")).rstrip("_")
        pointer_path = quote(path.replace("~", "~0").replace("/", "~1"), safe="~")  # a URI fragment: {} encoded
        found[name] = {"operationRef": f"#/paths/{pointer_path}/{method.lower()}",
                       "parameters": {param: f"$response.body#{pointer}"}}
    return {"responses": {status: {"links": found}}}
