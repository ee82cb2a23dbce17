"""Readers for the Korean public-data safety-facility files, as published, into plain records."""
import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("cctv", "bell", "police", "safe_house", "parcel_box", "streetlight")

# Seoul's extent with a margin; anything outside is a broken row (0.0, projected metres, swapped axes).
SEOUL_LAT = (37.4, 37.72)
SEOUL_LON = (126.7, 127.3)

# Column names: first as in data/, then as in the original public standard formats.
LAT = ("latitude", "위도", "y", "WGS84위도", "lat")
LON = ("longitude", "경도", "x", "WGS84경도", "lon")
ROAD_ADDRESS = ("road_addr", "소재지도로명주소", "road_addr_2", "안심 주소", "주소", "Address")
LOT_ADDRESS = ("소재지지번주소",)

# "[철거] DC071 2-4S 신림동 1433-43": status note, site id, camera code, location text. The note usually leads
# ("[A/S]DA018 5-5S ..." without a space too), twice it follows the code ("FD003 C-IS [화면가림] 미성동 ...").
_CAMERA_NOTE = re.compile(r"\[([^\]]*)\]")
_CAMERA_INFO = re.compile(r"^([A-Z0-9]+)\s+(\S+)\s+(.+)$")


@dataclass(frozen=True)
class FacilityRecord:
    kind: str
    source_id: str
    name: str
    lon: float
    lat: float
    camera_count: int = 1
    attributes: dict = field(default_factory=dict, hash=False)  # dicts are unhashable


@dataclass(frozen=True)
class RowError:
    row: int
    reason: str


@dataclass
class ImportResult:
    records: list = field(default_factory=list)
    errors: list = field(default_factory=list)


class _BadRow(Exception):
    """A row that cannot become a record; the message is the reason shown to the user."""


class _Row:
    """One data row: values by header name, looked up through column aliases."""

    def __init__(self, number, values):
        self.number = number
        self.values = values

    def get(self, *names):
        """Return the first non-blank value among the named columns, whitespace collapsed."""
        for name in names:
            value = " ".join((self.values.get(name) or "").split())
            if value:
                return value
        return ""

    def require(self, *names):
        """Return the first non-blank value among the named columns, or reject the row."""
        value = self.get(*names)
        if not value:
            raise _BadRow(f"missing {names[0]}")
        return value


def read_facilities(kind, path):
    """Read one public-data facility file of the given kind into records and row errors."""
    if kind not in KINDS:
        raise ValueError(f"unknown facility kind {kind!r}; expected one of {', '.join(KINDS)}")
    rows = _read_rows(path)
    if kind == "cctv":
        return _read_cctv(rows)
    build = _BUILDERS[kind]
    result, first_row = ImportResult(), {}
    for row in rows:
        try:
            record = build(row)
            if record.source_id in first_row:
                raise _BadRow(f"duplicate id {record.source_id} (first on row {first_row[record.source_id]})")
        except _BadRow as exc:
            result.errors.append(RowError(row.number, str(exc)))
            continue
        first_row[record.source_id] = row.number
        result.records.append(record)
    return result


def _read_rows(path):
    """Decode a CSV file (UTF-8 with or without BOM, else CP949) into numbered rows."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp949")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = _unique_names(next(reader, []))
    # Row numbers as a spreadsheet shows them: the header is row 1.
    return [_Row(number, dict(zip(header, cells))) for number, cells in enumerate(reader, start=2) if any(cells)]


def _unique_names(header):
    """Strip header names and suffix repeats (road_addr, road_addr_2) so no column is lost."""
    seen, names = {}, []
    for raw in header:
        name = raw.strip()
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


def _position(row):
    """Return (lon, lat) of a row, or reject it if missing, unparsable or outside Seoul."""
    lat, lon = _number(row, LAT, "latitude"), _number(row, LON, "longitude")
    if _in_seoul(lon, lat):
        return lon, lat
    if _in_seoul(lat, lon):
        raise _BadRow(f"latitude and longitude look swapped (lat {lat}, lon {lon})")
    raise _BadRow(f"coordinates outside Seoul (lat {lat}, lon {lon})")


def _in_seoul(lon, lat):
    return SEOUL_LAT[0] <= lat <= SEOUL_LAT[1] and SEOUL_LON[0] <= lon <= SEOUL_LON[1]


def _number(row, names, label):
    text = row.get(*names)
    if not text:
        raise _BadRow(f"missing {label}")
    try:
        value = float(text)
    except ValueError:
        raise _BadRow(f"{label} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise _BadRow(f"{label} is not a finite number: {text!r}")
    return value


def _flag(text):
    """Map the standard Y/N columns to booleans; blank stays unknown."""
    return {"Y": True, "N": False}.get(text.upper())


def _year(text):
    return int(text) if text.isdigit() else None


def _compact(attributes):
    """Drop blank attributes so consumers never see empty strings."""
    return {key: value for key, value in attributes.items() if value not in ("", None, [])}


def _record(kind, source_id, name, row, camera_count=1, **attributes):
    lon, lat = _position(row)
    return FacilityRecord(kind, source_id, name, lon, lat, camera_count, _compact(attributes))


def _bell(row):
    """Build a safety emergency bell (안전비상벨) record."""
    bell_id = row.require("안전비상벨관리번호")
    return _record(
        "bell", bell_id, row.get("설치위치") or bell_id, row,
        address=row.get(*ROAD_ADDRESS) or row.get(*LOT_ADDRESS),
        install_type=row.get("설치장소유형"),
        purpose=row.get("설치목적"),
        link_method=row.get("연계방식"),
        police_linked=_flag(row.get("경찰연계유무")),
        security_company_linked=_flag(row.get("경비업체연계유무")),
        management_office_linked=_flag(row.get("관리사무소연계유무")),
        functions=[part.strip() for part in re.split(r"[+,/]", row.get("부가기능")) if part.strip()],
        installed_year=_year(row.get("안전비상벨설치연도")),
        last_inspected=row.get("최종점검일자"),
        last_inspection_passed=_flag(row.get("최종점검결과구분")),
        managed_by=row.get("관리기관명"),
        manager_phone=row.get("관리기관전화번호"),
        data_date=row.get("데이터기준일자"),
    )


def _police(row):
    """Build a police box (지구대 / 파출소) record; the id is its district and name."""
    station_type = row.get("Subtype", "구분")
    name = row.get("관서명") or row.require("Location", "관서명") + station_type
    district = row.get("depth2", "시군구명")
    return _record(
        "police", f"police:{district}:{name}" if district else f"police:{name}", name, row,
        station_type=station_type,
        phone=row.get("Phone", "전화번호"),
        address=row.get(*ROAD_ADDRESS),
        parent_station=row.get("경찰서"),
        district=district,
        admin_dong=row.get("depth3_admin"),
    )


def _safe_house(row):
    """Build a women's safe-house (여성안심지킴이집) record; no id column exists, so name+address is the id."""
    name = row.require("점포명")
    address = row.get(*ROAD_ADDRESS) or row.get(*LOT_ADDRESS)
    return _record(
        "safe_house", f"safe_house:{name}|{address}", name, row,
        phone=row.get("여성안심지킴이집전화번호", "전화번호"),
        address=address,
        police_station=row.get("관할경찰서명"),
        district_code=row.get("시군구코드"),
        designated_year=_year(row.get("지정연도")),
        in_operation=_flag(row.get("운영여부")),
        data_date=row.get("데이터기준일자"),
    )


def _parcel_box(row):
    """Build a safe parcel-box (여성안심택배함) record; name+address is the id."""
    name = row.require("name", "안심 명")
    address = row.get(*ROAD_ADDRESS)
    return _record(
        "parcel_box", f"parcel_box:{name}|{address}", name, row,
        address=address,
        district=row.get("depth2", "자치구"),
        admin_dong=row.get("depth3_admin"),
    )


def _streetlight(row):
    """Build a streetlight (가로등) record; its 관리번호 reads as site-number."""
    light_id = row.require("관리번호")
    site, _, _ = light_id.rpartition("-")
    return _record("streetlight", light_id, light_id, row, site=site)


_BUILDERS = {
    "bell": _bell,
    "police": _police,
    "safe_house": _safe_house,
    "parcel_box": _parcel_box,
    "streetlight": _streetlight,
}


def in_service(camera):
    """Whether a camera (as ``_camera`` reads it) is working: any status note says it is not. The notes in the
    file: 철거 removed; A/S under repair; 차량사고, 사고 damaged; 화면가림 view blocked; 리모델링, 재건축, 재개발,
    녹지과공사 down for building works; 이전설치 being moved; 성능개선 being upgraded; 영역재설정 being re-aimed;
    줌인반대 a zoom fault. None is a note of a camera in normal service, and a camera wrongly taken for working
    would draw routes and operators to it, so every note counts (43 of 5,366 Gwanak cameras)."""
    return "note" not in camera


def _read_cctv(rows):
    """Group CCTV rows (one camera each) into one record per distinct published position; ``working_cameras``
    counts those in service (route safety and the SOS's nearest cameras count only them)."""
    result = ImportResult()
    for (lat, lon), site in _group_cameras(rows, result.errors).items():
        cameras = site["cameras"]
        source_id = f"cctv:{_decimal(lat)},{_decimal(lon)}"
        attributes = _compact({"cameras": cameras, "district": site["district"], "working_cameras": site["working"]})
        result.records.append(
            FacilityRecord("cctv", source_id, cameras[0]["label"] or source_id, lon, lat, site["count"], attributes)
        )
    return result


def _group_cameras(rows, errors):
    """Collect cameras by position, in file order; bad rows go to errors."""
    sites = {}
    for row in rows:
        try:
            lon, lat = _position(row)
            count = _camera_count(row)
        except _BadRow as exc:
            errors.append(RowError(row.number, str(exc)))
            continue
        site = sites.setdefault((round(lat, 7), round(lon, 7)), {
            "cameras": [], "count": 0, "working": 0, "district": row.get("district", "자치구")})
        camera = _camera(row.get("info", "안심 주소"))
        site["cameras"].append(camera)
        site["count"] += count
        site["working"] += count if in_service(camera) else 0  # a row's note is about all of its cameras
    return sites


def _camera_count(row):
    text = row.get("count", "CCTV 수량", "카메라대수")
    if not text:
        return 1
    try:
        count = float(text)
    except ValueError:
        raise _BadRow(f"camera count is not a number: {text!r}") from None
    if not count.is_integer() or count < 1:
        raise _BadRow(f"camera count must be a positive whole number: {text!r}")
    return int(count)


def _camera(info):
    """Split an 안심이 info label into camera id, location label and status note (e.g. 철거)."""
    note = "; ".join(part.strip() for part in _CAMERA_NOTE.findall(info) if part.strip())
    rest = " ".join(_CAMERA_NOTE.sub(" ", info).split())
    match = _CAMERA_INFO.match(rest)
    camera = {"id": f"{match[1]} {match[2]}", "label": match[3]} if match else {"id": None, "label": rest}
    if note:
        camera["note"] = note
    return camera


def _decimal(value):
    """Format a coordinate without trailing zeros, as the source publishes it (37.47, 126.9234)."""
    return f"{value:.7f}".rstrip("0").rstrip(".")
