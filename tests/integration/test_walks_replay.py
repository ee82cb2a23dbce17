"""Replays of realistic walks along the real Gwanak street network, through the detectors and the
service's own decide and timer-chain rules, in process; one of them also through the database.

Routes come from the route engine between random points of the loaded network; fixes from
geo.walksim (GPS error sigma 10-15 m with drifting bias, 3 % outliers of 50 m, uploads batched every
15 s, 10 % of batches 30-150 s late, 5 % sent twice).
"""
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from flask import current_app
from sqlalchemy import select, text

from geo import track, walksim
from geo.projection import coords_to_metres, haversine_m, to_lonlat
from safety_api.api.geodata import route_settings
from safety_api.api.walks import walk_settings
from safety_api.clock import utcnow
from safety_api.errors import Invalid
from safety_api.models import Walk, WalkAlert
from safety_api.services import routes, walk_ingest, walk_monitor, walks
from tests.factories import create_user

HONEST_WALKS = 200
DEVIATION_WALKS = 60


class Planned:
    """A walk to replay: door to door, with its route, corridor and expected arrival."""

    def __init__(self, origin, destination, route, settings):
        self.origin, self.destination, self.route = origin, destination, route
        self.path = [origin, *route.coords, destination]
        self.corridor = walk_monitor.corridor_for(origin, route.coords, destination)
        self.expected_s = walks.expected_arrival_s(route.duration_s, settings)

    def crossing_prob(self) -> float:
        """walksim waits at 30 % of polyline vertices; real lights are at junctions, not at every bend."""
        junctions = max(len(self.route.edge_ids) - 1, 0)
        return 0.3 * junctions / max(len(self.path) - 2, 1)


def near(point, rng, max_m=30.0):
    """A door up to `max_m` from a point of the street network."""
    x, y = coords_to_metres([point])[0] + rng.uniform(-max_m, max_m, 2)
    lon, lat = to_lonlat(x, y)
    return float(lon), float(lat)


@pytest.fixture(scope="module")
def settings(app):
    return walk_settings(app.config)


@pytest.fixture(scope="module")
def config(settings):
    return track.MonitorConfig(**settings["monitor"])


@pytest.fixture(scope="module")
def planned(app, settings):
    """Walks of 300 m to 1.8 km (straight line) between random points of the Gwanak network."""
    from safety_api.extensions import db
    with app.app_context():
        ends = np.array(db.session.execute(text(
            "SELECT ST_X(ST_StartPoint(geom::geometry)), ST_Y(ST_StartPoint(geom::geometry)) FROM street_edges"
            " ORDER BY id")).all())
        rng, made = np.random.default_rng(2024), []
        while len(made) < HONEST_WALKS + DEVIATION_WALKS:
            a, b = ends[rng.integers(len(ends))], ends[rng.integers(len(ends))]
            if not 300 <= haversine_m(a[0], a[1], b[0], b[1]) <= 1800:
                continue
            origin, destination = near(a, rng), near(b, rng)
            try:
                route = routes.plan_route(db.session, settings=route_settings(app.config),
                                          origin=(origin[1], origin[0]), destination=(destination[1], destination[0]),
                                          profile="safe", night=bool(rng.integers(2)))
            except Invalid:  # a pair in two unconnected parts of the network
                continue
            made.append(Planned(origin, destination, route, settings))
        db.session.remove()
    return made


def service_replay(walk: Planned, batches, *, config, start_t=0.0, answer=False):
    """What the service does with these uploads: drop stored duplicates, fold fixes in, decide, and run
    the timer chain's links when they fall due (re-armed sooner when a fix brings a deadline closer).
    With `answer`, the walker checks in at each upload while a prompt is open."""
    state, seen, out, prompts = track.MonitorState.start(start_t), set(), [], set()
    expected = start_t + walk.expected_s

    def due(now):
        return walk_monitor.next_due(state, expected_arrival_s=expected, config=config, now_s=now)

    def decided(at, alerts):
        chosen = walk_monitor.decide(alerts, status="active", now_s=at, stale_s=config.stale_s)
        prompts.update(a.kind for a in chosen if a.kind != track.ARRIVED)
        out.extend((at, a) for a in chosen)

    link = due(start_t)
    for arrival, batch in batches:
        while link <= arrival:
            state, alerts = track.check_timers(state, now=link, expected_arrival=expected, config=config)
            decided(link, alerts)
            link = due(link)
        new = [f for f in batch if f.t not in seen]
        seen.update(f.t for f in new)
        state = track.receive(state, [f.t for f in new], now=arrival)  # as walk_monitor.fold does
        offset = track.clock_offset(state, config)
        fresh, late = track.dedupe_and_order([replace(f, t=f.t + offset) for f in new], last_t=state.last_t,
                                             now=arrival, stale_s=config.stale_s, max_future_s=config.max_future_s)
        found = []
        for fix in late + fresh:
            state, alerts = track.observe(state, fix, corridor=walk.corridor, config=config, now=arrival)
            found += alerts
        decided(arrival, found)
        if track.ARRIVED in state.raised:
            break
        if answer and prompts:
            state = track.acknowledge(state, now=arrival, config=config, kinds=sorted(prompts))
            prompts.clear()
        link = min(link, due(arrival))
    return out, state


def honest(walk: Planned, seed: int):
    rng = np.random.default_rng(seed)
    fixes = [f for _, f in walksim.simulate_walk(walk.path, seed=seed, sigma_m=rng.uniform(10, 15), outlier_rate=0.03,
                                                 outlier_m=50.0, crossing_prob=walk.crossing_prob())]
    return walksim.deliver_in_batches(fixes, seed=seed)


def test_honest_walks_on_gwanak_routes_never_deviate_and_always_arrive(planned, config):
    kinds = []
    for seed, walk in enumerate(planned[:HONEST_WALKS]):
        alerts, _ = service_replay(walk, honest(walk, seed), config=config)
        kinds.append([a.kind for _, a in alerts])
    assert sum("deviated" in k for k in kinds) == 0
    assert all(k[-1:] == ["arrived"] for k in kinds)
    assert sum(k != ["arrived"] for k in kinds) == 0  # nor stalled, overdue or signal_lost


def deviation_delays(planned, config, *, speed_mps=None, seed0=1000):
    """Per walk: (delay from leaving the route, delay from truly leaving the corridor), in walk time."""
    delays = []
    for i, walk in enumerate(planned[HONEST_WALKS:]):
        leave = walksim.pick_deviation(walk.path, seed=i, offset_m=150.0, speed_mps=speed_mps)
        if leave is None:
            continue
        sim = walksim.simulate_walk(walk.path, seed=seed0 + i, sigma_m=10 + 5 * (i % 6) / 5, outlier_rate=0.03,
                                    outlier_m=50.0, crossing_prob=walk.crossing_prob(), deviation=leave)
        truth = [(f.t, walk.corridor.offset_m(track.Fix(lat=lat, lon=lon, accuracy_m=0.0, t=f.t)), f.accuracy_m)
                 for (lon, lat), f in sim]
        departed = next(t for t, off, _ in truth if off > 1.0)  # the door-to-street legs are on the corridor
        exited = next(t for t, off, acc in truth if off > track.corridor_limit_m(config, acc))
        batches = walksim.deliver_in_batches([f for _, f in sim], seed=i, late_prob=0.0)
        alerts, _ = service_replay(walk, batches, config=config)
        raised = [a.t for _, a in alerts if a.kind == "deviated"]
        delays.append((raised[0] - departed if raised else np.inf, raised[0] - exited if raised else np.inf))
    return np.array(delays)


def test_a_walked_150_m_deviation_is_caught_soon_after_leaving_the_corridor(planned, config):
    delays = deviation_delays(planned, config)
    assert len(delays) >= DEVIATION_WALKS * 0.8 and np.isfinite(delays).all()  # every one detected
    from_exit = delays[:, 1]
    assert np.percentile(from_exit, 90) <= 45.0 and from_exit.max() <= 60.0


def test_a_150_m_deviation_at_vehicle_speed_is_caught_within_45_s_of_leaving_the_route(planned, config):
    delays = deviation_delays(planned, config, speed_mps=8.0)
    assert np.isfinite(delays).all() and delays[:, 0].max() <= 45.0


def test_a_replay_through_the_database_matches_the_in_process_replay(app, db, redis_client, planned, config, settings):
    """The service, the database and the timer chain together say what the pure replay says."""
    walk_plan, seed = planned[HONEST_WALKS], 77
    walker = create_user(db.session)
    start = utcnow().replace(microsecond=0) - timedelta(hours=2)
    walk, _ = walks.start(db.session, walker=walker, origin=walk_plan.origin[::-1],
                          destination=walk_plan.destination[::-1], profile="safe", guardian_ids=[],
                          route_settings=route_settings(current_app.config), settings=settings, now=start, night=True)
    walk_id, t0 = walk.id, start.timestamp()
    leave = walksim.pick_deviation(walk_plan.path, seed=seed, offset_m=150.0)
    sim = walksim.simulate_walk(walk_plan.path, seed=seed, sigma_m=12.0, start_t=t0, deviation=leave,
                                crossing_prob=walk_plan.crossing_prob())
    batches = walksim.deliver_in_batches([f for _, f in sim], seed=seed)
    for arrival, batch in batches:
        _run_due_links(db, walk_id, until=arrival)
        raw = [{"lat": f.lat, "lon": f.lon, "accuracy_m": f.accuracy_m, "t": f.t} for f in batch]
        walk_ingest.record_fixes(db.session, redis_client, user=walker, walk_id=walk_id, raw_fixes=raw,
                                  now=walk_monitor.moment(arrival))
        _answer_prompts(db, walker, walk_id, arrival)
        if db.session.get(Walk, walk_id).status != "active":
            break
    stored = db.session.execute(select(WalkAlert.kind, WalkAlert.t).order_by(WalkAlert.id)).all()
    alone, _ = service_replay(walk_plan, batches, config=config, start_t=t0, answer=True)
    assert [k for k, _ in stored] == [a.kind for _, a in alone] and "deviated" in [k for k, _ in stored]
    assert [t.timestamp() for _, t in stored] == pytest.approx([a.t for _, a in alone], abs=1e-3)
    assert db.session.get(Walk, walk_id).status == "arrived"


def _run_due_links(db, walk_id, *, until):
    while True:
        walk = db.session.get(Walk, walk_id)
        db.session.refresh(walk)
        if walk.status != "active" or walk.timer_due is None or walk.timer_due.timestamp() > until:
            db.session.rollback()
            return
        walk_monitor.run_timers(db.session, walk_id=walk_id, seq=walk.timer_seq, now=walk.timer_due)


def _answer_prompts(db, walker, walk_id, arrival):
    """The walker answers each prompt at once, so no SOS interrupts the replay."""
    if db.session.scalar(select(WalkAlert.id).where(WalkAlert.walk_id == walk_id, WalkAlert.status == "open")):
        walks.answer_checkin(db.session, user=walker, walk_id=walk_id, ok=True, now=walk_monitor.moment(arrival))


def test_decide_acts_only_on_the_present_of_an_active_walk_and_arrival_ends_the_rest(config):
    now = 1_000.0
    deviated, stale = track.Alert("deviated", now - 5, {}), track.Alert("stalled", now - 61, {})
    arrived = track.Alert("arrived", now - 1, {})
    assert walk_monitor.decide([deviated, stale, deviated], status="active", now_s=now, stale_s=60) == [deviated]
    assert walk_monitor.decide([deviated, arrived], status="active", now_s=now, stale_s=60) == [arrived]
    assert walk_monitor.decide([deviated], status="escalated", now_s=now, stale_s=60) == []


def test_the_next_timer_link_is_the_earliest_deadline_and_never_in_the_past(config):
    def due(state, expected, now):
        return walk_monitor.next_due(state, expected_arrival_s=expected, config=config, now_s=now)

    state, quiet = track.MonitorState.start(0.0), config.signal_lost_s
    assert due(state, 10_000, 0.0) == quiet
    heard = replace(state, last_t=500.0)
    assert due(heard, 10_000, 510.0) == 500 + quiet
    silent = replace(heard, raised=("signal_lost",))
    assert due(silent, 5_000, 900.0) == 5_000 + config.overdue_grace_s
    assert due(silent, 100, 900.0) == 901.0  # overdue is already due: at once, never in the past
    done = replace(silent, raised=("overdue", "signal_lost"))
    assert due(done, 100, 900.0) == 900 + quiet  # nothing left to wait for: a heartbeat
