"""Outlines of named regions, for drawing them over the image. Pure numpy.

A region's outline is traced row band by row band: each band contributes its leftmost and
rightmost pixel, so the polygon is exact for shapes that are one run per row (grid cells,
lung zones, which are a lung cut by rows) and the row-wise hull of anything else. A few
dozen bands keep the polygon small enough to send with the page and to redraw on hover.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

MAX_BANDS = 48

Point = tuple[float, float]


@dataclass(frozen=True)
class Outline:
    """A region's bounding box (x0, y0, x1, y1; x1 and y1 exclusive) and closed polygon."""

    box: tuple[int, int, int, int]
    polygon: list[Point]


def outline(mask: np.ndarray, max_bands: int = MAX_BANDS) -> Outline:
    """Return the outline of a non-empty 2D boolean mask, in pixel-edge coordinates
    (a mask of the single pixel (row 0, col 0) has the box (0, 0, 1, 1))."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D, got shape {mask.shape}")
    mask = np.asarray(mask, dtype=bool)
    row_has = np.flatnonzero(mask.any(axis=1))
    col_has = np.flatnonzero(mask.any(axis=0))
    if row_has.size == 0:
        raise ValueError("cannot outline an empty mask")
    top, bottom = int(row_has[0]), int(row_has[-1]) + 1
    box = (int(col_has[0]), top, int(col_has[-1]) + 1, bottom)
    edges = np.linspace(top, bottom, min(max_bands, bottom - top) + 1).round().astype(int)
    lefts: list[Point] = []
    rights: list[Point] = []
    for start, stop in pairwise(edges.tolist()):
        cols = np.flatnonzero(mask[start:stop].any(axis=0))
        if cols.size == 0:
            continue  # a gap between two parts: the outline bridges it
        middle = (start + stop) / 2
        lefts.append((float(cols[0]), middle))
        rights.append((float(cols[-1] + 1), middle))
    # Close the top and bottom with the first and last bands' extents.
    left_side = [(lefts[0][0], float(top)), *lefts, (lefts[-1][0], float(bottom))]
    right_side = [(rights[0][0], float(top)), *rights, (rights[-1][0], float(bottom))]
    polygon = _drop_straight_runs(left_side) + _drop_straight_runs(right_side)[::-1]
    return Outline(box=box, polygon=polygon)


def outlines(regions: dict[str, np.ndarray]) -> dict[str, Outline]:
    """Return the outline of every named region, in the regions' order."""
    return {name: outline(mask) for name, mask in regions.items()}


def _drop_straight_runs(points: list[Point]) -> list[Point]:
    """Return the points without the middle ones of vertical runs (same x, one after another):
    a grid cell's side needs its two ends only."""
    kept: list[Point] = []
    for i, point in enumerate(points):
        inside_run = 0 < i < len(points) - 1 and points[i - 1][0] == point[0] == points[i + 1][0]
        if not inside_run:
            kept.append(point)
    return kept
