"""Time: the one place that says what "now" is (UTC, aware) and where Seoul is."""
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

SEOUL = ZoneInfo("Asia/Seoul")


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def to_seoul(moment: datetime) -> datetime:
    """Return the same instant on Seoul's wall clock, where business rules live."""
    return moment.astimezone(SEOUL)
