"""`load-demo --only-missing`, which docker-compose runs at every start: it must never overwrite what an
operator imported or edited after the first start."""
from sqlalchemy import select

from safety_api import cli
from safety_api.models.escort import MeetingPoint
from tests.conftest import restore_meeting_points


def renamed_stop(db) -> MeetingPoint:
    point = db.session.scalars(select(MeetingPoint).where(MeetingPoint.source_id.is_not(None))
                               .order_by(MeetingPoint.source_id).limit(1)).one()
    point.name = "관리자가 고친 이름"
    db.session.commit()
    return point


def name_of(db, point_id) -> str:
    db.session.expire_all()
    return db.session.get(MeetingPoint, point_id).name


def test_only_missing_keeps_what_an_admin_edited_where_a_full_load_puts_the_demo_back(app, db):
    """Before, compose ran the full load-demo at every start: a restart put back the demo's meeting point names
    an admin had corrected, and replaced an imported street network with Gwanak's."""
    point = renamed_stop(db)
    try:
        result = app.test_cli_runner().invoke(args=["load-demo", "--only-missing"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == ["districts: already loaded, kept", "Gwanak geodata: already loaded, kept",
                                              "meeting points: already loaded, kept"]
        assert name_of(db, point.id) == "관리자가 고친 이름"
        cli.load_meeting_points(lambda _line: None)  # the part as a full load-demo runs it
        assert name_of(db, point.id) != "관리자가 고친 이름"  # what --only-missing spares the operator
    finally:
        db.session.rollback()
        restore_meeting_points(db)


def test_only_missing_loads_a_part_whose_tables_are_empty(app, db, monkeypatch):
    loaded = []
    monkeypatch.setattr(cli, "DEMO_PARTS", [
        ("present", ("districts",), lambda echo: loaded.append("present")),
        ("absent", ("districts", "incidents"), lambda echo: loaded.append("absent with one table filled")),
        ("new", ("incidents",), lambda echo: loaded.append("new"))])  # no incident between tests
    result = app.test_cli_runner().invoke(args=["load-demo", "--only-missing"], catch_exceptions=False)
    assert loaded == ["new"] and "present: already loaded, kept" in result.output
