"""Location fixes from phones: validate, drop duplicates, persist in batches, keep the live position."""
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy.dialects.postgresql import insert

from safety_api.models import LocationFix

MAX_ACCURACY_M = 5000.0
FUTURE_SKEW = timedelta(seconds=30)  # phone clocks drift; beyond this a timestamp is wrong
MAX_AGE = timedelta(hours=24)  # a background batch may be late, not a day late
LIVE_TTL_S = 6 * 3600


@dataclass(frozen=True)
class Fix:
    lat: float
    lon: float
    accuracy_m: float | None
    t: datetime

    def as_dict(self) -> dict:
        return {"lat": self.lat, "lon": self.lon, "accuracy_m": self.accuracy_m, "t": self.t.isoformat()}


def validate(raw_fixes, *, now: datetime) -> tuple[list[Fix], list[dict]]:
    """Split raw fix dicts into valid Fixes (ordered by time, duplicates dropped) and rejections with reasons."""
    valid, rejected, seen = [], [], set()
    for index, raw in enumerate(raw_fixes):
        fix, reason = _parse(raw, now)
        if reason is None and fix.t in seen:
            reason = "duplicate timestamp in batch"
        if reason:
            rejected.append({"index": index, "reason": reason})
            continue
        seen.add(fix.t)
        valid.append(fix)
    return sorted(valid, key=lambda f: f.t), rejected


def _parse(raw, now) -> tuple[Fix | None, str | None]:
    if not isinstance(raw, dict):
        return None, "not an object"
    lat, lon, acc = raw.get("lat"), raw.get("lon"), raw.get("accuracy_m")
    if not _finite(lat) or not -90 <= lat <= 90:
        return None, "lat missing or out of range"
    if not _finite(lon) or not -180 <= lon <= 180:
        return None, "lon missing or out of range"
    if acc is not None and (not _finite(acc) or not 0 <= acc <= MAX_ACCURACY_M):
        return None, "accuracy_m out of range"
    t = _time(raw.get("t"), now)
    if t is None:
        return None, "t missing or not ISO 8601 / epoch seconds"
    if t > now + FUTURE_SKEW:
        return None, "t is in the future"
    if t < now - MAX_AGE:
        return None, "t is too old"
    return Fix(float(lat), float(lon), float(acc) if acc is not None else None, t), None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _time(value, now) -> datetime | None:
    if value is None:
        return now  # a live fix sent without a timestamp is "now"
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return datetime.fromtimestamp(value, timezone.utc)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment.astimezone(timezone.utc) if moment.tzinfo else None
    except (ValueError, OverflowError, OSError):
        return None
    return None


def store(session, *, subject_kind: str, subject_id, user_id, fixes: list[Fix], incident_id=None) -> list[Fix]:
    """Insert fixes in one statement; returns those that were new (a resent fix is a duplicate)."""
    if not fixes:
        return []
    rows = [{"subject_kind": subject_kind, "subject_id": subject_id, "user_id": user_id, "lat": f.lat,
             "lon": f.lon, "accuracy_m": f.accuracy_m, "t": f.t, "incident_id": incident_id} for f in fixes]
    # One cached statement executed for many rows ("insertmanyvalues"): a .values(rows) statement would be
    # compiled afresh for every batch, which cost more than the insert itself.
    stmt = insert(LocationFix).on_conflict_do_nothing(constraint="uq_location_fixes_subject_t") \
        .returning(LocationFix.t)
    fresh = set(session.scalars(stmt, rows))
    return [f for f in fixes if f.t in fresh]


def set_live(redis_client, *, subject_kind: str, subject_id, fix: Fix) -> bool:
    """Keep the newest position in Redis (only what may be lost and rebuilt from PostgreSQL)."""
    key = f"live:{subject_kind}:{subject_id}"
    try:
        current = redis_client.get(key)
        if current and json.loads(current)["t"] >= fix.t.isoformat():
            return False  # a late fix never replaces a newer one
        redis_client.set(key, json.dumps(fix.as_dict()), ex=LIVE_TTL_S)
        return True
    except Exception:  # Redis down: the durable copy is in PostgreSQL; the live map catches up later
        return False
