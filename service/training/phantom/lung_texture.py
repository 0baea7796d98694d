"""Lung markings: branching pulmonary vessels from each hilum, and the hilar shadows."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from service.training.phantom.geometry import BodyShape, Frame
from service.training.phantom.imaging import FloatImage, blur

BRANCH_LEVELS = 4


def lung_vessels(frame: Frame, shape: BodyShape, rng: np.random.Generator) -> FloatImage:
    """Return vessel and hilum density (to be multiplied by the lung indicator)."""
    canvas = Image.new("F", (frame.cols, frame.rows), 0.0)
    draw = ImageDraw.Draw(canvas)
    for side in (-1, 1):
        hilum_u = rng.uniform(0.085, 0.11)
        hilum_y = shape.apex_y + rng.uniform(0.27, 0.31) - (0.015 if side > 0 else 0.0)
        start = _to_pixels(frame, shape.midline + side * hilum_u, hilum_y)
        # Main trunks fan out towards apex, lateral wall and base; the base gets most.
        for angle in np.linspace(-1.25, 1.35, 6) + rng.normal(0.0, 0.08, 6):
            direction = angle if side > 0 else np.pi - angle
            _branch(draw, rng, frame, start, direction, length=0.11, width_mm_level=0)
    vessels = blur(np.asarray(canvas, dtype=np.float32), 1.2 * frame.px_per_unit / 512)
    u = frame.x - shape.midline
    hila = np.zeros_like(vessels)
    for side in (-1, 1):
        r2 = ((u - side * 0.1) / 0.035) ** 2 + ((frame.y - shape.apex_y - 0.3) / 0.06) ** 2
        hila += np.exp(-r2)
    density = 0.07 * np.minimum(vessels, 1.3) + 0.08 * hila
    return density.astype(np.float32)


def _to_pixels(frame: Frame, x: float, y: float) -> tuple[float, float]:
    """Return the (col, row) pixel position of a point given in thorax units."""
    col = (x - float(frame.x[0, 0])) * frame.px_per_unit
    row = (y - float(frame.y[0, 0])) * frame.px_per_unit
    return col, row


def _branch(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    frame: Frame,
    start: tuple[float, float],
    direction: float,
    *,
    length: float,
    width_mm_level: int,
) -> None:
    """Draw one vessel segment and, recursively, its two daughters (thinner, shorter)."""
    level = width_mm_level
    step = length * frame.px_per_unit * rng.uniform(0.8, 1.15)
    end = (start[0] + step * np.cos(direction), start[1] + step * np.sin(direction))
    width_px = 6.0 * 0.6**level * frame.px_per_unit / 512
    # Sub-pixel vessels are drawn one pixel wide but fainter, which blurs to the same mass.
    value = float(min(1.0, width_px))
    draw.line([start, end], fill=value, width=max(1, round(width_px)))
    if level + 1 >= BRANCH_LEVELS:
        return
    spread = rng.uniform(0.3, 0.55)
    for sign in (-1, 1):
        _branch(
            draw,
            rng,
            frame,
            end,
            direction + sign * spread + rng.normal(0.0, 0.1),
            length=length * 0.72,
            width_mm_level=level + 1,
        )
