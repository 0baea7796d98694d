"""The report's gallery: small Grad-CAM composites of the most flagged cases.

Drawn from each analysis's saved raw maps (display image and Grad-CAM, ``var/results/<id>/``)
at thumbnail size. In a de-identified report, burned-in marks (the boxes the per-image audit
found) are pixelated, since burned-in text can carry a name, and outlined, so the reader
still sees that the heatmap sits on a mark.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from service.analysis.results_files import OverlayKind, load_map, raw_map_path
from service.audit.burned_in import Box, parse_box
from service.results.overlays import composite, encode_png, heatmap_rgba
from service.results.resize import fit_within, is_scaled_copy, resize_map

THUMBNAIL_SIDE = 320
# The per-image audit measured (and found its boxes) on a copy this size (pipeline.WORKING_SIDE).
AUDIT_SIDE = 512
PIXEL_BLOCK = 8
OUTLINE = (255, 255, 255)


def case_reference(report_id: uuid.UUID, analysis_id: uuid.UUID) -> str:
    """Return a case's name in a report: stable within it, unlinkable across reports."""
    digest = hashlib.sha256(f"{report_id}:{analysis_id}".encode()).hexdigest()
    return f"case-{digest[:10]}"


def gallery_png(
    results_root: Path, analysis_id: uuid.UUID, *, boxes: list[str], deidentify: bool
) -> tuple[bytes, int, int] | None:
    """Return a thumbnail composite (PNG bytes, width, height) of an analysis's Grad-CAM on
    its image, or None when its maps are not on disk."""
    display_path = raw_map_path(results_root, analysis_id, "display")
    gradcam_path = raw_map_path(results_root, analysis_id, OverlayKind.GRADCAM.value)
    if not (display_path.is_file() and gradcam_path.is_file()):
        return None
    display = load_map(display_path)
    gradcam = load_map(gradcam_path)
    if display.ndim != 2 or gradcam.ndim != 2 or not is_scaled_copy(gradcam.shape, display.shape):
        return None
    small = fit_within(display.astype(np.uint8), THUMBNAIL_SIDE)
    heat = resize_map(gradcam, small.shape)
    scaled = _scaled_boxes(boxes, display.shape, small.shape)
    if deidentify:
        small = pixelate(small, scaled)
    top = float(np.nanmax(heat)) if heat.size else 0.0
    rgba = heatmap_rgba(heat, vmin=0.0, vmax=top if top > 0 else 1.0)
    image = Image.fromarray(composite(small, rgba))
    if deidentify and scaled:
        draw = ImageDraw.Draw(image)
        for box in scaled:
            draw.rectangle([box.col0, box.row0, box.col1 - 1, box.row1 - 1], outline=OUTLINE)
    rgb = np.asarray(image)
    return encode_png(rgb), int(rgb.shape[1]), int(rgb.shape[0])


def pixelate(image: np.ndarray, boxes: list[Box], block: int = PIXEL_BLOCK) -> np.ndarray:
    """Return the image with each box replaced by blocks of its mean (text unreadable)."""
    out = np.array(image, copy=True)
    for box in boxes:
        for r in range(box.row0, box.row1, block):
            for c in range(box.col0, box.col1, block):
                cell = out[r : min(r + block, box.row1), c : min(c + block, box.col1)]
                if cell.size:
                    cell[...] = cell.mean()
    return out


def _scaled_boxes(boxes: list[str], full: tuple[int, ...], small: tuple[int, ...]) -> list[Box]:
    """Return the audit's boxes (found at ``AUDIT_SIDE``) at the thumbnail's size, grown by a
    pixel so rounding cannot leave a letter's edge outside."""
    audit_scale = min(1.0, AUDIT_SIDE / max(full))
    factor = small[0] / (full[0] * audit_scale)
    out = []
    for text in boxes:
        box = parse_box(text)
        if box is None:
            continue
        out.append(
            Box(
                max(0, int(box.row0 * factor) - 1),
                max(0, int(box.col0 * factor) - 1),
                min(small[0], int(np.ceil(box.row1 * factor)) + 1),
                min(small[1], int(np.ceil(box.col1 * factor)) + 1),
            )
        )
    return out
