"""The bones of a frontal chest: posterior and anterior ribs, clavicles and the spine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.training.phantom.geometry import BodyShape, Frame
from service.training.phantom.imaging import FloatImage, Mask, smoothstep

POSTERIOR_RIBS = 10
ANTERIOR_RIBS = 6


@dataclass(frozen=True)
class Skeleton:
    """Bone density to add to the soft tissue, and where the ribs are (for lesion overlap)."""

    density: FloatImage
    ribs: Mask


def draw_skeleton(frame: Frame, shape: BodyShape, rng: np.random.Generator) -> Skeleton:
    """Return the bones' density and the rib mask for one patient."""
    density = np.zeros((frame.rows, frame.cols), dtype=np.float32)
    ribs = np.zeros((frame.rows, frame.cols), dtype=bool)
    spacing = (shape.dome_right_y + 0.05 - shape.apex_y) / (POSTERIOR_RIBS - 0.5)
    curvature = rng.uniform(2.0, 2.6)
    for side in (-1, 1):
        for i in range(POSTERIOR_RIBS):
            # Upper ribs are shorter and curve more; lower ribs reach the chest wall.
            level = shape.apex_y - 0.02 + i * spacing + rng.normal(0.0, 0.004)
            reach = shape.lung_half_width + 0.03 - 0.09 * max(0.0, 2 - i) / 2
            _rib(
                frame,
                density,
                ribs,
                side=side,
                midline=shape.midline,
                centre=_posterior_centre(level, curvature * (1.0 + 0.08 * max(0, 3 - i))),
                u_range=(0.025, reach),
                half_height=0.011 + 0.0005 * min(i, 6),
                strength=0.19,
            )
        for j in range(ANTERIOR_RIBS):
            level = shape.apex_y + 0.06 + j * spacing * 1.15 + rng.normal(0.0, 0.004)
            _rib(
                frame,
                density,
                ribs,
                side=side,
                midline=shape.midline,
                centre=_anterior_centre(level, shape.lung_half_width),
                u_range=(0.1, shape.lung_half_width + 0.01),
                half_height=0.0105,
                strength=0.075,
                fade_medial=True,
            )
    density += _clavicles(frame, shape, rng) + _spine(frame, shape)
    return Skeleton(density=density, ribs=ribs)


def _posterior_centre(level: float, curvature: float) -> tuple[float, float, float]:
    """Return a posterior rib's centre line y(u) = a + b·u + c·u²: up from the spine, then down."""
    peak = 0.07
    return (level, -2.0 * curvature * peak, curvature)


def _anterior_centre(level: float, half_width: float) -> tuple[float, float, float]:
    """Return an anterior rib's centre line: high at the chest wall, sloping down medially."""
    drop = 0.11
    slope = -drop / (half_width - 0.1)
    # y(u) = level + drop at u = 0.1, level at the lateral wall; slight upward bow.
    a = level - slope * half_width
    return (a, slope, 0.15)


def _rib(
    frame: Frame,
    density: FloatImage,
    ribs: Mask,
    *,
    side: int,
    midline: float,
    centre: tuple[float, float, float],
    u_range: tuple[float, float],
    half_height: float,
    strength: float,
    fade_medial: bool = False,
) -> None:
    """Add one rib (a curved band with bright cortical edges) to ``density`` and ``ribs``."""
    a, b, c = centre
    u_lo, u_hi = u_range
    us = np.array([u_lo, u_hi, -b / (2 * c) if c else u_lo])
    us = us[(us >= u_lo) & (us <= u_hi)]
    ys = a + b * us + c * us * us
    margin = half_height * 2.5 + 0.02
    row_lo, row_hi = _rows_between(frame, float(ys.min()) - margin, float(ys.max()) + margin)
    if row_hi <= row_lo:
        return
    y = frame.y[row_lo:row_hi]
    u = side * (frame.x - midline)
    centre_y = a + b * u + c * u * u
    slope = b + 2 * c * u
    # Perpendicular distance, so steep lateral segments keep the rib's thickness.
    offset = np.abs(y - centre_y) / np.sqrt(1.0 + slope * slope)
    along = frame.edge(u - u_lo, px=2.0) * frame.edge(u_hi - u, px=3.0)
    if fade_medial:
        along = along * smoothstep((u - u_lo) / 0.12)
    band = frame.edge(half_height - offset, px=0.9) * along
    cortex = 0.35 + 0.65 * np.clip(offset / half_height, 0.0, 1.0) ** 4
    density[row_lo:row_hi] += strength * band * cortex
    ribs[row_lo:row_hi] |= band > 0.5


def _rows_between(frame: Frame, y_lo: float, y_hi: float) -> tuple[int, int]:
    """Return the half-open range of rows whose centres lie between ``y_lo`` and ``y_hi``."""
    column = frame.y[:, 0]
    lo = int(np.searchsorted(column, y_lo, side="left"))
    hi = int(np.searchsorted(column, y_hi, side="right"))
    return lo, hi


def _clavicles(frame: Frame, shape: BodyShape, rng: np.random.Generator) -> FloatImage:
    """Return both clavicles: gently S-shaped bars from the sternum out to the shoulders."""
    density = np.zeros((frame.rows, frame.cols), dtype=np.float32)
    medial_y = shape.apex_y + rng.uniform(0.07, 0.1)
    lateral_y = shape.apex_y + rng.uniform(-0.01, 0.025)
    half = rng.uniform(0.012, 0.016)
    row_lo, row_hi = _rows_between(frame, lateral_y - 0.06, medial_y + 0.06)
    y = frame.y[row_lo:row_hi]
    for side in (-1, 1):
        u = side * (frame.x - shape.midline)
        t = np.clip((u - 0.035) / 0.3, 0.0, 1.0)
        centre = medial_y + (lateral_y - medial_y) * t + 0.012 * np.sin(2 * np.pi * t)
        offset = np.abs(y - centre)
        band = frame.edge(half - offset) * frame.edge(u - 0.035, px=2.0) * frame.edge(0.34 - u)
        cortex = 0.6 + 0.4 * np.clip(offset / half, 0.0, 1.0) ** 3
        density[row_lo:row_hi] += 0.2 * band * cortex
    return density


def _spine(frame: Frame, shape: BodyShape) -> FloatImage:
    """Return the thoracic spine: vertebral bodies with darker disc spaces, and pedicles."""
    u = frame.x - shape.midline
    period = 0.062
    phase = np.mod((frame.y - shape.apex_y) / period, 1.0)
    vertebra = smoothstep(phase / 0.1) * smoothstep((0.82 - phase) / 0.1)
    column = frame.edge(0.034 - np.abs(u), px=1.5)
    pedicles = np.zeros_like(column)
    for side in (-1, 1):
        r = np.hypot((u - side * 0.024) / 0.008, (phase - 0.35) * period / 0.013)
        pedicles = np.maximum(pedicles, np.clip(1.0 - r, 0.0, 1.0))
    density: FloatImage = (column * (0.035 + 0.02 * vertebra) + 0.025 * pedicles).astype(np.float32)
    return density
