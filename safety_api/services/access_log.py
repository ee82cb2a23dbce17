"""The location access log: who read whose position, when and why (Korean location law asks for it)."""
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from safety_api.models import LocationAccess

# A list the console refreshes every few seconds is one read an hour per incident, not a row per refresh.
RECENT_READ = "1 hour"
_RECORD_RECENT = text(f"""
    INSERT INTO location_access_log (viewer_id, subject_user_id, subject_kind, subject_id, purpose)
    SELECT :viewer, s.user_id, CAST(:kind AS varchar), s.subject_id, CAST(:purpose AS varchar)
    FROM unnest(:user_ids, :subject_ids) AS s(user_id, subject_id)
    WHERE s.user_id <> :viewer AND NOT EXISTS (
        SELECT 1 FROM location_access_log l
        WHERE l.subject_user_id = s.user_id AND l.at > now() - interval '{RECENT_READ}'
          AND l.viewer_id = :viewer AND l.subject_id = s.subject_id AND l.purpose = CAST(:purpose AS varchar))
""").bindparams(bindparam("viewer", type_=UUID(as_uuid=True)),
                bindparam("user_ids", type_=ARRAY(UUID(as_uuid=True))),
                bindparam("subject_ids", type_=ARRAY(UUID(as_uuid=True))))


def record(session, *, viewer_id, subject_user_id, subject_kind: str, subject_id, purpose: str):
    """Add one access row inside the caller's transaction; reading one's own position is not logged.
    Purposes so far: walk.started, walk.read, walk.watch, incident.read, escort.read, escort.offer, escort.stream
    (docs/monitoring.md and docs/escort.md say what each covers)."""
    if str(viewer_id) == str(subject_user_id):
        return None
    row = LocationAccess(viewer_id=viewer_id, subject_user_id=subject_user_id, subject_kind=subject_kind,
                         subject_id=subject_id, purpose=purpose)
    session.add(row)
    return row


def record_recent(session, *, viewer_id, subject_kind: str, subjects: list, purpose: str):
    """Log a read of several people's positions at once, (user id, subject id) each, skipping those this
    viewer read for the same purpose within the last hour. Purposes: incident.list, incident.act, escort.list,
    escort.offer, escort.act."""
    if subjects:
        session.execute(_RECORD_RECENT, {"viewer": viewer_id, "kind": subject_kind, "purpose": purpose,
                                         "user_ids": [u for u, _ in subjects], "subject_ids": [i for _, i in subjects]})


def of_subject(session, *, subject_user_id, limit: int = 500) -> list:
    """A person's own record of who looked at their position, newest first."""
    return list(session.scalars(select(LocationAccess).where(LocationAccess.subject_user_id == subject_user_id)
                                .order_by(LocationAccess.at.desc(), LocationAccess.id.desc()).limit(limit)))
