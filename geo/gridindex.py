"""A uniform cell grid over planar points, stored as sorted items plus per-cell start offsets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def gather_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, e)`` for every pair without a Python loop."""
    counts = np.maximum(np.asarray(ends, np.int64) - starts, 0)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64)
    # Each output position is its range start plus its rank inside the range.
    first = np.cumsum(counts) - counts
    return np.repeat(starts - first, counts) + np.arange(total)


@dataclass(frozen=True, eq=False)
class CellGrid:
    """Square cells of ``size`` metres from (0, 0); ``starts[c]:starts[c+1]`` are cell c's items."""

    size: float
    nx: int
    ny: int
    starts: np.ndarray

    @classmethod
    def build(cls, x: np.ndarray, y: np.ndarray, size: float, extent: tuple[float, float]):
        """Sort points into cells; return the grid and the stable order that sorts them."""
        nx = int(extent[0] // size) + 1
        ny = int(extent[1] // size) + 1
        cells = cls._cells(x, y, size, nx, ny)
        order = np.argsort(cells, kind="stable")
        counts = np.bincount(cells, minlength=nx * ny)
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(size, nx, ny, starts), order

    @staticmethod
    def _cells(x, y, size, nx, ny) -> np.ndarray:
        cx = np.clip((np.asarray(x) // size).astype(np.int64), 0, nx - 1)
        cy = np.clip((np.asarray(y) // size).astype(np.int64), 0, ny - 1)
        return cy * nx + cx

    def positions_in_box(self, xmin: float, ymin: float, xmax: float, ymax: float) -> np.ndarray:
        """Return the sorted positions of the items whose cells meet the box."""
        span = self._span(xmin, ymin, xmax, ymax)
        if span is None:
            return np.empty(0, np.int64)
        rows, x0, x1 = span
        return gather_ranges(self.starts[rows + x0], self.starts[rows + x1 + 1])

    def ranges_in_box(self, xmin: float, ymin: float, xmax: float, ymax: float) -> list[tuple[int, int]]:
        """The same positions as (start, end) ranges of plain ints, cheaper for a box of a few cells."""
        span = self._span(xmin, ymin, xmax, ymax)
        if span is None:
            return []
        rows, x0, x1 = span
        return list(zip(self.starts[rows + x0].tolist(), self.starts[rows + x1 + 1].tolist()))

    def _span(self, xmin, ymin, xmax, ymax):
        """First cell of each grid row the box meets, and the box's first and last column."""
        if xmax < 0 or ymax < 0 or xmin >= self.nx * self.size or ymin >= self.ny * self.size:
            return None
        x0, x1 = (self._clamp(v, self.nx) for v in (xmin, xmax))
        y0, y1 = (self._clamp(v, self.ny) for v in (ymin, ymax))
        # Cells of one grid row are consecutive, so each row of the box is a single range.
        return np.arange(y0 * self.nx, (y1 + 1) * self.nx, self.nx), x0, x1

    def _clamp(self, v: float, n: int) -> int:
        """Cell index of a coordinate, clamped to the grid (plain floats: numpy scalars cost more here)."""
        if v <= 0:
            return 0
        return n - 1 if v >= (n - 1) * self.size else int(v // self.size)

    def nbytes(self) -> int:
        """Bytes held by the grid's arrays."""
        return int(self.starts.nbytes)
