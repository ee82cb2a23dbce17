"""When scouts work and how a booking must be timed: pure rules on Seoul's wall clock.

Hours read like `Mon 22:00-24:00; Tue-Fri 22:00-01:00`: days (`Mon`, `Tue-Fri`, `Sat,Sun`,
`Fri-Mon`) and a window. A window whose end is not after its start crosses midnight and belongs
to the evening it started: Tuesday's 22:00-01:00 covers Wednesday 00:30, and Wednesday 00:30 is
part of Tuesday's service day.
"""
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from safety_api.clock import SEOUL, to_seoul

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_RULE = re.compile(r"^(?P<days>[A-Za-z]{3}(?:\s*[-,]\s*[A-Za-z]{3})*)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*"
                   r"(?P<end>\d{1,2}:\d{2})$")
_DAY_INDEX = {name.lower(): i for i, name in enumerate(DAYS)}
_DISTRICT_CODE = re.compile(r"[0-9]{5}")  # a 시군구 code, as districts.code holds it
MAX_AHEAD = timedelta(days=31)  # beyond any sensible booking, and far from the calendar's ends


@dataclass(frozen=True)
class Window:
    """Service on one weekday from `start` to `end`, in minutes after that day's midnight."""

    weekday: int
    start: int
    end: int  # beyond 1440 when the window crosses midnight

    def bounds(self, day: date) -> tuple[datetime, datetime]:
        """The window's start and end on a given (service) day, in Seoul."""
        midnight = datetime.combine(day, time(0), SEOUL)
        return midnight + timedelta(minutes=self.start), midnight + timedelta(minutes=self.end)


@dataclass(frozen=True)
class ServiceHours:
    spec: str
    windows: tuple[Window, ...]

    def service_day(self, moment: datetime) -> date | None:
        """The day whose evening window contains the moment, or None outside service."""
        local = to_seoul(moment)
        for day in (local.date() - timedelta(days=1), local.date()):
            for window in self.windows:
                start, end = window.bounds(day)
                if window.weekday == day.weekday() and start <= local < end:
                    return day
        return None


@dataclass(frozen=True)
class Policy:
    """The booking rules and timers of one deployment."""

    hours: ServiceHours
    min_lead: timedelta
    same_day_only: bool = True
    district_hours: dict = field(default_factory=dict)  # district code -> ServiceHours
    turnaround: timedelta = timedelta(minutes=15)  # scouts' way on to the next meeting point
    reminder: timedelta = timedelta(minutes=10)  # before meet_at
    unconfirmed: timedelta = timedelta(minutes=15)  # before meet_at: still no pair -> flag it
    late: timedelta = timedelta(minutes=10)  # after meet_at: a confirmed escort not started -> flag it
    max_walk_m: float = 4000.0
    start_lead: timedelta = timedelta(minutes=30)  # how long before meet_at the pair may start the escort
    overrun_grace: timedelta = timedelta(minutes=30)  # past its time, an escort nobody completed is closed

    def hours_in(self, district: str | None) -> ServiceHours:
        return self.district_hours.get(district, self.hours)


@dataclass(frozen=True)
class Violation:
    rule: str  # "service-hours", "same-day", "lead-time" or "advance"
    message: str


def parse_hours(spec: str) -> ServiceHours:
    """Parse an hours spec; an empty spec means no service at all. ValueError names the bad part."""
    windows = []
    for part in filter(None, (p.strip() for p in re.split(r"[;\n]", spec or ""))):
        match = _RULE.match(part)
        if not match:
            raise ValueError(f"Cannot read service hours {part!r}; write e.g. 'Tue-Fri 22:00-01:00'.")
        start, end = _minutes(match["start"], part), _minutes(match["end"], part)
        if start >= 1440 or start == end:
            raise ValueError(f"Service hours {part!r} start at 24:00 or last no time.")
        end = end if end > start else end + 1440
        windows += [Window(day, start, end) for day in _days(match["days"], part)]
    return ServiceHours(spec, tuple(windows))


def policy_from_config(cfg) -> Policy:
    """A Policy from the app's ESCORT_* configuration values (any mapping). The app builds it once, at start:
    ValueError names the environment variable that cannot be read."""
    return Policy(
        hours=_hours_setting("ESCORT_SERVICE_HOURS", cfg["ESCORT_SERVICE_HOURS"]),
        min_lead=timedelta(minutes=cfg["ESCORT_MIN_LEAD_MINUTES"]),
        same_day_only=cfg["ESCORT_SAME_DAY_ONLY"],
        district_hours={code: _hours_setting(f"ESCORT_SERVICE_HOURS_{code}", spec, district=code)
                        for code, spec in cfg["ESCORT_DISTRICT_HOURS"].items()},
        turnaround=timedelta(minutes=cfg["ESCORT_TURNAROUND_MINUTES"]),
        reminder=timedelta(minutes=cfg["ESCORT_REMINDER_MINUTES"]),
        unconfirmed=timedelta(minutes=cfg["ESCORT_UNCONFIRMED_MINUTES"]),
        late=timedelta(minutes=cfg["ESCORT_LATE_MINUTES"]),
        max_walk_m=cfg["ESCORT_MAX_WALK_M"],
        start_lead=timedelta(minutes=cfg["ESCORT_START_LEAD_MINUTES"]),
        overrun_grace=timedelta(minutes=cfg["ESCORT_OVERRUN_GRACE_MINUTES"]))


def _hours_setting(name: str, spec: str, *, district: str | None = None) -> ServiceHours:
    if district is not None and not _DISTRICT_CODE.fullmatch(district):
        raise ValueError(f"{name}: {district!r} is not a district code; name one by its five digits, "
                         f"e.g. ESCORT_SERVICE_HOURS_11620.")
    try:
        return parse_hours(spec)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def check_booking_time(policy: Policy, *, district: str | None, meet_at: datetime,
                       now: datetime) -> Violation | None:
    """The first rule a meeting time breaks (hours, then same day, then lead time), or None."""
    if meet_at > now + MAX_AHEAD:
        return Violation("advance", f"Book at most {MAX_AHEAD.days} days ahead.")
    if meet_at < now - policy.min_lead - timedelta(days=1):
        return _too_soon(policy, now)
    hours = policy.hours_in(district)
    day = hours.service_day(meet_at)
    if day is None:
        return Violation("service-hours", f"Scouts meet citizens only during {hours.spec or 'no hours'} "
                                          f"(Asia/Seoul); {_fmt(meet_at)} is outside these hours.")
    if policy.same_day_only and day not in {to_seoul(now).date(), hours.service_day(now)}:
        return Violation("same-day", f"Escorts are booked on the day itself; the escort at {_fmt(meet_at)} "
                                     f"can be booked from {day.isoformat()} 00:00 (Asia/Seoul).")
    if meet_at < now + policy.min_lead:
        return _too_soon(policy, now)
    return None


def _too_soon(policy: Policy, now: datetime) -> Violation:
    minutes = int(policy.min_lead.total_seconds() // 60)
    return Violation("lead-time", f"Book at least {minutes} minutes ahead; the earliest meeting time now "
                                  f"is {_fmt(now + policy.min_lead)} (Asia/Seoul).")


def _minutes(text: str, part: str) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if minutes >= 60 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{text!r} in {part!r} is not a time of day.")
    return hours * 60 + minutes


def _days(text: str, part: str) -> list[int]:
    days = []
    for chunk in (c.strip() for c in text.split(",")):
        ends = [e.strip().lower() for e in chunk.split("-")]
        if len(ends) > 2 or any(e not in _DAY_INDEX for e in ends):
            raise ValueError(f"Unknown days {chunk!r} in {part!r}; use {', '.join(DAYS)}.")
        first, last = _DAY_INDEX[ends[0]], _DAY_INDEX[ends[-1]]
        days += [(first + i) % 7 for i in range((last - first) % 7 + 1)]
    return sorted(set(days))


def _fmt(moment: datetime) -> str:
    return to_seoul(moment).strftime("%a %Y-%m-%d %H:%M")
