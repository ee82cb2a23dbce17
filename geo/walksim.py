"""A seeded walk simulator: a pedestrian on a route, a phone's GPS error, and late batched uploads.

Used by tests and benchmarks to replay realistic walks through the monitors in ``geo.track``.
"""
from dataclasses import dataclass

import numpy as np
from shapely.geometry import LineString, Point

from geo.projection import coords_to_metres, to_lonlat
from geo.track import (
    ARRIVED,
    Fix,
    MonitorState,
    check_timers,
    dedupe_and_order,
    observe,
)

# Android reports accuracy as the 68 % radius; for a 2-D Gaussian that is 1.51 sigma per axis.
ACCURACY_PER_SIGMA = 1.51


@dataclass(frozen=True)
class Deviation:
    """Leave the route at ``at_fraction`` of its length, go ``offset_m`` aside, hold, come back."""

    at_fraction: float
    offset_m: float = 150.0
    hold_s: float = 60.0
    speed_mps: float | None = None  # None: at the walker's own pace
    side: int = 1  # +1 to the left of the direction of travel, -1 to the right


@dataclass(frozen=True)
class Stop:
    """Stand still at ``at_fraction`` of the route for ``duration_s`` seconds."""

    at_fraction: float
    duration_s: float


@dataclass(frozen=True)
class Replay:
    """What the monitors said during a replay: (server time, alert) pairs and the final state."""

    alerts: list
    state: MonitorState

    def kinds(self):
        """Return the alert kinds in the order they were raised."""
        return [alert.kind for _, alert in self.alerts]


def simulate_walk(route_coords, *, seed, speed_mps=1.3, interval_s=5.0, sigma_m=12.0,
                  outlier_rate=0.02, outlier_m=50.0, deviation=None, stop=None, start_t=0.0,
                  dwell_s=60.0, crossing_prob=0.3, crossing_wait_s=45.0, noise_tau_s=30.0,
                  correlated_share=0.7):
    """Return [((true_lon, true_lat), Fix)] for a walker following ``route_coords`` (lon, lat)."""
    rng = np.random.default_rng(seed)
    xy = coords_to_metres(route_coords)
    xy = xy[np.r_[True, np.any(np.diff(xy, axis=0) != 0, axis=1)]]
    times, pts = _trajectory(xy, rng, speed_mps=speed_mps, deviation=deviation, stop=stop,
                             dwell_s=dwell_s, crossing_prob=crossing_prob,
                             crossing_wait_s=crossing_wait_s)
    ts = np.arange(0.0, times[-1] + 1e-9, interval_s)
    ts = np.clip(ts + rng.uniform(-0.4, 0.4, len(ts)), 0.0, times[-1])  # phones are not metronomes
    true_xy = np.column_stack([np.interp(ts, times, pts[:, 0]), np.interp(ts, times, pts[:, 1])])
    noise = _gps_error(ts, rng, sigma_m=sigma_m, tau_s=noise_tau_s, share=correlated_share)
    jump = rng.random(len(ts)) < outlier_rate
    angle = rng.uniform(0.0, 2 * np.pi, len(ts))
    noise += jump[:, None] * outlier_m * np.column_stack([np.cos(angle), np.sin(angle)])
    # the phone does not know about its outliers: accuracy follows sigma only
    accuracy = np.round(ACCURACY_PER_SIGMA * sigma_m * rng.lognormal(0.0, 0.2, len(ts)), 1)
    true_ll = np.column_stack(to_lonlat(true_xy[:, 0], true_xy[:, 1]))
    seen = true_xy + noise
    seen_ll = np.column_stack(to_lonlat(seen[:, 0], seen[:, 1]))
    return [((float(tl[0]), float(tl[1])),
             Fix(lat=float(sl[1]), lon=float(sl[0]), accuracy_m=float(a), t=start_t + float(t)))
            for tl, sl, a, t in zip(true_ll, seen_ll, accuracy, ts)]


def deliver_in_batches(fixes, *, seed, batch_s=15.0, late_prob=0.1, late_s=(30.0, 150.0),
                       latency_s=(0.5, 3.0), dup_prob=0.05):
    """Group fixes into uploads as a background phone sends them: late, shuffled, some twice."""
    rng = np.random.default_rng(seed)
    if not fixes:
        return []
    t0 = min(f.t for f in fixes)
    groups = {}
    for fix in fixes:
        groups.setdefault(int((fix.t - t0) // batch_s), []).append(fix)
    batches = []
    for _, group in sorted(groups.items()):
        arrival = max(f.t for f in group) + rng.uniform(*latency_s)
        if rng.random() < late_prob:
            arrival += rng.uniform(*late_s)
        order = rng.permutation(len(group))
        batches.append((float(arrival), [group[i] for i in order]))
        if rng.random() < dup_prob:  # a retried upload whose first answer was lost
            batches.append((float(arrival + rng.uniform(5.0, 30.0)), list(group)))
    return sorted(batches, key=lambda b: b[0])


def replay(corridor, batches, *, config, start_t, expected_arrival=None, tick_s=5.0):
    """Feed batches through observe() and a worker's check_timers() ticks, as the service would."""
    state, out = MonitorState.start(start_t), []
    clock = start_t
    for arrival, batch in batches:
        while clock + tick_s <= arrival:
            clock += tick_s
            state, alerts = check_timers(state, now=clock, expected_arrival=expected_arrival,
                                         config=config)
            out += [(clock, a) for a in alerts]
        fresh, late = dedupe_and_order(batch, last_t=state.last_t, now=arrival,
                                       stale_s=config.stale_s, max_future_s=config.max_future_s)
        for fix in late + fresh:
            state, alerts = observe(state, fix, corridor=corridor, config=config, now=arrival)
            out += [(arrival, a) for a in alerts]
        if ARRIVED in state.raised:
            break
    return Replay(alerts=out, state=state)


def _trajectory(xy, rng, *, speed_mps, deviation, stop, dwell_s, crossing_prob,
                crossing_wait_s):
    """Return keyframe times and metric positions of the true walk, linear between keyframes."""
    seg = np.hypot(*np.diff(xy, axis=0).T)
    cum = np.r_[0.0, np.cumsum(seg)]
    pace = speed_mps * rng.normal(1.0, 0.08)  # people walk at their own pace
    events = [(float(c), "corner") for c in cum[1:-1]]
    events += [(deviation.at_fraction * cum[-1], "deviation")] if deviation else []
    events += [(stop.at_fraction * cum[-1], "stop")] if stop else []
    events.append((float(cum[-1]), "end"))
    times, pts, t, s = [0.0], [xy[0]], 0.0, 0.0
    for at, what in sorted(events):
        t += (at - s) / pace
        s = at
        here = _point_at(xy, cum, s)
        times.append(t)
        pts.append(here)
        for dt, p in _event_frames(what, here, _normal_at(xy, cum, s), rng, pace=pace,
                                   deviation=deviation, stop=stop, dwell_s=dwell_s,
                                   crossing_prob=crossing_prob, crossing_wait_s=crossing_wait_s):
            t += dt
            times.append(t)
            pts.append(p)
    return np.asarray(times), np.asarray(pts)


def _event_frames(what, here, normal, rng, *, pace, deviation, stop, dwell_s, crossing_prob,
                  crossing_wait_s):
    """Return (duration, position) keyframes that an event adds at point ``here``."""
    if what == "corner":  # waiting for the green light at some crossings
        wait = rng.uniform(0.0, crossing_wait_s) if rng.random() < crossing_prob else 0.0
        return [(wait, here)] if wait else []
    if what == "stop":
        return [(stop.duration_s, here)]
    if what == "end":
        return [(dwell_s, here)] if dwell_s else []
    away = here + deviation.side * deviation.offset_m * normal
    travel = deviation.offset_m / (deviation.speed_mps or pace)
    return [(travel, away), (deviation.hold_s, away), (travel, here)]


def _point_at(xy, cum, s):
    i = int(np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(xy) - 2))
    f = (s - cum[i]) / (cum[i + 1] - cum[i])
    return xy[i] + f * (xy[i + 1] - xy[i])


def _normal_at(xy, cum, s):
    """Return the unit vector to the left of the direction of travel at distance ``s``."""
    i = int(np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(xy) - 2))
    d = (xy[i + 1] - xy[i]) / (cum[i + 1] - cum[i])
    return np.array([-d[1], d[0]])


def _gps_error(ts, rng, *, sigma_m, tau_s, share):
    """Return per-fix (dx, dy) error: a slowly drifting bias (AR(1)) plus white jitter."""
    n = len(ts)
    err = np.empty((n, 2))
    err[0] = rng.normal(0.0, sigma_m * np.sqrt(share), 2)
    rho = np.exp(-np.diff(ts, prepend=ts[0]) / tau_s)
    z = rng.normal(0.0, sigma_m * np.sqrt(share), (n, 2))
    for k in range(1, n):
        err[k] = rho[k] * err[k - 1] + np.sqrt(1.0 - rho[k] ** 2) * z[k]
    return err + rng.normal(0.0, sigma_m * np.sqrt(1.0 - share), (n, 2))


def pick_deviation(route_coords, *, seed, offset_m=150.0, hold_s=60.0, speed_mps=None,
                   fractions=(0.2, 0.8), tries=50):
    """Return a Deviation whose far point is truly ``offset_m`` from every part of the route."""
    rng = np.random.default_rng(seed)
    xy = coords_to_metres(route_coords)
    xy = xy[np.r_[True, np.any(np.diff(xy, axis=0) != 0, axis=1)]]
    cum = np.r_[0.0, np.cumsum(np.hypot(*np.diff(xy, axis=0).T))]
    line = LineString(xy)
    for _ in range(tries):
        at, side = rng.uniform(*fractions), int(rng.choice([-1, 1]))
        far = _point_at(xy, cum, at * cum[-1]) + side * offset_m * _normal_at(xy, cum, at * cum[-1])
        if line.distance(Point(far)) >= offset_m - 1.0:
            return Deviation(at_fraction=at, offset_m=offset_m, hold_s=hold_s,
                             speed_mps=speed_mps, side=side)
    return None
