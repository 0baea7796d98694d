"""The region table: one probability per named region of the image. Pure numpy.

Regions are the six conventional lung zones (each lung split into upper, middle and lower
thirds) when a lung mask exists, and a labelled grid otherwise. Side names are the patient's:
on a PA or AP radiograph in display orientation the patient's right lung is on the image's
left. Grid cells are named by position on the image (row 1 = top, col 1 = image-left), since
without lungs found there is nothing to tell which side is the patient's.

A region's probability is the MAXIMUM of the probability map over it. The table answers "is
there a finding in this zone?", the same question the image probability answers for the whole
image (the classifier pools its cells towards the maximum). Alternatives and why not:

- the mean dilutes a small finding by the zone's size, so a nodule in a large zone scores low;
- a high percentile (say the 95th) ignores one-cell spikes, but the map is already smooth
  (stride-16 cells, interpolated), and it can miss a finding that covers under 5 % of a zone;
- the area above a threshold (extent) answers "how much", a different question, and needs a
  threshold chosen per model.
"""

from __future__ import annotations

import numpy as np

RIGHT_LUNG = 1  # label of the patient's right lung (image-left on PA/AP)
LEFT_LUNG = 2  # label of the patient's left lung (image-right on PA/AP)
LUNG_SIDES = ((RIGHT_LUNG, "right"), (LEFT_LUNG, "left"))
ZONE_LEVELS = ("upper", "middle", "lower")


def lung_label_map(right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Return the uint8 label map (0 background, 1 patient's right lung, 2 left) of two
    boolean lung masks (``lungs.LungFields.right`` and ``.left``)."""
    if right.shape != left.shape:
        raise ValueError(f"lung masks differ in shape: {right.shape} and {left.shape}")
    if np.any(right & left):
        raise ValueError("a pixel cannot be in both lungs")
    labels = np.zeros(right.shape, dtype=np.uint8)
    labels[right] = RIGHT_LUNG
    labels[left] = LEFT_LUNG
    return labels


def zone_name(side: str, level: str) -> str:
    """Return a lung zone's display name, e.g. ``"right upper lung zone"``."""
    return f"{side} {level} lung zone"


def lung_zones(lung_labels: np.ndarray) -> dict[str, np.ndarray]:
    """Return the lung zones present in ``lung_labels`` as boolean masks, named and ordered
    right upper, middle, lower, then left upper, middle, lower.

    Each lung is cut into thirds of its own vertical extent (top row to bottom row of that
    lung), so a lung that sits lower or is shorter than the other still gets its own thirds.
    A missing lung, or a zone with no pixels (a lung under three rows tall), is left out
    rather than given a made-up value.
    """
    if lung_labels.ndim != 2:
        raise ValueError(f"lung_labels must be 2D, got shape {lung_labels.shape}")
    unknown = set(np.unique(lung_labels).tolist()) - {0, RIGHT_LUNG, LEFT_LUNG}
    if unknown:
        raise ValueError(f"lung_labels holds values other than 0, 1, 2: {sorted(unknown)}")
    rows = np.arange(lung_labels.shape[0])[:, None]
    zones: dict[str, np.ndarray] = {}
    for label, side in LUNG_SIDES:
        lung = lung_labels == label
        lung_rows = np.flatnonzero(lung.any(axis=1))
        if lung_rows.size == 0:
            continue
        top, extent = lung_rows[0], lung_rows[-1] + 1 - lung_rows[0]
        # Row r belongs to third floor(3 * (r - top) / extent): every lung row in exactly
        # one zone, the three zones' heights differing by at most one row.
        third = (3 * (rows - top)) // extent
        for index, level in enumerate(ZONE_LEVELS):
            zone = lung & (third == index)
            if zone.any():
                zones[zone_name(side, level)] = zone
    return zones


def grid_name(row: int, col: int) -> str:
    """Return a grid cell's display name (1-based, row 1 at the top, col 1 at image-left)."""
    return f"grid row {row} col {col}"


def grid_regions(rows: int, cols: int, n: int = 3) -> dict[str, np.ndarray]:
    """Return an ``n × n`` grid over a ``rows × cols`` image as boolean masks, named
    ``"grid row 1 col 1"`` (top, image-left) to ``"grid row n col n"``, row by row.

    Cell edges are rounded to whole pixels, so cells differ by at most one pixel in size.
    """
    if n < 1 or rows < n or cols < n:
        raise ValueError(f"cannot cut a {rows} × {cols} image into a {n} × {n} grid")
    row_edges = np.linspace(0, rows, n + 1).round().astype(int)
    col_edges = np.linspace(0, cols, n + 1).round().astype(int)
    regions: dict[str, np.ndarray] = {}
    for i in range(n):
        for j in range(n):
            cell = np.zeros((rows, cols), dtype=bool)
            cell[row_edges[i] : row_edges[i + 1], col_edges[j] : col_edges[j + 1]] = True
            regions[grid_name(i + 1, j + 1)] = cell
    return regions


def region_table(
    probability_map: np.ndarray, regions: dict[str, np.ndarray]
) -> list[tuple[str, float]]:
    """Return ``(region name, probability)`` rows, in the regions' order, where a region's
    probability is the maximum of ``probability_map`` over it (see the module docstring).

    ``probability_map`` must be at the original image's geometry (``InputGeometry
    .to_original``), the same shape as every region mask.
    """
    if probability_map.ndim != 2:
        raise ValueError(f"probability_map must be 2D, got shape {probability_map.shape}")
    table: list[tuple[str, float]] = []
    for name, region in regions.items():
        # A 0/1 integer mask would otherwise index rows instead of selecting pixels.
        mask = np.asarray(region, dtype=bool)
        if mask.shape != probability_map.shape:
            raise ValueError(
                f"region '{name}' has shape {mask.shape}, the map {probability_map.shape}"
            )
        if not mask.any():
            raise ValueError(f"region '{name}' is empty")
        table.append((name, float(probability_map[mask].max())))
    return table
