"""Location fixes from phones: validate, drop duplicates, persist in batches, keep the live position."""
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.types import DateTime, Float, String

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
    source: str | None = None  # set on points the server stamped with its own clock ("raise", "retry")

    def as_dict(self) -> dict:
        point = {"lat": self.lat, "lon": self.lon, "accuracy_m": self.accuracy_m, "t": self.t.isoformat()}
        return {**point, "source": self.source} if self.source else point


def validate(raw_fixes, *, now: datetime) -> tuple[list[Fix], list[dict]]:
    """Split raw fix dicts into valid Fixes (ordered by time) and rejections with reasons.

    A fix repeated in the batch (same t, same point) stays in the valid list: storing keeps one and counts the
    other as the duplicate it is, as for a fix resent in a later batch. The same t at another point is
    rejected: one of the two is wrong and nothing says which."""
    valid, rejected, seen = [], [], {}
    for index, raw in enumerate(raw_fixes):
        fix, reason = _parse(raw, now)
        if reason is None and seen.get(fix.t, (fix.lat, fix.lon)) != (fix.lat, fix.lon):
            reason = "t repeats an earlier fix of the batch at another point"
        if reason:
            rejected.append({"index": index, "reason": reason})
            continue
        seen.setdefault(fix.t, (fix.lat, fix.lon))
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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # a JSON integer beyond any float (10**400): no coordinate, never a 500
        return False


def _time(value, now) -> datetime | None:
    if value is None:
        return now  # a live fix sent without a timestamp is "now"
    try:
        if _finite(value):
            return datetime.fromtimestamp(value, timezone.utc)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment.astimezone(timezone.utc) if moment.tzinfo else None
    except (ValueError, OverflowError, OSError):
        return None
    return None


# Set the live position only if it is newer than the one there: atomic, unlike GET then SET. A point the server
# stamped with its own clock (`source`) gives way to the phone's next fix, whose clock may be behind.
LIVE_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local held = cjson.decode(current)
  if held['t'] >= ARGV[2] and not held['source'] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


# One statement text whatever the group's size: PostgreSQL and psycopg prepare it once. A multi-row VALUES
# list is a new statement for every row count, parsed and planned afresh (a quarter of the api's CPU).
_INSERT_FIXES = text("""
    INSERT INTO location_fixes (subject_kind, subject_id, user_id, lat, lon, accuracy_m, t, incident_id)
    SELECT * FROM unnest(:subject_kind, :subject_id, :user_id, :lat, :lon, :accuracy_m, :t, :incident_id)
    ON CONFLICT (subject_kind, subject_id, t, user_id) DO NOTHING
    RETURNING subject_id, t
""").bindparams(
    bindparam("subject_kind", type_=ARRAY(String)), bindparam("subject_id", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("user_id", type_=ARRAY(UUID(as_uuid=True))), bindparam("lat", type_=ARRAY(Float)),
    bindparam("lon", type_=ARRAY(Float)), bindparam("accuracy_m", type_=ARRAY(Float)),
    bindparam("t", type_=ARRAY(DateTime(timezone=True))), bindparam("incident_id", type_=ARRAY(UUID(as_uuid=True))))
_COLUMNS = ("subject_kind", "subject_id", "user_id", "lat", "lon", "accuracy_m", "t", "incident_id")


def insert_fixes(session, rows: list[dict]) -> set:
    """Store a group's fixes in one statement; returns the (subject_id, t) pairs that were new (a resent fix
    is a duplicate by (kind, subject, t, sender): an escort's two scouts each report the booking)."""
    if not rows:
        return set()
    columns = {name: [row[name] for row in rows] for name in _COLUMNS}
    return {(subject_id, t) for subject_id, t in session.execute(_INSERT_FIXES, columns)}


def set_live_positions(redis_client, kind: str, newest: list) -> list[bool]:
    """The newest position of each subject, (subject_id, Fix) pairs, in one Redis round trip; a late fix
    never replaces a newer one (LIVE_IF_NEWER). Returns, per pair, whether it became the live position."""
    live_if_newer = redis_client.register_script(LIVE_IF_NEWER)  # a Script object: no round trip
    pipe = redis_client.pipeline(transaction=False)
    for subject_id, fix in newest:
        live_if_newer(keys=[f"live:{kind}:{subject_id}"], client=pipe,
                      args=[json.dumps(fix.as_dict()), fix.t.isoformat(), LIVE_TTL_S])
    return [bool(changed) for changed in pipe.execute()]


def store(session, *, subject_kind: str, subject_id, user_id, fixes: list[Fix], incident_id=None) -> list[Fix]:
    """Insert one subject's fixes in one statement; returns those that were new (a resent fix is a duplicate)."""
    stored = insert_fixes(session, [{"subject_kind": subject_kind, "subject_id": subject_id, "user_id": user_id,
                                     "lat": f.lat, "lon": f.lon, "accuracy_m": f.accuracy_m, "t": f.t,
                                     "incident_id": incident_id} for f in fixes])
    fresh = []
    for f in fixes:
        if (subject_id, f.t) in stored:
            stored.discard((subject_id, f.t))  # a fix sent twice in one batch is new once
            fresh.append(f)
    return fresh


def set_live(redis_client, *, subject_kind: str, subject_id, fix: Fix) -> bool:
    """Keep the newest position in Redis (only what may be lost and rebuilt from PostgreSQL)."""
    try:
        return set_live_positions(redis_client, subject_kind, [(subject_id, fix)])[0]
    except Exception:  # Redis down: the durable copy is in PostgreSQL; the live map catches up later
        return False
