"""A walk that becomes an SOS: the incident, its audit event and the walk's trail as evidence commit together."""
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from safety_api.clock import utcnow
from safety_api.models import IncidentEvent
from safety_api.services import walks
from tests.factories import auth_header, create_user
from tests.integration.test_walks import HOME_FROM, fix, post_fixes, start


def test_a_crash_after_the_incident_commits_leaves_its_event_and_its_evidence_in_place(client, db, monkeypatch):
    walker = create_user(db.session)
    walk = start(client, walker).json
    now = utcnow()
    trail = [fix(HOME_FROM["lat"], HOME_FROM["lon"], now - timedelta(seconds=s)) for s in (20, 10)]
    assert post_fixes(client, walker, walk["id"], trail).json["accepted"] == 2

    def crash(*_args, **_kwargs):
        raise RuntimeError("the api process died here")
    monkeypatch.setattr(walks, "_escalated_notices", crash)
    with pytest.raises(RuntimeError):
        walks.answer_checkin(db.session, user=walker, walk_id=walk["id"], ok=False, now=utcnow())
    db.session.rollback()
    incident_id = db.session.scalar(text("SELECT id FROM incidents WHERE walk_id = :w"), {"w": walk["id"]})
    kinds = db.session.scalars(select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident_id)
                               .order_by(IncidentEvent.id)).all()
    assert kinds == ["created", "walk_escalated"]
    linked = db.session.scalar(text("SELECT count(*) FROM location_fixes WHERE subject_id = :w "
                                    "AND incident_id = :i"), {"w": walk["id"], "i": incident_id})
    assert linked == 2  # evidence: never purged with the walk's other fixes
    assert client.get(f"/api/v1/walks/{walk['id']}", headers=auth_header(walker)).json["walk"]["status"] == "escalated"
