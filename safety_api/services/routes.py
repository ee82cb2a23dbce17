"""Safe routes: the street graph held in memory per process, reloaded when its data version changes."""
import time
from datetime import datetime

import numpy as np
import shapely
from sqlalchemy import text

from geo.graph import StreetGraph
from geo.projection import haversine_m
from geo.routing import OffNetwork, RouteEngine, RouteEngineCache, RoutingError, Unreachable
from safety_api.clock import to_seoul
from safety_api.errors import Invalid, Unavailable
from safety_api.services.geodata import current_version

# Apart as the crow flies: a walk home of several hours. Seoul is about 30 km across; farther pairs are not walks.
MAX_WALK_CHORD_M = 15_000
_cache = {"engines": None, "checked_at": 0.0}
NOT_LOADED = "The street network is not loaded yet."


def engine(session, *, settings: dict) -> RouteEngine:
    """This process's engine; checks the data version at most every few seconds. While a changed network is
    read, the other requests keep routing on the graph already held (RouteEngineCache)."""
    engines = _cache["engines"]
    if engines is None:
        engines = _cache["engines"] = RouteEngineCache(
            max_detour=settings["max_detour"], snap_max_m=settings["snap_max_m"],
            walking_speed_mps=settings["walking_speed_mps"])
    if engines.engine is not None and time.monotonic() - _cache["checked_at"] < settings["version_check_s"]:
        return engines.engine
    version = current_version(session)
    if version is None:
        raise Unavailable(NOT_LOADED)
    held = engines.get(version, lambda: load_graph(session, version))
    _cache["checked_at"] = time.monotonic()
    return held


def load_graph(session, version: str) -> StreetGraph:
    """Read the street edges into the compact in-memory graph."""
    rows = session.execute(text(
        "SELECT id, source, target, length_m, covered_m, cctv_weight, bell_count, light_count, safe_house_near,"
        " ST_AsBinary(geom) AS wkb FROM street_edges ORDER BY id")).all()
    if not rows:  # a version an older release recorded for an empty network (geodata.bump_version records none)
        raise Unavailable(NOT_LOADED)
    cols = list(zip(*rows))
    lines = shapely.from_wkb(np.array(cols[9], dtype=object))
    coords, index = shapely.get_coordinates(lines, return_index=True)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(index, minlength=len(lines)))])
    return StreetGraph.from_columns(
        version=version, edge_id=cols[0], source=cols[1], target=cols[2], length_m=cols[3], covered_m=cols[4],
        cctv_weight=cols[5], bell_count=cols[6], light_count=cols[7], safe_house_near=cols[8],
        lonlat=coords, offsets=offsets)


def is_night(moment: datetime, night_hours: tuple[int, int]) -> bool:
    """Whether Seoul's wall clock is in the night window (e.g. 20 to 6)."""
    start, end = night_hours
    hour = to_seoul(moment).hour
    return hour >= start or hour < end if start > end else start <= hour < end


def plan_route(session, *, settings: dict, origin: tuple[float, float], destination: tuple[float, float],
               profile: str, night: bool):
    """A route between two (lat, lon) points; a point off the network, an unreachable pair or a pair farther
    apart than a walk is a 422."""
    chord_m = haversine_m(origin[1], origin[0], destination[1], destination[0])
    if chord_m > MAX_WALK_CHORD_M:  # a cross-city search costs the process that serves SOS half a second of CPU
        raise Invalid(f"These points are {chord_m / 1000:.1f} km apart; a walking route is planned for at most "
                      f"{MAX_WALK_CHORD_M / 1000:.0f} km.",
                      errors=[{"field": "to", "message": "Farther from the start than a walk."}])
    try:
        return engine(session, settings=settings).route(
            (origin[1], origin[0]), (destination[1], destination[0]), profile=profile, night=night)
    except OffNetwork as off:
        field = "from" if off.which == "from" else "to"
        how_far = f"{off.distance_m:.0f} m" if off.distance_m != float("inf") else "far"
        raise Invalid(f"The {field} point is {how_far} from the nearest walkable street.",
                      errors=[{"field": field, "message": "Too far from the street network."}]) from None
    except Unreachable:
        raise Invalid("No walkable route connects these points.",
                      errors=[{"field": "to", "message": "Unreachable from the start."}]) from None
    except RoutingError as exc:
        raise Invalid(str(exc)) from None


def as_feature(route) -> dict:
    """The GeoJSON Feature of a route, with the properties of API.md."""
    props = {key: _rounded(getattr(route, key)) for key in (
        "profile", "distance_m", "duration_s", "cctv_count", "bell_count", "covered_ratio", "safety_score",
        "shortest_distance_m", "detour_ratio")}
    return {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [list(c) for c in route.coords]},
            "properties": props}


def _rounded(value):
    """Metres to the decimetre, ratios to three places: more digits would be noise."""
    return round(value, 3) if isinstance(value, float) else value
