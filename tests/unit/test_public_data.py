from collections import Counter
from pathlib import Path

import pytest

from geo.public_data import FacilityRecord, RowError, read_facilities

DATA = Path(__file__).resolve().parents[2] / "data"
FILES = {
    "cctv": DATA / "gwanak_ansimi_cctv.csv",
    "bell": DATA / "gwanak_emergency_bells.csv",
    "police": DATA / "gwanak_police_stations.csv",
    "safe_house": DATA / "gwanak_women_safe_houses.csv",
    "parcel_box": DATA / "gwanak_safe_parcel_boxes.csv",
    "streetlight": DATA / "seoul_streetlights.csv",
}


def read(kind):
    return read_facilities(kind, FILES[kind])


def by_id(result):
    return {record.source_id: record for record in result.records}


def write_csv(tmp_path, text, encoding="utf-8"):
    path = tmp_path / "facilities.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_cctv_groups_5366_cameras_into_4552_positions():
    result = read("cctv")
    assert result.errors == []
    assert len(result.records) == 4552
    assert sum(record.camera_count for record in result.records) == 5366
    assert len(by_id(result)) == 4552
    assert all(record.camera_count == len(record.attributes["cameras"]) for record in result.records)


def test_cctv_keeps_every_camera_id_once():
    cameras = [camera for record in read("cctv").records for camera in record.attributes["cameras"]]
    assert len({camera["id"] for camera in cameras}) == 5366


def test_cctv_position_id_is_the_published_coordinates():
    records = by_id(read("cctv"))
    pole = records["cctv:37.4845,126.9154"]
    assert pole.camera_count == 9
    assert (pole.lat, pole.lon) == (37.4845, 126.9154)
    # Trailing zeros are dropped in the source, and in the id too.
    assert records["cctv:37.47,126.92"].attributes["cameras"][0]["id"] == "CE013 1-4R"


def test_cctv_first_camera_labels_the_position():
    record = by_id(read("cctv"))["cctv:37.4682,126.9265"]
    assert record.name == "신림6배수지공원#01(삼성동 336-8)"
    assert record.attributes["district"] == "관악구"
    assert record.attributes["cameras"] == [{"id": "A2021 1-1RZ", "label": "신림6배수지공원#01(삼성동 336-8)"}]


def test_cctv_status_notes_are_kept_per_camera():
    cameras = [camera for record in read("cctv").records for camera in record.attributes["cameras"]]
    notes = Counter(camera.get("note") for camera in cameras)
    assert notes["철거"] == 10
    assert notes["A/S"] == 10
    assert sum(count for note, count in notes.items() if note) == 43


def test_a_note_within_the_label_is_read_as_a_note_too():
    """Two cameras carry their note after the camera code; it is no part of the place's name."""
    records = by_id(read("cctv"))
    assert records["cctv:37.4775,126.9196"].attributes["cameras"] == [
        {"id": "FD003 C-IS", "label": "미성동 배드민턴장 (미성동 산 191-15)", "note": "화면가림"}]
    assert records["cctv:37.4424,126.9653"].attributes["cameras"][0]["note"] == "줌인반대"


def test_only_cameras_without_a_status_note_are_working():
    records = by_id(read("cctv"))
    removed = records["cctv:37.4689,126.924"]  # [철거] DG024 1-2S and 2-2S, 난곡동 646-191
    assert (removed.camera_count, removed.attributes["working_cameras"]) == (2, 0)
    mixed = records["cctv:37.4765,126.9578"]  # CB012 5-5SZ works, CB012 1-5RZ is removed
    assert (mixed.camera_count, mixed.attributes["working_cameras"]) == (2, 1)
    assert sum(r.attributes["working_cameras"] for r in records.values()) == 5366 - 43
    assert records["cctv:37.4845,126.9154"].attributes["working_cameras"] == 9


def test_a_noted_row_of_several_cameras_takes_them_all_out_of_service(tmp_path):
    path = write_csv(tmp_path, "자치구,안심 주소,위도,경도,CCTV 수량\n"
                               "관악구,[A/S] DB065 1-1R 삼성동 391-47,37.47,126.92,3\n"
                               "관악구,DB066 1-1R 삼성동 391-48,37.47,126.92,2\n")
    [record] = read_facilities("cctv", path).records
    assert (record.camera_count, record.attributes["working_cameras"]) == (5, 2)


def test_cctv_reads_the_original_seoul_format_with_camera_counts(tmp_path):
    path = write_csv(tmp_path, "자치구,안심 주소,위도,경도,CCTV 수량,수정 일시\n"
                               "관악구,난곡동 700-57,37.47,126.92,3,2022-12-01\n"
                               "관악구,난곡동 700-58,37.4700,126.9200,2,2022-12-01\n")
    [record] = read_facilities("cctv", path).records
    assert record.source_id == "cctv:37.47,126.92"
    assert record.camera_count == 5


def test_bells_read_all_988_with_english_attributes():
    result = read("bell")
    assert result.errors == []
    assert len(result.records) == 988
    assert Counter(r.attributes["install_type"] for r in result.records) == {
        "기타": 750, "공원": 216, "주차장": 20, "화장실": 2}
    assert all(r.attributes["police_linked"] is True for r in result.records)
    assert sum(1 for r in result.records if "address" not in r.attributes) == 0


def test_bell_record_fields():
    bell = by_id(read("bell"))["A2041"]
    assert bell.name == "서울특별시 관악구 봉천로33가길 19-10 (한뼘동래공원)"
    assert (bell.lat, bell.lon) == (37.48472219, 126.9448623)
    assert bell.camera_count == 1
    assert bell.attributes["functions"] == ["CCTV"]
    assert bell.attributes["installed_year"] == 2013
    assert bell.attributes["security_company_linked"] is False


def test_police_boxes_are_six_jigudae_and_three_pachulso():
    result = read("police")
    assert result.errors == []
    names = {r.name for r in result.records}
    assert names == {"당곡지구대", "낙성대지구대", "신림지구대", "관악산지구대", "구암지구대", "신사지구대",
                     "남현파출소", "난우파출소", "미성파출소"}
    assert Counter(r.attributes["station_type"] for r in result.records) == {"지구대": 6, "파출소": 3}
    nanu = by_id(result)["police:관악구:난우파출소"]
    assert nanu.attributes["phone"] == "02-870-0860"
    # The source pads addresses with double spaces; they are collapsed.
    assert nanu.attributes["address"] == "서울특별시 관악구 난곡로64 난우파출소"


def test_safe_houses_read_all_51_with_name_and_address_ids():
    result = read("safe_house")
    assert result.errors == []
    assert len(by_id(result)) == 51
    house = by_id(result)["safe_house:GS25 신림법원단지|서울특별시 관악구 법원단지길 48"]
    assert house.attributes["phone"] == "02-866-2232"
    assert house.attributes["police_station"] == "관악경찰서"
    assert house.attributes["in_operation"] is True
    # A blank phone is left out rather than stored as "".
    assert "phone" not in by_id(result)["safe_house:CU 관악에스식스점|서울특별시 관악구 양지5길 2"].attributes


def test_parcel_boxes_read_all_16_despite_the_repeated_header():
    result = read("parcel_box")
    assert result.errors == []
    assert len(result.records) == 16
    assert by_id(result)["parcel_box:미성동 자치회관|서울 관악구 난곡로52길 16"].attributes["admin_dong"] == "미성동"


def test_parcel_box_address_falls_back_to_the_second_road_addr(tmp_path):
    path = write_csv(tmp_path, "name,road_addr,lot_addr,road_addr,x,y\n"
                               "미성동 자치회관,,,서울 관악구 난곡로52길 16,126.9162,37.4782\n")
    [record] = read_facilities("parcel_box", path).records
    assert record.attributes["address"] == "서울 관악구 난곡로52길 16"


def test_streetlights_keep_19291_and_report_the_25_broken_rows():
    result = read("streetlight")
    assert len(result.records) == 19291
    assert [error.row for error in result.errors] == list(range(5434, 5459))
    assert result.errors[0] == RowError(5434, "coordinates outside Seoul (lat 0.0, lon 4664046.125)")
    assert by_id(result)["가락지하차도-01"].attributes == {"site": "가락지하차도"}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_cp949_and_bom_copies_read_identically(kind, tmp_path):
    text = FILES[kind].read_text(encoding="utf-8")
    original = read(kind)
    for encoding in ("cp949", "utf-8-sig"):
        assert read_facilities(kind, write_csv(tmp_path, text, encoding)) == original


def test_bad_rows_become_row_errors_and_the_rest_load(tmp_path):
    path = write_csv(tmp_path, "관리번호,위도,경도\n"
                               "ok-01,37.5,127.0\n"
                               ",37.5,127.0\n"
                               "nan-01,NaN,127.0\n"
                               "text-01,북위37,127.0\n"
                               "blank-01,,127.0\n"
                               "swap-01,127.0,37.5\n"
                               "far-01,35.1,129.0\n"
                               "\n"
                               "ok-01,37.6,127.1\n"
                               "ok-02,37.6,127.1\n", encoding="cp949")
    result = read_facilities("streetlight", path)
    assert [r.source_id for r in result.records] == ["ok-01", "ok-02"]
    assert result.errors == [
        RowError(3, "missing 관리번호"),
        RowError(4, "latitude is not a finite number: 'NaN'"),
        RowError(5, "latitude is not a number: '북위37'"),
        RowError(6, "missing latitude"),
        RowError(7, "latitude and longitude look swapped (lat 127.0, lon 37.5)"),
        RowError(8, "coordinates outside Seoul (lat 35.1, lon 129.0)"),
        RowError(10, "duplicate id ok-01 (first on row 2)"),
    ]


def test_bells_read_the_national_standard_column_names(tmp_path):
    path = write_csv(tmp_path, "설치위치,소재지도로명주소,위도,경도,경찰연계유무,부가기능,안전비상벨관리번호\n"
                               "난곡공원,서울특별시 관악구 난곡로 1,37.47,126.92,N,CCTV+스피커,B0001\n")
    [bell] = read_facilities("bell", path).records
    assert bell == FacilityRecord("bell", "B0001", "난곡공원", 126.92, 37.47, 1, {
        "address": "서울특별시 관악구 난곡로 1", "police_linked": False, "functions": ["CCTV", "스피커"]})


def test_cctv_bad_count_is_a_row_error(tmp_path):
    path = write_csv(tmp_path, "info,latitude,longitude,count\nA0001 1-1R 난곡동,37.47,126.92,0\n")
    assert read_facilities("cctv", path).errors == [
        RowError(2, "camera count must be a positive whole number: '0'")]


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown facility kind"):
        read_facilities("toilet", FILES["bell"])
