"""Where a synthetic chest lies on the pixel grid, and one patient's random proportions.

Geometry lives in "thorax units": 1 unit is the 358.4 mm reference field (512 px at 0.7 mm)
times the patient's scale, x = 0.5 is the midline, y grows towards the feet. Patient's right is
on the image's left (standard display of PA and AP views).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.training.phantom.imaging import FloatImage, sigmoid

REFERENCE_FIELD_MM = 358.4


@dataclass(frozen=True)
class Frame:
    """Pixel grid in thorax units: ``x`` is a (1, cols) row, ``y`` a (rows, 1) column."""

    rows: int
    cols: int
    x: FloatImage
    y: FloatImage
    px_per_unit: float

    def edge(self, distance: npt.NDArray[np.floating[Any]], px: float = 0.8) -> FloatImage:
        """Return a soft inside-indicator for a signed distance in units (edge ``px`` wide)."""
        return sigmoid(distance, px / self.px_per_unit)


@dataclass(frozen=True)
class BodyShape:
    """One patient's proportions, all in thorax units (see the module docstring)."""

    scale: float
    midline: float
    shift_y: float
    body_half_width: float
    neck_half_width: float
    shoulder_y: float
    apex_y: float
    apex_u: float
    lung_half_width: float
    widest_y: float
    mediastinum_half_width: float
    dome_right_y: float
    dome_left_y: float
    dome_u: float
    heart_dx: float
    heart_cy: float
    heart_a: float
    heart_b: float
    heart_tilt: float
    knob_u: float
    knob_y: float
    knob_r: float
    gastric_bubble: bool
    breasts: float


def draw_body_shape(rng: np.random.Generator, *, view: str, sex: str) -> BodyShape:
    """Return random but plausible proportions; AP views get a bigger heart and higher domes."""
    ap = view == "AP"
    apex_y = rng.uniform(0.085, 0.11)
    dome_right = rng.uniform(0.62, 0.68) + (0.035 if ap else 0.0)
    mediastinum = rng.uniform(0.042, 0.055)
    return BodyShape(
        scale=rng.uniform(0.9, 1.04),
        midline=0.5 + rng.normal(0.0, 0.01),
        shift_y=rng.normal(0.0, 0.012),
        body_half_width=rng.uniform(0.46, 0.56),
        neck_half_width=rng.uniform(0.085, 0.105),
        shoulder_y=rng.uniform(0.08, 0.12),
        apex_y=apex_y,
        apex_u=rng.uniform(0.17, 0.21),
        lung_half_width=rng.uniform(0.34, 0.39),
        widest_y=apex_y + rng.uniform(0.34, 0.42),
        mediastinum_half_width=mediastinum,
        dome_right_y=dome_right,
        dome_left_y=dome_right + rng.uniform(0.01, 0.04),
        dome_u=rng.uniform(0.15, 0.2),
        heart_dx=rng.uniform(0.05, 0.075),
        heart_cy=dome_right - rng.uniform(0.05, 0.08),
        heart_a=rng.uniform(0.15, 0.18) * (1.1 if ap else 1.0),
        heart_b=rng.uniform(0.11, 0.13),
        heart_tilt=rng.uniform(0.35, 0.6),
        knob_u=mediastinum + rng.uniform(-0.01, 0.0),
        knob_y=apex_y + rng.uniform(0.17, 0.21),
        knob_r=rng.uniform(0.025, 0.035),
        gastric_bubble=bool(rng.random() < 0.6),
        breasts=rng.uniform(0.06, 0.14) if sex == "F" else 0.0,
    )


def make_frame(rows: int, cols: int, spacing_mm: float, shape: BodyShape) -> Frame:
    """Return the pixel grid of a ``rows``×``cols`` image at ``spacing_mm`` in thorax units."""
    unit_mm = REFERENCE_FIELD_MM * shape.scale
    cols_mm = (np.arange(cols, dtype=np.float32) + 0.5) * spacing_mm - cols * spacing_mm / 2
    rows_mm = (np.arange(rows, dtype=np.float32) + 0.5) * spacing_mm - rows * spacing_mm / 2
    x = (0.5 + cols_mm / unit_mm).astype(np.float32)[None, :]
    y = (0.5 + rows_mm / unit_mm + shape.shift_y).astype(np.float32)[:, None]
    return Frame(rows=rows, cols=cols, x=x, y=y, px_per_unit=unit_mm / spacing_mm)
