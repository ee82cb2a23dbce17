"""Walk monitors replayed on simulated walks: jitter never deviates, real deviations are caught."""
import json
from dataclasses import replace

import numpy as np
import pytest

from geo.projection import coords_to_metres, to_lonlat, to_metres
from geo.track import (
    Fix,
    MonitorConfig,
    MonitorState,
    RouteCorridor,
    acknowledge,
    check_timers,
    clock_offset,
    dedupe_and_order,
    last_heard,
    observe,
    receive,
)
from geo.walksim import Stop, deliver_in_batches, pick_deviation, replay, simulate_walk

CONFIG = MonitorConfig()
T0 = 1_700_000_000.0
GWANAK = (126.9515, 37.4784)  # near Seoul National University station


def zigzag_route(rng):
    """Return a 0.5-3 km staircase of streets with right-angle turns, as (lon, lat) pairs."""
    ox, oy = to_metres(*GWANAK)
    pts = [np.array([ox, oy]) + rng.uniform(-1500, 1500, 2)]
    theta = rng.uniform(0, np.pi / 2)  # the street grid is not aligned with north
    axes = [np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])]
    signs, target, total, k, jogged = rng.choice([-1, 1], 2), rng.uniform(500, 3000), 0.0, 0, False
    while total < target:
        leg, step = min(rng.uniform(60, 300), target - total), signs[k % 2] * axes[k % 2]
        if not jogged and k > 2 and rng.random() < 0.15:  # around a block, against the grain
            step, leg, jogged = -step, min(leg, 80.0), True
        pts.append(pts[-1] + step * leg)
        total, k = total + leg, k + 1
    xy = np.array(pts)
    lon, lat = to_lonlat(xy[:, 0], xy[:, 1])
    return list(zip(lon.tolist(), lat.tolist()))


def straight_route(length_m=1000.0):
    """Return an eastward straight route starting in Gwanak."""
    ox, oy = to_metres(*GWANAK)
    lon, lat = to_lonlat([ox, ox + length_m], [oy, oy])
    return list(zip(lon, lat))


def fix_at(along_m, side_m, t, accuracy_m=15.0):
    """Return a fix ``along_m`` east of the straight route's start and ``side_m`` north of it."""
    ox, oy = to_metres(*GWANAK)
    lon, lat = to_lonlat(ox + along_m, oy + side_m)
    return Fix(lat=float(lat), lon=float(lon), accuracy_m=accuracy_m, t=T0 + t)


def feed(fixes, corridor, state=None, now_lag=2.0):
    """Observe fixes one by one, each delivered shortly after it was taken."""
    state = state or MonitorState.start(T0)
    alerts = []
    for fix in fixes:
        state, new = observe(state, fix, corridor=corridor, config=CONFIG, now=fix.t + now_lag)
        alerts += new
    return state, alerts


def true_offsets(corridor, walk):
    """Return walk times and the true distance of the walker from the route at each fix."""
    ts = np.array([fix.t for _, fix in walk])
    offs = np.array([corridor.match_xy(x, y)[1] for x, y in coords_to_metres([t for t, _ in walk])])
    return ts, offs


def leaving_times(ts, offs, level):
    """Return (departure, exit) walk times: leaving the route, then passing ``level`` metres."""
    k = int(np.argmax(offs > 0.5))
    speed = (offs[k + 1] - offs[k]) / (ts[k + 1] - ts[k])  # the way out is a straight line
    departure = ts[k] - offs[k] / speed
    return departure, departure + level / speed


def deviation_delays(n, speed_mps, seed0):
    """Return detection delays (from leaving the route, from leaving the corridor) over n walks."""
    from_departure, from_exit = [], []
    for i in range(n):
        rng = np.random.default_rng(seed0 + i)
        route = zigzag_route(rng)
        deviation = pick_deviation(route, seed=i, speed_mps=speed_mps)
        if deviation is None:
            continue
        corridor = RouteCorridor.from_coords(route)
        walk = simulate_walk(route, seed=i, sigma_m=rng.uniform(10, 15), start_t=T0,
                             deviation=deviation)
        batches = deliver_in_batches([f for _, f in walk], seed=i, batch_s=10, late_prob=0.0)
        alerts = [a for _, a in replay(corridor, batches, config=CONFIG, start_t=T0).alerts
                  if a.kind == "deviated"]
        ts, offs = true_offsets(corridor, walk)
        assert alerts, f"walk {i}: a 150 m deviation was never detected"
        departure, exit_ = leaving_times(ts, offs, CONFIG.corridor_min_m)
        from_departure.append(alerts[0].t - departure)
        from_exit.append(alerts[0].t - exit_)
    return np.array(from_departure), np.array(from_exit)


def test_honest_noisy_walks_never_deviate_and_always_arrive():
    late_seen, arrived_at = 0, []
    for i in range(200):
        rng = np.random.default_rng(1000 + i)
        route = zigzag_route(rng)
        corridor = RouteCorridor.from_coords(route)
        walk = simulate_walk(route, seed=i, sigma_m=rng.uniform(10, 15), outlier_rate=0.02,
                             outlier_m=50.0, start_t=T0)
        batches = deliver_in_batches([f for _, f in walk], seed=i, late_prob=0.1,
                                     late_s=(20.0, 90.0), dup_prob=0.05)
        late_seen += sum(f.t < now - CONFIG.stale_s for now, batch in batches for f in batch)
        result = replay(corridor, batches, config=CONFIG, start_t=T0)
        assert result.kinds() == ["arrived"], f"walk {i}: {result.kinds()}"
        true = dict((fix.t, tl) for tl, fix in walk)[result.alerts[0][1].t]
        arrived_at.append(float(np.hypot(*(np.subtract(to_metres(*true), corridor.end_xy)))))
    # arrival may fire a few steps early (noise, the accuracy allowance), never a block early
    assert np.median(arrived_at) <= CONFIG.arrival_radius_m and max(arrived_at) <= 100.0
    assert late_seen > 100  # the late path really was exercised


def test_a_150_m_deviation_at_vehicle_speed_is_detected_within_45_s_of_leaving_the_route():
    from_departure, _ = deviation_delays(40, speed_mps=8.0, seed0=5000)
    assert len(from_departure) >= 35
    assert from_departure.max() <= 45.0


def test_a_150_m_walked_deviation_is_detected_soon_after_leaving_the_corridor():
    # at walking pace the walker is inside the 50 m corridor for the first ~40 s: the clock
    # that can be held to 45 s starts when they are truly beyond it
    _, from_exit = deviation_delays(40, speed_mps=None, seed0=6000)
    assert np.percentile(from_exit, 90) <= 45.0
    assert from_exit.max() <= 60.0


def test_a_single_outlier_then_back_does_not_deviate():
    corridor = RouteCorridor.from_coords(straight_route())
    fixes = [fix_at(10 * k, 0.0, 5 * k) for k in range(20)]
    fixes[8] = fix_at(80, 75.0, 40)
    _, alerts = feed(fixes, corridor)
    assert not alerts


def test_sustained_off_corridor_fixes_deviate_once():
    corridor = RouteCorridor.from_coords(straight_route())
    fixes = [fix_at(10 * k, 0.0, 5 * k) for k in range(5)]
    fixes += [fix_at(50, 80.0, 25 + 5 * k) for k in range(10)]
    _, alerts = feed(fixes, corridor)
    assert [a.kind for a in alerts] == ["deviated"]
    assert alerts[0].t == T0 + 45  # five fixes spanning 20 s


def test_a_walker_who_answered_fine_off_the_route_is_asked_again_only_back_on_it_or_after_the_snooze():
    """A detour the walker confirmed is not a new deviation every 15 s; a new departure after coming back is."""
    corridor = RouteCorridor.from_coords(straight_route())
    on = [fix_at(10 * k, 0.0, 5 * k) for k in range(5)]
    state, alerts = feed(on + [fix_at(50, 80.0, 25 + 5 * k) for k in range(5)], corridor)
    assert [a.kind for a in alerts] == ["deviated"]
    state = acknowledge(state, now=T0 + 50, config=CONFIG, kinds=["deviated"])
    detour = [fix_at(50 + 5 * k, 80.0, 55 + 5 * k) for k in range(60)]  # five more minutes off the route
    state, alerts = feed(detour, corridor, state)
    assert alerts == []
    state, alerts = feed([fix_at(360 + 10 * k, 0.0, 360 + 5 * k) for k in range(3)], corridor, state)
    assert alerts == [] and state.deviation_after is None  # back on the route
    state, alerts = feed([fix_at(400, 80.0, 380 + 5 * k) for k in range(6)], corridor, state)
    assert [a.kind for a in alerts] == ["deviated"]


def test_an_excused_detour_is_asked_about_again_once_the_snooze_is_over():
    corridor = RouteCorridor.from_coords(straight_route())
    state, _ = feed([fix_at(10 * k, 0.0, 5 * k) for k in range(5)] +
                    [fix_at(50, 80.0, 25 + 5 * k) for k in range(5)], corridor)
    state = acknowledge(state, now=T0 + 50, config=CONFIG, kinds=["deviated"])
    far_off = [fix_at(50, 80.0, 55 + 10 * k) for k in range(70)]  # still off the route 11 minutes later
    _, alerts = feed(far_off, corridor, state)
    deviated = [a for a in alerts if a.kind == "deviated"]  # standing still that long is also 'stalled'
    assert len(deviated) == 1 and deviated[0].t >= T0 + 50 + CONFIG.deviation_snooze_s


def test_a_route_that_passes_by_the_door_before_going_round_the_block_does_not_arrive_half_way():
    """East 300 m, north 45 m, back west 100 m to the entrance: the first leg passes 45 m from it."""
    ox, oy = to_metres(*GWANAK)
    lon, lat = to_lonlat([ox, ox + 300, ox + 300, ox + 200], [oy, oy, oy + 45, oy + 45])
    corridor = RouteCorridor.from_coords(list(zip(lon, lat)))
    along_first_leg = [fix_at(7 * k, 0.0, 5 * k, accuracy_m=8) for k in range(43)]  # 1.4 m/s, 0 to 294 m
    state, alerts = feed(along_first_leg, corridor)
    assert alerts == []
    round_the_block = [fix_at(300, 7 * k, 215 + 5 * k, accuracy_m=8) for k in range(1, 7)]
    round_the_block += [fix_at(300 - 7 * k, 45, 245 + 5 * k, accuracy_m=8) for k in range(1, 16)]
    _, alerts = feed(round_the_block, corridor, state)
    assert [a.kind for a in alerts] == ["arrived"] and alerts[0].t >= T0 + 245 + 5 * 8  # within ~50 m of the end


def test_a_walker_who_cuts_across_to_the_door_still_arrives():
    """East 400 m then north 300 m; the walker takes the diagonal from half way along the first leg."""
    ox, oy = to_metres(*GWANAK)
    lon, lat = to_lonlat([ox, ox + 400, ox + 400], [oy, oy, oy + 300])
    corridor = RouteCorridor.from_coords(list(zip(lon, lat)))
    walk = [fix_at(7 * k, 0.0, 5 * k, accuracy_m=8) for k in range(29)]  # to 196 m along the first leg
    walk += [fix_at(196 + 6.8 * k, 10 * k, 145 + 5 * k, accuracy_m=8) for k in range(1, 34)]  # the diagonal
    walk += [fix_at(400, 300, 315 + 5 * k, accuracy_m=8) for k in range(15)]  # at the door
    _, alerts = feed(walk, corridor)
    assert "arrived" in [a.kind for a in alerts]


def test_inaccurate_fixes_widen_the_corridor_and_useless_ones_never_count():
    corridor = RouteCorridor.from_coords(straight_route())
    widened = [fix_at(50, 80.0, 5 * k, accuracy_m=45.0) for k in range(10)]
    useless = [fix_at(50, 300.0, 50 + 5 * k, accuracy_m=150.0) for k in range(10)]
    _, alerts = feed(widened + useless, corridor)
    assert not alerts


UNPLACEABLE = [(-7.5, -144.5), (-7.0, 35.0), (-7.0, 38.0), (-7.0, 41.0)]  # valid WGS84, infinite in EPSG:5179


def test_a_fix_that_epsg_5179_cannot_place_proves_the_phone_alive_and_nothing_more():
    corridor = RouteCorridor.from_coords(straight_route())
    state, _ = feed([fix_at(10 * k, 0.0, 5 * k) for k in range(3)], corridor)
    off = [fix_at(50, 80.0, 15 + 5 * k) for k in range(2)]  # an off-route streak under way
    state, _ = feed(off, corridor, state)
    nowhere = [Fix(lat=lat, lon=lon, accuracy_m=8.0, t=T0 + 30 + 5 * k) for k, (lat, lon) in enumerate(UNPLACEABLE)]
    after, alerts = feed(nowhere, corridor, replace(state, raised=("signal_lost",)))
    assert alerts == [] and after.last_t == nowhere[-1].t and after.raised == ()
    assert (after.off_count, after.off_since, after.last_lat, after.best_progress_m) == (
        state.off_count, state.off_since, state.last_lat, state.best_progress_m)
    json.dumps(after.to_dict(), allow_nan=False)  # what PostgreSQL's JSON takes


def test_a_late_fix_that_cannot_be_placed_does_not_end_an_off_route_streak():
    corridor = RouteCorridor.from_coords(straight_route())
    state, _ = feed([fix_at(10 * k, 0.0, 5 * k) for k in range(3)] + [fix_at(50, 80.0, 15 + 5 * k) for k in range(2)],
                    corridor)
    for lat, lon in UNPLACEABLE[:2]:  # two "inside" fixes would end the streak
        state, alerts = observe(state, Fix(lat=lat, lon=lon, accuracy_m=8.0, t=T0 + 16), corridor=corridor,
                                config=CONFIG, now=T0 + 30)
        assert not alerts
    assert (state.off_count, state.back_count) == (2, 0)


def test_late_fixes_never_raise_an_alert():
    corridor = RouteCorridor.from_coords(straight_route())
    state, _ = feed([fix_at(10 * k, 0.0, 5 * k) for k in range(40, 45)], corridor)
    off_route_past = [fix_at(100, 200.0, 5 * k) for k in range(20)]
    for fix in reversed(off_route_past):
        state, alerts = observe(state, fix, corridor=corridor, config=CONFIG, now=T0 + 230)
        assert not alerts
    stale = [fix_at(460, 200.0, 230 + 5 * k) for k in range(10)]
    for fix in stale:
        state, alerts = observe(state, fix, corridor=corridor, config=CONFIG, now=T0 + 400)
        assert not alerts
    assert state.off_count == 0 and state.last_t == T0 + 220


def test_replayed_alerts_always_come_from_fresh_fixes():
    for i in range(30):
        rng = np.random.default_rng(9000 + i)
        route = zigzag_route(rng)
        walk = simulate_walk(route, seed=i, start_t=T0, deviation=pick_deviation(route, seed=i))
        batches = deliver_in_batches([f for _, f in walk], seed=i, late_prob=0.4)
        result = replay(RouteCorridor.from_coords(route), batches, config=CONFIG, start_t=T0)
        for now, alert in result.alerts:
            assert alert.t >= now - CONFIG.stale_s


def test_dedupe_and_order_drops_duplicates_sorts_and_splits_late():
    fixes = [fix_at(0, 0, t) for t in (30, 10, 20, 10, 70, 5)]
    fresh, late = dedupe_and_order(fixes, last_t=T0 + 5, now=T0 + 75)
    assert [f.t - T0 for f in fresh] == [20, 30, 70]
    assert [f.t - T0 for f in late] == [5, 10]


def test_future_fixes_are_ignored():
    corridor = RouteCorridor.from_coords(straight_route())
    state, _ = feed([fix_at(0, 0.0, 0)], corridor)
    ahead = fix_at(0, 0.0, 3600)
    new, alerts = observe(state, ahead, corridor=corridor, config=CONFIG, now=T0 + 10)
    assert new == state and not alerts


def test_stalled_fires_after_the_configured_time_when_stopped_mid_route():
    delays = []
    for i in range(30):
        rng = np.random.default_rng(7000 + i)
        route = zigzag_route(rng)
        stop = Stop(at_fraction=rng.uniform(0.3, 0.7), duration_s=900.0)
        walk = simulate_walk(route, seed=i, sigma_m=rng.uniform(10, 15), start_t=T0, stop=stop)
        batches = deliver_in_batches([f for _, f in walk], seed=i, late_prob=0.0)
        result = replay(RouteCorridor.from_coords(route), batches, config=CONFIG, start_t=T0)
        stalled = [a for _, a in result.alerts if a.kind == "stalled"]
        assert len(stalled) == 1 and "deviated" not in result.kinds()
        delays.append(stalled[0].t - stop_started(walk))
    # the clock starts at the last real progress, up to one progress step before the stop;
    # jitter may fake one more step after it (docs/monitoring.md has the measured spread)
    assert min(delays) >= CONFIG.stall_s - 60.0
    assert np.median(delays) <= CONFIG.stall_s + 60.0 and max(delays) <= CONFIG.stall_s + 400.0


def stop_started(walk):
    """Return the walk time at which the walker's longest stand-still began."""
    true = np.array([tl for tl, _ in walk])
    still = np.r_[np.all(np.abs(np.diff(true, axis=0)) < 1e-12, axis=1), False]
    starts, best, run = 0, (0, 0), 0
    for k, s in enumerate(still):
        run, starts = (run + 1, starts) if s else (0, k + 1)
        best = max(best, (run, starts))
    return walk[best[1]][1].t


def test_no_stall_when_stopping_at_the_destination():
    for i in range(10):
        route = zigzag_route(np.random.default_rng(8000 + i))
        walk = simulate_walk(route, seed=i, start_t=T0, dwell_s=1200.0)
        corridor = RouteCorridor.from_coords(route)
        state, alerts = feed([f for _, f in walk], corridor)
        assert [a.kind for a in alerts] == ["arrived"]


def test_stall_is_exactly_timed_without_noise():
    corridor = RouteCorridor.from_coords(straight_route())
    walking = [fix_at(10 * k, 0.0, 5 * k) for k in range(51)]
    standing = [fix_at(500, 0.0, 255 + 5 * k) for k in range(100)]
    _, alerts = feed(walking + standing, corridor)
    assert [a.kind for a in alerts] == ["stalled"]
    # progress counts in 30 m steps (15 s here) confirmed by two fixes; the stop is at 250 s
    assert 250 - 15 + CONFIG.stall_s <= alerts[0].t - T0 <= 255 + CONFIG.stall_s


def test_overdue_fires_once_after_grace_and_a_check_in_snoozes_it():
    state, expected = MonitorState.start(T0), T0 + 900
    timers = dict(expected_arrival=expected, config=CONFIG)
    state, alerts = check_timers(state, now=expected + CONFIG.overdue_grace_s - 1, **timers)
    assert [a.kind for a in alerts] == ["signal_lost"]
    state, alerts = check_timers(state, now=expected + CONFIG.overdue_grace_s, **timers)
    assert [a.kind for a in alerts] == ["overdue"]
    assert check_timers(state, now=expected + 2000, **timers)[1] == []
    state = acknowledge(state, now=expected + 2000, config=CONFIG, kinds=["overdue"])
    assert check_timers(state, now=expected + 2000 + CONFIG.overdue_grace_s - 1, **timers)[1] == []
    assert [a.kind for a in check_timers(state, now=expected + 2600, **timers)[1]] == ["overdue"]


def test_signal_lost_fires_after_silence_and_rearms_on_a_fresh_fix():
    corridor = RouteCorridor.from_coords(straight_route())
    state, _ = feed([fix_at(0, 0.0, 0)], corridor)
    timers = dict(expected_arrival=None, config=CONFIG)
    assert check_timers(state, now=T0 + CONFIG.signal_lost_s - 1, **timers)[1] == []
    state, alerts = check_timers(state, now=T0 + CONFIG.signal_lost_s, **timers)
    assert [(a.kind, a.detail["silent_s"]) for a in alerts] == [
        ("signal_lost", CONFIG.signal_lost_s)]
    assert check_timers(state, now=T0 + 500, **timers)[1] == []
    state, _ = feed([fix_at(10, 0.0, 600)], corridor, state)
    assert "signal_lost" not in state.raised
    assert [a.kind for a in check_timers(state, now=T0 + 720, **timers)[1]] == ["signal_lost"]


def test_nothing_is_raised_after_arrival():
    corridor = RouteCorridor.from_coords(straight_route())
    state, alerts = feed([fix_at(1000, 0.0, 5 * k) for k in range(3)], corridor)
    assert [a.kind for a in alerts] == ["arrived"]
    state, alerts = feed([fix_at(500, 300.0, 20 + 5 * k) for k in range(20)], corridor, state)
    assert not alerts
    assert check_timers(state, now=T0 + 1e5, expected_arrival=T0, config=CONFIG)[1] == []


def test_state_round_trips_through_json():
    route = zigzag_route(np.random.default_rng(3))
    walk = simulate_walk(route, seed=3, start_t=T0, deviation=pick_deviation(route, seed=3))
    corridor = RouteCorridor.from_coords(route)
    state = MonitorState.start(T0)
    for _, fix in walk[:200]:
        state, _ = observe(state, fix, corridor=corridor, config=CONFIG, now=fix.t)
        assert MonitorState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_corridor_measures_offset_progress_and_remaining_in_metres():
    ox, oy = to_metres(*GWANAK)
    lon, lat = to_lonlat([ox, ox + 300, ox + 300], [oy, oy, oy + 400])
    corridor = RouteCorridor.from_coords(list(zip(lon, lat)))
    x, y = to_lonlat(ox + 320, oy + 100)
    fix = Fix(lat=float(y), lon=float(x), accuracy_m=10.0, t=T0)
    assert corridor.length_m == pytest.approx(700.0, abs=0.01)
    assert corridor.offset_m(fix) == pytest.approx(20.0, abs=0.01)
    assert corridor.progress_m(fix) == pytest.approx(400.0, abs=0.01)
    assert corridor.remaining_m(fix) == pytest.approx(300.0, abs=0.01)
    assert corridor.line.length == pytest.approx(700.0, abs=0.01)


def test_uploads_prove_the_phone_alive_whatever_its_clock_says():
    """A phone 90 s slow: every fix is late, yet the uploads keep signal_lost away; silence still raises it."""
    corridor = RouteCorridor.from_coords(straight_route())
    state, timers = MonitorState.start(T0), {"expected_arrival": T0 + 3600, "config": CONFIG}
    for k in range(1, 40):  # one upload every 5 s, of a fix the slow clock dates 90 s ago
        fix = fix_at(k * 6.0, 0.0, k * 5.0 - 90.0)
        state = receive(state, [fix.t], now=T0 + k * 5.0)
        state, alerts = observe(state, fix, corridor=corridor, config=CONFIG, now=T0 + k * 5.0)
        assert alerts == [] and check_timers(state, now=T0 + k * 5.0 + 1, **timers)[1] == []
    assert state.last_t is None and last_heard(state) == T0 + 195.0
    assert check_timers(state, now=T0 + 195.0 + CONFIG.signal_lost_s - 1, **timers)[1] == []
    state, alerts = check_timers(state, now=T0 + 195.0 + CONFIG.signal_lost_s, **timers)
    assert [a.kind for a in alerts] == ["signal_lost"]
    state = receive(state, [T0 + 200.0], now=T0 + 400.0)  # an upload clears it, so it can fire again
    assert "signal_lost" not in state.raised


def test_a_consistent_clock_lag_is_corrected_once_confirmed_and_an_offline_backlog_is_not():
    state = MonitorState.start(T0)
    state = receive(state, [T0 - 95.0, T0 - 91.0], now=T0 + 0.0)
    assert state.min_lag_s == 91.0 and clock_offset(state, CONFIG) == 0.0  # one upload could be a backlog
    state = receive(state, [T0 - 90.0 + 20.0], now=T0 + 20.5)
    assert clock_offset(state, CONFIG) == 0.0  # not yet heard for clock_confirm_s
    state = receive(state, [T0 - 90.0 + 35.0], now=T0 + 35.4)
    assert clock_offset(state, CONFIG) == pytest.approx(90.4)
    state = receive(state, [T0 - 200.0], now=T0 + 50.0)  # an old fix uploaded late never raises the offset
    assert clock_offset(state, CONFIG) == pytest.approx(90.4)

    honest = MonitorState.start(T0)
    honest = receive(honest, [T0 - 150.0], now=T0)  # offline at first, then live: the minimum comes down
    honest = receive(honest, [T0 + 38.0], now=T0 + 40.0)
    assert clock_offset(honest, CONFIG) == 0.0


def test_a_walker_whose_phone_is_90_s_slow_still_arrives_and_deviates():
    corridor = RouteCorridor.from_coords(straight_route())
    arrived = slow_walk(corridor, [(x, 0.0) for x in range(0, 1001, 8)] + [(1000.0, 0.0)] * 3)
    assert [a.kind for a in arrived] == ["arrived"]
    away = slow_walk(corridor, [(x, 0.0) for x in range(0, 400, 8)] + [(400.0, 150.0)] * 8)
    assert [a.kind for a in away] == ["deviated"]


def slow_walk(corridor, points, lag_s=90.0, every_s=5.0):
    """Walk the points, one fix every `every_s`, uploaded at once by a phone whose clock is `lag_s` slow, the
    way the service folds them: receive, correct by the clock offset, observe."""
    state, alerts = MonitorState.start(T0), []
    for k, (along, side) in enumerate(points, start=1):
        now = T0 + k * every_s
        fix = fix_at(along, side, k * every_s - lag_s - 0.3, accuracy_m=8.0)
        state = receive(state, [fix.t], now=now)
        fix = Fix(fix.lat, fix.lon, fix.accuracy_m, fix.t + clock_offset(state, CONFIG))
        state, new = observe(state, fix, corridor=corridor, config=CONFIG, now=now)
        alerts += new
    return alerts
