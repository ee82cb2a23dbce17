"""A planned route as a metric polyline: distance from it, progress along it, what remains."""
import numpy as np
from shapely.geometry import LineString

from geo.projection import coords_to_metres, to_metres


class RouteCorridor:
    """A planned route as a metric polyline, answering offset, progress and remaining queries."""

    def __init__(self, xy):
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        keep = np.r_[True, np.any(np.diff(xy, axis=0) != 0, axis=1)]
        self.xy = xy[keep]
        if len(self.xy) < 2:
            raise ValueError("a route needs at least two distinct points")
        d = np.diff(self.xy, axis=0)
        # separate contiguous columns: match_xy runs once or twice per fix and must be cheap
        self._ax, self._ay = self.xy[:-1, 0].copy(), self.xy[:-1, 1].copy()
        self._dx, self._dy = d[:, 0].copy(), d[:, 1].copy()
        self._len = np.hypot(self._dx, self._dy)
        self._len2 = self._len ** 2
        self.cum = np.r_[0.0, np.cumsum(self._len)]
        self.length_m = float(self.cum[-1])
        self.end_xy = self.xy[-1]

    @classmethod
    def from_coords(cls, coords_lonlat):
        """Build the corridor from (lon, lat) pairs, projecting them to EPSG:5179."""
        return cls(coords_to_metres(coords_lonlat))

    @property
    def line(self):
        """Return the route as a Shapely LineString in EPSG:5179 metres."""
        return LineString(self.xy)

    @staticmethod
    def to_xy(fix):
        """Project a fix to EPSG:5179 metres."""
        x, y = to_metres(fix.lon, fix.lat)
        return float(x), float(y)

    def match_xy(self, x, y, lo=None, hi=None):
        """Return (progress_m, offset_m) of the nearest route point with progress in [lo, hi]."""
        if lo is None and hi is None:
            return self._nearest(x, y, 0, len(self._len), None, None)
        lo = 0.0 if lo is None else max(lo, 0.0)
        hi = self.length_m if hi is None else min(hi, self.length_m)
        if lo > hi:
            return self._nearest(x, y, 0, len(self._len), None, None)
        n = len(self._len)
        first = min(max(int(self.cum.searchsorted(lo, side="right")) - 1, 0), n - 1)
        last = max(min(int(self.cum.searchsorted(hi, side="left")), n), first + 1)
        return self._nearest(x, y, first, last, lo, hi)

    def _nearest(self, x, y, first, last, lo, hi):
        """Project onto segments [first, last), clamped to progress [lo, hi] when given."""
        px, py = x - self._ax[first:last], y - self._ay[first:last]
        dx, dy = self._dx[first:last], self._dy[first:last]
        t = np.minimum(np.maximum((px * dx + py * dy) / self._len2[first:last], 0.0), 1.0)
        start, seg = self.cum[first:last], self._len[first:last]
        if lo is not None:  # only the first and last segments can be cut by the window
            t = np.minimum(np.maximum(t, (lo - start) / seg), (hi - start) / seg)
        dist = np.hypot(px - t * dx, py - t * dy)
        i = int(dist.argmin())
        return float(start[i] + t[i] * seg[i]), float(dist[i])

    def offset_m(self, fix):
        """Return the distance in metres from the fix to the nearest point of the route."""
        return self.match_xy(*self.to_xy(fix))[1]

    def progress_m(self, fix):
        """Return the distance along the route of the fix's projection onto it."""
        return self.match_xy(*self.to_xy(fix))[0]

    def remaining_m(self, fix):
        """Return the distance along the route from the fix's projection to the destination."""
        return self.length_m - self.progress_m(fix)

    def end_distance_m(self, fix):
        """Return the straight-line distance in metres from the fix to the destination."""
        x, y = self.to_xy(fix)
        return float(np.hypot(x - self.end_xy[0], y - self.end_xy[1]))
