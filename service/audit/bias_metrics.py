"""Where a heatmap's mass lies: the per-image bias metrics (pure: numpy and scipy only).

The heatmap is the raw explanation map (Grad-CAM, before any display scaling) at the image's
geometry. Shares are of its total mass (negative values clipped to 0). The relevant region is
the lung fields, or the body where no lung mask could be had.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import ndimage

from service.audit.burned_in import Box, boxes_mask, detect_burned_in

BORDER_FRACTION = 0.05
TOP_FRACTION = 0.05


class PeakPlace(StrEnum):
    """Where a heatmap's peak falls, the most telling place first."""

    MARKER_OR_TEXT = "marker-or-text"
    BORDER = "border"
    OUTSIDE_BODY = "outside-body"
    RELEVANT = "relevant-region"
    BODY_ELSEWHERE = "body-outside-relevant-region"
    NONE = "none"  # the heatmap is empty: no positive mass anywhere


@dataclass(frozen=True)
class ImageRegions:
    """The regions a heatmap is judged against, all at the image's geometry."""

    relevant: np.ndarray  # bool: lungs (or body)
    relevant_kind: str  # "lungs" or "body"
    body: np.ndarray  # bool
    border: np.ndarray  # bool: the outer band
    burned_in: np.ndarray  # bool: marker and text boxes
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class HeatmapMetrics:
    relevant_share: float
    border_share: float
    burned_in_share: float
    outside_body_share: float
    top_outside_relevant_share: float
    peak: PeakPlace
    peak_row: int
    peak_col: int


def border_band(shape: tuple[int, int], fraction: float = BORDER_FRACTION) -> np.ndarray:
    """Return the band of ``fraction`` of each side along the image's edges."""
    rows, cols = shape
    band = np.zeros(shape, dtype=bool)
    r, c = max(1, round(rows * fraction)), max(1, round(cols * fraction))
    band[:r, :] = band[-r:, :] = True
    band[:, :c] = band[:, -c:] = True
    return band


def body_mask(display: np.ndarray) -> np.ndarray:
    """Return the body: the largest bright-enough region of a display image, holes filled.

    Radiographs show air outside the body as (near) black; an Otsu threshold on the display
    image separates it, and the largest component with its holes filled is the body.
    """
    image = np.asarray(display, dtype=np.float32)
    threshold = _otsu(image)
    labels, count = ndimage.label(image > threshold)
    if count == 0:
        return np.ones(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    body = labels == (int(np.argmax(sizes)) + 1)
    filled: np.ndarray = ndimage.binary_fill_holes(body)
    return filled.astype(bool)


@dataclass(frozen=True)
class ImageMarks:
    """What the audit finds in an image alone, before heatmap and lungs: candidate burned-in
    marks and the body. The pipeline finds them while the helper segments the lungs."""

    boxes: tuple[Box, ...]
    body: np.ndarray


def image_marks(display: np.ndarray) -> ImageMarks:
    """Return the candidate burned-in marks and the body of a display image."""
    return ImageMarks(boxes=tuple(detect_burned_in(display)), body=body_mask(display))


def image_regions(
    display: np.ndarray,
    lungs: np.ndarray | None,
    boxes: tuple[Box, ...],
    body: np.ndarray | None = None,
) -> ImageRegions:
    """Return the regions for an image: lungs if given (non-empty), else the body (``body``,
    or found here when not given).

    A detected box that lies mostly inside the lung fields is not counted as burned-in: a
    small bright compact object there is far more often a finding (a calcified or dense
    nodule) than a label, and calling it a marker would flag the model for looking at it.
    """
    body = body_mask(display) if body is None else body
    has_lungs = lungs is not None and bool(np.any(lungs))
    relevant = np.asarray(lungs, dtype=bool) if has_lungs else body
    if has_lungs:
        boxes = tuple(box for box in boxes if not _mostly_inside(box, relevant))
    return ImageRegions(
        relevant=relevant,
        relevant_kind="lungs" if has_lungs else "body",
        body=body,
        border=border_band(display.shape),
        burned_in=boxes_mask(display.shape, boxes),
        boxes=boxes,
    )


def _mostly_inside(box: Box, mask: np.ndarray) -> bool:
    """Return whether more than half of ``box``'s pixels lie in ``mask``."""
    inside = mask[box.row0 : box.row1, box.col0 : box.col1]
    return bool(inside.size) and float(inside.mean()) > 0.5


def heatmap_metrics(heatmap: np.ndarray, regions: ImageRegions) -> HeatmapMetrics:
    """Return the shares of the heatmap's mass in each region and where its peak falls."""
    mass = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)), 0.0, None)
    if mass.shape != regions.relevant.shape:
        raise ValueError(f"heatmap {mass.shape} and regions {regions.relevant.shape} differ")
    total = float(mass.sum())
    row, col = np.unravel_index(int(np.argmax(mass)), mass.shape)

    def share(mask: np.ndarray) -> float:
        return float(mass[mask].sum() / total) if total > 0 else 0.0

    return HeatmapMetrics(
        relevant_share=share(regions.relevant),
        border_share=share(regions.border),
        burned_in_share=share(regions.burned_in),
        outside_body_share=share(~regions.body),
        top_outside_relevant_share=_top_outside(mass, regions.relevant),
        peak=peak_place(int(row), int(col), regions) if total > 0 else PeakPlace.NONE,
        peak_row=int(row) if total > 0 else -1,
        peak_col=int(col) if total > 0 else -1,
    )


def peak_place(row: int, col: int, regions: ImageRegions) -> PeakPlace:
    """Return where a pixel lies, marker/text boxes first (they may sit on the border)."""
    if regions.burned_in[row, col]:
        return PeakPlace.MARKER_OR_TEXT
    if regions.border[row, col]:
        return PeakPlace.BORDER
    if not regions.body[row, col]:
        return PeakPlace.OUTSIDE_BODY
    if regions.relevant[row, col]:
        return PeakPlace.RELEVANT
    return PeakPlace.BODY_ELSEWHERE


def strongest_outside_hotspot(heatmap: np.ndarray, relevant: np.ndarray) -> np.ndarray | None:
    """Return the connected hot area (≥ half its peak) around the strongest heatmap value
    outside the relevant region, or None when the heatmap has nothing there."""
    outside = np.where(relevant, 0.0, np.clip(np.asarray(heatmap, dtype=np.float64), 0, None))
    peak = float(outside.max()) if outside.size else 0.0
    if peak <= 0:
        return None
    labels, _count = ndimage.label(outside >= peak / 2)
    row, col = np.unravel_index(int(np.argmax(outside)), outside.shape)
    return np.asarray(labels == labels[row, col])


def fill_with_background(display: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Return the image with ``region`` replaced by the median of a ring of pixels around it
    (what the area would look like without whatever was there)."""
    grown = ndimage.binary_dilation(region, iterations=max(2, round(0.01 * max(display.shape))))
    ring = grown & ~region
    filled = np.array(display, copy=True)
    if ring.any():
        filled[region] = np.median(display[ring]).astype(display.dtype)
    return filled


def _top_outside(mass: np.ndarray, relevant: np.ndarray) -> float:
    """Return the share of the hottest ``TOP_FRACTION`` of pixels that lie outside ``relevant``.

    Only pixels with some mass count as hot: when fewer than that fraction have any, the share
    is of those (zero-mass pixels tied at the bottom would be an arbitrary pick, and selecting
    among ties is what made this the audit's slowest step).
    """
    flat = mass.ravel()
    hot = np.flatnonzero(flat > 0)
    count = max(1, round(mass.size * TOP_FRACTION))
    if hot.size > count:
        hot = hot[np.argpartition(flat[hot], -count)[-count:]]
    if hot.size == 0:
        return 0.0
    return float(np.count_nonzero(~relevant.ravel()[hot]) / hot.size)


def _otsu(image: np.ndarray) -> float:
    """Return Otsu's threshold of an image (the split that best separates two classes)."""
    histogram, edges = np.histogram(image, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(histogram)
    total = weight[-1]
    mean = np.cumsum(histogram * centres)
    between = (mean[-1] * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1e-12)
    return float(centres[int(np.argmax(between[:-1]))])
