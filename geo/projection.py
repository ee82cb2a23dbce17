"""WGS84 <-> Korea 2000 / Unified CS (EPSG:5179), the metric plane for per-object math."""
from functools import lru_cache

import numpy as np
from pyproj import Transformer

WGS84 = 4326
KOREA_METRIC = 5179


@lru_cache(maxsize=None)
def _forward() -> Transformer:
    return Transformer.from_crs(WGS84, KOREA_METRIC, always_xy=True)


@lru_cache(maxsize=None)
def _inverse() -> Transformer:
    return Transformer.from_crs(KOREA_METRIC, WGS84, always_xy=True)


def to_metres(lon, lat):
    """Project lon/lat (scalars or arrays) to EPSG:5179 x/y in metres."""
    return _forward().transform(lon, lat)


def to_lonlat(x, y):
    """Project EPSG:5179 x/y (scalars or arrays) back to lon/lat."""
    return _inverse().transform(x, y)


def coords_to_metres(coords):
    """Project a sequence of (lon, lat) pairs to an (n, 2) array of metres."""
    arr = np.asarray(coords, dtype=float).reshape(-1, 2)
    x, y = to_metres(arr[:, 0], arr[:, 1])
    return np.column_stack([x, y])


def haversine_m(lon1, lat1, lon2, lat2):
    """Great-circle distance in metres; accurate enough for snapping and jitter checks."""
    r = 6371008.8
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.subtract(lon2, lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * r * np.arcsin(np.sqrt(a))
