"""Service hours and booking-time rules on Seoul's wall clock, with no I/O."""
from datetime import date, datetime, timedelta, timezone

import pytest

from safety_api.clock import SEOUL
from safety_api.services.escort_rules import check_booking_time, parse_hours, policy_from_config

REAL = "Mon 22:00-24:00; Tue-Fri 22:00-01:00"
# 2026-11-23 is a Monday.
MON, TUE, WED, SAT, SUN = (date(2026, 11, d) for d in (23, 24, 25, 28, 29))


def seoul(day: date, hh: int, mm: int = 0, plus_days: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SEOUL) + timedelta(days=plus_days)


def policy(hours=REAL, lead=30, same_day=True, **district_hours):
    return policy_from_config({
        "ESCORT_SERVICE_HOURS": hours, "ESCORT_MIN_LEAD_MINUTES": lead, "ESCORT_SAME_DAY_ONLY": same_day,
        "ESCORT_DISTRICT_HOURS": district_hours, "ESCORT_TURNAROUND_MINUTES": 15, "ESCORT_REMINDER_MINUTES": 10,
        "ESCORT_UNCONFIRMED_MINUTES": 15, "ESCORT_LATE_MINUTES": 10, "ESCORT_MAX_WALK_M": 4000,
        "ESCORT_START_LEAD_MINUTES": 30, "ESCORT_OVERRUN_GRACE_MINUTES": 30})


def rule(meet_at, now, pol=None, district="11620"):
    violation = check_booking_time(pol or policy(), district=district, meet_at=meet_at, now=now)
    return violation.rule if violation else None


@pytest.mark.parametrize("meet_at, service_day", [
    (seoul(MON, 21, 59), None),
    (seoul(MON, 22, 0), MON),  # the window opens on the minute
    (seoul(MON, 23, 59), MON),
    (seoul(MON, 0, 0, plus_days=1), None),  # Monday ends at 24:00 sharp
    (seoul(MON, 0, 30, plus_days=1), None),  # and does not cross midnight
    (seoul(TUE, 22, 0), TUE),
    (seoul(TUE, 0, 30, plus_days=1), TUE),  # Wednesday 00:30 belongs to Tuesday evening
    (seoul(TUE, 0, 59, plus_days=1), TUE),
    (seoul(TUE, 1, 0, plus_days=1), None),  # closes at 01:00
    (seoul(date(2026, 11, 27), 0, 30, plus_days=1), date(2026, 11, 27)),  # Saturday 00:30 is Friday's
    (seoul(SAT, 22, 30), None),  # no service at the weekend
    (seoul(SUN, 23, 0), None),
    (seoul(SUN, 0, 30, plus_days=1), None),  # Monday 00:30 would be Sunday evening's: none
    (seoul(MON, 0, 30), None),
])
def test_service_day_of_a_moment(meet_at, service_day):
    assert parse_hours(REAL).service_day(meet_at) == service_day


def test_a_utc_instant_is_judged_on_seoul_time():
    # 13:30 UTC is 22:30 in Seoul; 12:30 UTC is 21:30.
    hours = parse_hours(REAL)
    assert hours.service_day(datetime(2026, 11, 24, 13, 30, tzinfo=timezone.utc)) == TUE
    assert hours.service_day(datetime(2026, 11, 24, 12, 30, tzinfo=timezone.utc)) is None


@pytest.mark.parametrize("meet_at, now, broken", [
    (seoul(TUE, 22, 30), seoul(TUE, 15, 0), None),
    (seoul(TUE, 22, 15), seoul(TUE, 21, 45), None),  # exactly 30 minutes ahead
    (seoul(TUE, 22, 14), seoul(TUE, 21, 45), "lead-time"),
    (seoul(TUE, 21, 30), seoul(TUE, 15, 0), "service-hours"),
    (seoul(SAT, 22, 30), seoul(SAT, 15, 0), "service-hours"),
    (seoul(WED, 22, 30), seoul(TUE, 15, 0), "same-day"),  # tomorrow's escort is booked tomorrow
    (seoul(TUE, 0, 50, plus_days=1), seoul(TUE, 0, 15, plus_days=1), None),  # after midnight, same evening
    (seoul(TUE, 0, 50, plus_days=1), seoul(TUE, 23, 0), None),  # booked before midnight for after it
    (seoul(TUE, 0, 40, plus_days=1), seoul(TUE, 0, 15, plus_days=1), "lead-time"),
    (seoul(WED, 22, 30), seoul(TUE, 0, 15, plus_days=1), None),  # Wednesday 00:15 books Wednesday night
    (seoul(TUE, 22, 30), seoul(TUE, 23, 0), "lead-time"),  # in the past
])
def test_booking_time_rules(meet_at, now, broken):
    assert rule(meet_at, now) == broken


@pytest.mark.parametrize("meet_at, broken", [
    (datetime(9999, 12, 31, 23, 0, tzinfo=SEOUL), "advance"),
    (datetime(1, 1, 1, 12, 0, tzinfo=timezone.utc), "lead-time"),
])
def test_times_at_the_ends_of_the_calendar_are_refused_not_crashed_on(meet_at, broken):
    assert rule(meet_at, seoul(TUE, 15), policy(same_day=False)) == broken


def test_the_first_broken_rule_is_reported_with_a_reason():
    violation = check_booking_time(policy(), district="11620", meet_at=seoul(SAT, 22, 30), now=seoul(TUE, 12))
    assert violation.rule == "service-hours"
    assert "Mon 22:00-24:00" in violation.message and "Sat 2026-11-28 22:30" in violation.message


def test_configuration_opens_the_service_at_any_hour():
    always = policy(hours="Mon-Sun 00:00-24:00", lead=0, same_day=False)
    for hour in range(24):
        now = seoul(SAT, hour, 17)
        assert rule(now + timedelta(minutes=1), now, always) is None
        assert rule(now + timedelta(days=3), now, always) is None


def test_same_day_rule_can_be_switched_off():
    assert rule(seoul(WED, 22, 30), seoul(TUE, 15), policy(same_day=False)) is None


def test_district_hours_override_the_default():
    pol = policy(**{"11620": "Sat 21:00-02:00"})
    assert rule(seoul(SAT, 1, 30, plus_days=1), seoul(SAT, 20), pol, district="11620") is None
    assert rule(seoul(SAT, 1, 30, plus_days=1), seoul(SAT, 20), pol, district="11680") == "service-hours"
    assert rule(seoul(TUE, 22, 30), seoul(TUE, 20), pol, district="11620") == "service-hours"


def test_empty_hours_mean_no_service():
    assert rule(seoul(TUE, 22, 30), seoul(TUE, 15), policy(hours="")) == "service-hours"


@pytest.mark.parametrize("spec, days", [
    ("Mon-Sun 00:00-24:00", list(range(7))),
    ("Fri-Mon 23:00-02:00", [0, 4, 5, 6]),  # a day range may wrap over the week's end
    ("Sat,Sun 20:00-22:00", [5, 6]),
    ("tue 22:00-01:00\nthu 22:00-01:00", [1, 3]),
])
def test_parse_day_ranges(spec, days):
    assert sorted({w.weekday for w in parse_hours(spec).windows}) == days


def test_a_window_ending_before_it_starts_crosses_midnight():
    (window,) = parse_hours("Tue 22:00-01:00").windows
    assert (window.start, window.end) == (22 * 60, 25 * 60)


@pytest.mark.parametrize("spec", ["Xyz 22:00-23:00", "Mon 25:00-26:00", "Mon 22:00", "Mon 22:60-23:00",
                                  "Mon 22:00-22:00", "Mon 24:00-01:00", "Mon-Tue-Wed 22:00-23:00"])
def test_unreadable_hours_are_refused_with_the_part_named(spec):
    with pytest.raises(ValueError, match="Mon|Xyz"):
        parse_hours(spec)
