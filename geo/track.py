"""Walk-home track math: pure detectors for deviated, stalled, arrived, overdue and signal_lost.

Times are epoch seconds (float). Positions arrive as WGS84 and are measured in EPSG:5179 metres.
Nothing here does I/O; the service stores ``MonitorState.to_dict()`` between fixes.
"""
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import NamedTuple

import numpy as np

from geo.corridor import RouteCorridor

DEVIATED, STALLED, OVERDUE, SIGNAL_LOST, ARRIVED = (
    "deviated", "stalled", "overdue", "signal_lost", "arrived")
ALERT_KINDS = (DEVIATED, STALLED, OVERDUE, SIGNAL_LOST, ARRIVED)
__all__ = ["ALERT_KINDS", "Alert", "Fix", "MonitorConfig", "MonitorState", "RouteCorridor",
           "acknowledge", "check_timers", "classify", "clock_offset", "corridor_limit_m", "dedupe_and_order",
           "last_heard", "observe", "receive"]


@dataclass(frozen=True)
class Fix:
    """One client position: degrees, horizontal accuracy (68 % radius) in metres, epoch seconds."""

    lat: float
    lon: float
    accuracy_m: float
    t: float


@dataclass(frozen=True)
class Alert:
    """Something a monitor detected; ``t`` is the walk time it is about."""

    kind: str
    t: float
    detail: dict


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds of the walk monitors; docs/monitoring.md says why each has its value."""

    corridor_min_m: float = 50.0
    accuracy_factor: float = 2.0
    deviation_min_fixes: int = 3
    deviation_min_s: float = 20.0
    deviation_reset_fixes: int = 2
    far_margin_m: float = 50.0
    far_min_fixes: int = 2
    far_min_s: float = 10.0
    max_accuracy_m: float = 100.0
    stall_s: float = 300.0
    stall_progress_m: float = 30.0
    arrival_radius_m: float = 40.0
    arrival_min_fixes: int = 2
    arrival_accuracy_cap_m: float = 10.0
    arrival_route_slack_m: float = 100.0
    arrival_dwell_s: float = 60.0
    overdue_grace_s: float = 600.0
    deviation_snooze_s: float = 600.0
    signal_lost_s: float = 120.0
    stale_s: float = 60.0
    max_future_s: float = 30.0
    match_back_m: float = 30.0
    match_ahead_m: float = 60.0
    match_speed_mps: float = 4.0
    clock_offset_min_s: float = 30.0
    clock_confirm_s: float = 30.0


def corridor_limit_m(config, accuracy_m):
    """Return the distance from the route beyond which a fix of this accuracy is off it."""
    return max(config.corridor_min_m, config.accuracy_factor * accuracy_m)


@dataclass(frozen=True)
class MonitorState:
    """What the monitors remember between fixes; small and JSON-serialisable."""

    started_t: float
    last_t: float | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    off_count: int = 0
    off_since: float | None = None
    far_count: int = 0
    back_count: int = 0
    anchor_m: float = 0.0
    anchor_t: float | None = None
    prev_progress_m: float | None = None
    best_progress_m: float = 0.0
    best_t: float | None = None
    near_count: int = 0
    near_since: float | None = None
    raised: tuple = ()
    overdue_after: float | None = None
    signal_after: float | None = None
    # Set by a check-in that answered "deviated": the walker said they are fine off the route, so they are not
    # asked again until they are back on it, or until this walk time has passed.
    deviation_after: float | None = None
    # Server times of the first and the latest upload, and the smallest delay seen between a fix's phone time
    # and the server's receipt of its upload (see receive).
    first_heard_t: float | None = None
    heard_t: float | None = None
    min_lag_s: float | None = None

    @classmethod
    def start(cls, t):
        """Return the state of a walk that starts at epoch second ``t``."""
        return cls(started_t=float(t), best_t=float(t), anchor_t=float(t))

    def to_dict(self):
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["raised"] = list(self.raised)
        return d

    @classmethod
    def from_dict(cls, d):
        """Rebuild a state from ``to_dict`` output, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in d.items() if k in known}
        kept["raised"] = tuple(kept.get("raised", ()))
        return cls(**kept)


def classify(state, fix, *, now, config):
    """Return 'fresh' if the fix may speak about the present, else 'late' or 'future'."""
    if fix.t > now + config.max_future_s:
        return "future"
    if (state.last_t is not None and fix.t <= state.last_t) or fix.t < now - config.stale_s:
        return "late"
    return "fresh"


def dedupe_and_order(fixes, *, last_t, now=None, stale_s=60.0, max_future_s=30.0):
    """Drop repeated timestamps, sort by time, and split into (fresh, late) lists."""
    unique = {}
    for fix in fixes:
        unique.setdefault(float(fix.t), fix)
    fresh, late = [], []
    for t in sorted(unique):
        old = (last_t is not None and t <= last_t) or (now is not None and t < now - stale_s)
        ahead = now is not None and t > now + max_future_s
        (late if old or ahead else fresh).append(unique[t])
    return fresh, late


def observe(state, fix, *, corridor, config, now):
    """Fold one fix into the state; return (new_state, alerts). Late fixes never alert."""
    if ARRIVED in state.raised:
        return state, []
    kind = classify(state, fix, now=now, config=config)
    if kind != "fresh":
        return (_observe_late(state, fix, corridor, config) if kind == "late" else state), []
    changes = {"last_t": float(fix.t), "signal_after": None,
               "raised": _drop(state.raised, SIGNAL_LOST)}
    if fix.accuracy_m > config.max_accuracy_m:
        return replace(state, **changes), []  # alive, but too vague to say where
    here = _locate(fix, corridor, config)
    if here is None:
        return replace(state, **changes), []  # alive, but EPSG:5179 cannot say where (see _locate)
    changes.update(last_lat=fix.lat, last_lon=fix.lon)
    alerts = []
    for check in (_check_arrival, _check_deviation, _check_stall):
        more, alert = check(state, fix, here, corridor, config)
        changes.update(more)
        alerts += [alert] if alert else []
        if alert and alert.kind == ARRIVED:
            break  # the walk is over: nothing else to say about it
    changes["raised"] = tuple(sorted(set(changes["raised"]) | {a.kind for a in alerts}))
    return replace(state, **changes), alerts


def receive(state, fix_ts, *, now):
    """Note an upload of fixes (phone times ``fix_ts``) that the server received at ``now`` (server time).

    The phone is alive whatever its clock says, so the upload sets ``heard_t``, which signal_lost judges, and
    clears a raised signal_lost. It also bounds the phone clock's lag: a fix cannot be older than its phone
    time says by more than the upload took, so the smallest ``now - newest t`` seen (``min_lag_s``) is the
    clock's lag plus the fastest upload's latency (see clock_offset)."""
    if not fix_ts or ARRIVED in state.raised:
        return state
    lag = float(now) - max(fix_ts)
    return replace(state, heard_t=max(float(now), state.heard_t or float(now)),
                   first_heard_t=state.first_heard_t if state.first_heard_t is not None else float(now),
                   min_lag_s=lag if state.min_lag_s is None else min(state.min_lag_s, lag),
                   signal_after=None, raised=_drop(state.raised, SIGNAL_LOST))


def clock_offset(state, config):
    """Seconds to add to the phone's fix times to put them on the server's clock: ``min_lag_s`` once it is
    at least ``clock_offset_min_s`` (smaller lags are absorbed by ``stale_s``) and the walk has been heard
    for ``clock_confirm_s`` (one upload of fixes buffered offline looks like a slow clock; the live uploads
    that follow bring the minimum down). Corrected times never pass the receipt time."""
    if state.min_lag_s is None or state.min_lag_s < config.clock_offset_min_s:
        return 0.0
    if state.heard_t - state.first_heard_t < config.clock_confirm_s:
        return 0.0
    return state.min_lag_s


def last_heard(state):
    """The last moment the walk was heard from: the newest fresh fix, the latest upload, or its start."""
    last = state.last_t if state.last_t is not None else state.started_t
    return last if state.heard_t is None else max(last, state.heard_t)


def check_timers(state, *, now, expected_arrival, config):
    """Return (new_state, alerts) for the clock-driven monitors: signal_lost and overdue."""
    if ARRIVED in state.raised:
        return state, []
    alerts = [a for a in (_signal_lost(state, now, config),
                          _overdue(state, now, expected_arrival, config)) if a]
    for alert in alerts:
        state = _raise(state, alert.kind)
    return state, alerts


def _signal_lost(state, now, config):
    last = last_heard(state)
    due = max(last + config.signal_lost_s, state.signal_after or 0.0)
    if now < due or SIGNAL_LOST in state.raised:
        return None
    return Alert(SIGNAL_LOST, float(now), {"last_fix_t": state.last_t, "silent_s": now - last})


def _overdue(state, now, expected_arrival, config):
    if expected_arrival is None or OVERDUE in state.raised:
        return None
    due = expected_arrival + config.overdue_grace_s
    if state.overdue_after is not None:
        due = state.overdue_after  # snoozed by a check-in
    if now < due:
        return None
    return Alert(OVERDUE, float(now), {"expected_arrival": expected_arrival,
                                       "late_by_s": now - expected_arrival})


def acknowledge(state, *, now, config, kinds=None):
    """Clear raised alerts after a check-in and restart their clocks; 'arrived' stays."""
    kinds = set(ALERT_KINDS if kinds is None else kinds) - {ARRIVED}
    raised = tuple(k for k in state.raised if k not in kinds)
    changes = {"raised": raised}
    if DEVIATED in kinds:
        changes.update(off_count=0, off_since=None, far_count=0, back_count=0,
                       deviation_after=float(now) + config.deviation_snooze_s)
    if STALLED in kinds:
        changes.update(best_t=float(now))
    if OVERDUE in kinds:
        changes.update(overdue_after=float(now) + config.overdue_grace_s)
    if SIGNAL_LOST in kinds:
        changes.update(signal_after=float(now) + config.signal_lost_s)
    return replace(state, **changes)


def _raise(state, kind):
    return replace(state, raised=tuple(sorted(set(state.raised) | {kind})))


def _drop(raised, kind):
    return tuple(k for k in raised if k != kind)


class _Here(NamedTuple):
    """Where a fix is relative to the route, computed once per fix."""

    xy: tuple
    progress_m: float
    offset_m: float
    limit_m: float
    to_end_m: float


def _locate(fix, corridor, config):
    """Where the fix is relative to the route; None where EPSG:5179 cannot place it. Some valid coordinates far
    from Korea (e.g. -7.5, -144.5) project to infinity, and their offset and progress come out NaN: such a
    fix can neither start a deviation nor end one, and NaN must never reach the stored state (its JSON)."""
    xy = corridor.to_xy(fix)
    if not (math.isfinite(xy[0]) and math.isfinite(xy[1])):
        return None
    progress, offset = corridor.match_xy(*xy)
    to_end = float(np.hypot(xy[0] - corridor.end_xy[0], xy[1] - corridor.end_xy[1]))
    return _Here(xy, progress, offset, corridor_limit_m(config, fix.accuracy_m), to_end)


def _observe_late(state, fix, corridor, config):
    """Let a late fix inside the corridor count against an off-route streak; never alert."""
    if not state.off_count or fix.t < state.off_since or fix.accuracy_m > config.max_accuracy_m:
        return state
    here = _locate(fix, corridor, config)
    if here is None or here.offset_m > here.limit_m:  # unplaceable is not "back inside"
        return state
    return replace(state, **_back_inside(state, config))


def _check_arrival(state, fix, here, corridor, config):
    # the accuracy circle may overlap the arrival circle, by a capped amount
    reach = config.arrival_radius_m + min(fix.accuracy_m, config.arrival_accuracy_cap_m)
    if here.to_end_m > reach:
        return {"near_count": 0, "near_since": None}, None
    near = state.near_count + 1
    since = state.near_since if state.near_count else float(fix.t)
    changes = {"near_count": near, "near_since": since}
    # Near the door is arrival only at the end of the route, or when the walker stays: a route that passes by
    # the destination and then goes round the block to its entrance must not end the walk half way. Staying
    # covers a walker who cut across to the door away from the route.
    at_route_end = corridor.length_m - state.anchor_m <= reach + config.arrival_route_slack_m
    stayed = fix.t - since >= config.arrival_dwell_s
    if near < config.arrival_min_fixes or not (at_route_end or stayed):
        return changes, None
    detail = {"distance_m": round(here.to_end_m, 1)}
    return changes, Alert(ARRIVED, float(fix.t), detail)


def _check_deviation(state, fix, here, corridor, config):
    if here.offset_m <= here.limit_m:  # near any part of the route is on the route
        return _back_inside(state, config), None
    since = state.off_since if state.off_count else float(fix.t)
    count = state.off_count + 1
    far = state.far_count + 1 if here.offset_m > here.limit_m + config.far_margin_m else 0
    changes = {"off_count": count, "off_since": since, "far_count": far, "back_count": 0}
    excused = state.deviation_after is not None and fix.t < state.deviation_after
    if DEVIATED in state.raised or excused or not _sustained(count, far, fix.t - since, config):
        return changes, None
    detail = {"offset_m": round(here.offset_m, 1), "limit_m": round(here.limit_m, 1),
              "since_t": since, "fixes": count, "lat": fix.lat, "lon": fix.lon}
    return changes, Alert(DEVIATED, float(fix.t), detail)


def _back_inside(state, config):
    """Count a fix inside the corridor; one alone may be an outlier, so it ends no streak, nor the excuse a
    check-in gave (being back on the route ends it: a new departure is asked about again)."""
    back = state.back_count + 1
    if back >= config.deviation_reset_fixes:
        return {"off_count": 0, "off_since": None, "far_count": 0, "back_count": 0, "deviation_after": None}
    if not state.off_count and state.deviation_after is None:
        return {"off_count": 0, "off_since": None, "far_count": 0, "back_count": 0}
    return {"back_count": back, "far_count": 0}


def _sustained(count, far, span_s, config):
    """Tell whether an off-corridor streak is long enough, in fixes and seconds, to be real."""
    if count >= config.deviation_min_fixes and span_s >= config.deviation_min_s:
        return True
    # far beyond the corridor, where jitter and single outliers cannot reach, less is needed
    return far >= config.far_min_fixes and span_s >= config.far_min_s


def _match_progress(state, fix, here, corridor, config):
    """Map-match the fix near the last matched progress; fall back to the whole route."""
    dt = max(fix.t - (state.anchor_t if state.anchor_t is not None else state.started_t), 0.0)
    lo = state.anchor_m - config.match_back_m
    hi = state.anchor_m + config.match_ahead_m + config.match_speed_mps * dt
    progress, offset = corridor.match_xy(*here.xy, lo, hi)
    # a route that doubles back puts other legs within reach of noise: stay on this one
    return progress if offset <= here.limit_m else here.progress_m


def _check_stall(state, fix, here, corridor, config):
    progress = _match_progress(state, fix, here, corridor, config)
    # the smaller of two consecutive matches, so one outlier ahead cannot fake progress
    robust = None if state.prev_progress_m is None else min(progress, state.prev_progress_m)
    changes = {"anchor_m": progress, "anchor_t": float(fix.t), "prev_progress_m": progress}
    need = max(config.stall_progress_m, config.accuracy_factor * fix.accuracy_m)
    if robust is not None and robust >= state.best_progress_m + need:
        return {**changes, "best_progress_m": robust, "best_t": float(fix.t)}, None
    if (fix.t - state.best_t < config.stall_s or here.to_end_m <= config.arrival_radius_m
            or STALLED in state.raised):
        return changes, None
    detail = {"since_t": state.best_t, "progress_m": round(state.best_progress_m, 1),
              "remaining_m": round(corridor.length_m - state.best_progress_m, 1),
              "lat": fix.lat, "lon": fix.lon}
    return changes, Alert(STALLED, float(fix.t), detail)
