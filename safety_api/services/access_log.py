"""The location access log: who read whose position, when and why (Korean location law asks for it)."""
from sqlalchemy import select

from safety_api.models import LocationAccess


def record(session, *, viewer_id, subject_user_id, subject_kind: str, subject_id, purpose: str):
    """Add one access row inside the caller's transaction; reading one's own position is not logged.
    Purposes so far: walk.read, walk.watch, incident.read (docs/monitoring.md says what each covers)."""
    if str(viewer_id) == str(subject_user_id):
        return None
    row = LocationAccess(viewer_id=viewer_id, subject_user_id=subject_user_id, subject_kind=subject_kind,
                         subject_id=subject_id, purpose=purpose)
    session.add(row)
    return row


def of_subject(session, *, subject_user_id, limit: int = 500) -> list:
    """A person's own record of who looked at their position, newest first."""
    return list(session.scalars(select(LocationAccess).where(LocationAccess.subject_user_id == subject_user_id)
                                .order_by(LocationAccess.at.desc(), LocationAccess.id.desc()).limit(limit)))
