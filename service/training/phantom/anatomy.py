"""A synthetic frontal chest: body outline, lung fields, mediastinum, heart and diaphragm.

Densities are arbitrary projected attenuation: 0 outside the body, about 1 for soft tissue,
less where the lungs hold air, more where bone or heart adds to the path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.training.phantom.geometry import BodyShape, Frame, draw_body_shape, make_frame
from service.training.phantom.imaging import FloatImage, Mask, smoothstep
from service.training.phantom.lung_texture import lung_vessels
from service.training.phantom.skeleton import draw_skeleton

LUNG_AIR = 0.58  # how much darker aerated lung is than soft tissue


@dataclass(frozen=True)
class Anatomy:
    """Projected density and the masks that ground truth and lesion placement need."""

    density: FloatImage
    body: Mask
    lungs: npt.NDArray[np.uint8]  # uint8: 0 outside, 1 patient's right lung, 2 patient's left lung
    heart: Mask
    ribs: Mask
    frame: Frame


def make_anatomy(
    rng: np.random.Generator, *, rows: int, cols: int, spacing_mm: float, view: str, sex: str
) -> Anatomy:
    """Return a chest's projected density with body, lung, heart and rib masks."""
    shape = draw_body_shape(rng, view=view, sex=sex)
    frame = make_frame(rows, cols, spacing_mm, shape)
    body_soft, body_density = _body(frame, shape)
    right_soft, right_thick = _lung(frame, shape, side=-1)
    left_soft, left_thick = _lung(frame, shape, side=+1)
    lung_soft = right_soft + left_soft
    heart_soft, heart_density = _heart(frame, shape)
    skeleton = draw_skeleton(frame, shape, rng)

    density = body_density
    # The heart displaces lung from the beam path rather than adding on top of it.
    displaced = 1.0 - 0.92 * heart_density
    density -= LUNG_AIR * displaced * (right_soft * right_thick + left_soft * left_thick)
    density += 0.06 * heart_soft + _mediastinum(frame, shape) + _abdomen(frame, shape)
    density += skeleton.density * body_soft
    density += lung_vessels(frame, shape, rng) * lung_soft
    density = np.maximum(density, 0.0)

    lungs = np.zeros((rows, cols), dtype=np.uint8)
    lungs[right_soft > 0.5] = 1
    lungs[left_soft > 0.5] = 2
    body = (body_soft > 0.5) | (lungs > 0)
    return Anatomy(
        density=density.astype(np.float32),
        body=body,
        lungs=lungs,
        heart=heart_soft > 0.5,
        ribs=skeleton.ribs,
        frame=frame,
    )


def _body(frame: Frame, shape: BodyShape) -> tuple[FloatImage, FloatImage]:
    """Return the body's soft outline and its soft-tissue density (thicker at the midline)."""
    u = np.abs(frame.x - shape.midline)
    rise = smoothstep((frame.y - (shape.shoulder_y - 0.13)) / 0.13)
    waist = 1.0 - 0.06 * smoothstep((frame.y - 0.75) / 0.25)
    half = (shape.neck_half_width + (shape.body_half_width - shape.neck_half_width) * rise) * waist
    soft = frame.edge(half - u, px=1.0)
    thickness = np.sqrt(np.clip(1.0 - (u / half) ** 2, 0.0, 1.0))
    density = soft * (0.55 + 0.45 * np.sqrt(thickness))
    return soft, density.astype(np.float32)


def _lung(frame: Frame, shape: BodyShape, *, side: int) -> tuple[FloatImage, FloatImage]:
    """Return one lung's soft indicator and its relative air thickness (side -1 = right)."""
    u = side * (frame.x - shape.midline)
    y = frame.y
    rise = np.clip((shape.widest_y - y) / (shape.widest_y - shape.apex_y), 0.0, 1.0)
    widen = 0.025 * np.clip((y - shape.widest_y) / 0.3, 0.0, 1.0)
    lateral = shape.lung_half_width - (shape.lung_half_width - shape.apex_u) * rise**2 + widen
    top = shape.apex_y + 4.5 * (u - shape.apex_u) ** 2
    dome = shape.dome_right_y if side < 0 else shape.dome_left_y
    # The costophrenic angle is deep and sharp, the cardiophrenic side shallow.
    curvature = np.where(u > shape.dome_u, 2.6, 0.9)
    bottom = dome + curvature * (u - shape.dome_u) ** 2
    # The mediastinal border bows out at the thoracic inlet and again at the hilum.
    t = (y - shape.apex_y) / (shape.heart_cy - shape.apex_y)
    medial = shape.mediastinum_half_width + 0.012 * np.cos(2.0 * np.pi * np.clip(t, 0.0, 1.0))
    soft = (
        frame.edge(u - medial)
        * frame.edge(lateral - u)
        * frame.edge(y - top)
        * frame.edge(bottom - y)
    )
    if side > 0:
        soft = soft * frame.edge((_knob_radius(u, y, shape) - 1.0) * shape.knob_r)
    # Less air in projection near the curved chest wall, at the apex and over the domes.
    thick = np.sqrt(np.clip((lateral - u) / 0.07, 0.0, 1.0))
    thick = thick * (0.7 + 0.3 * np.clip((y - shape.apex_y) / 0.2, 0.0, 1.0))
    thick = thick * (0.75 + 0.25 * np.clip((bottom - y) / 0.06, 0.0, 1.0))
    return soft.astype(np.float32), thick.astype(np.float32)


def _heart(frame: Frame, shape: BodyShape) -> tuple[FloatImage, FloatImage]:
    """Return the heart's soft indicator and thickness (a tilted ellipse, apex to the left)."""
    dx = frame.x - (shape.midline + shape.heart_dx)
    dy = frame.y - shape.heart_cy
    cos, sin = np.cos(shape.heart_tilt), np.sin(shape.heart_tilt)
    # Long axis from upper right of the patient (base) down to the left (apex).
    p = (dx * cos + dy * sin) / shape.heart_a
    q = (dy * cos - dx * sin) / shape.heart_b
    radius = np.sqrt(p * p + q * q)
    soft = frame.edge((1.0 - radius) * shape.heart_b, px=1.2)
    # Relative thickness in the beam: full over most of the heart, thinning at its rim.
    thickness = soft * np.clip(np.sqrt(np.clip(1.0 - radius**2, 0.0, 1.0)) * 1.6, 0.0, 1.0)
    return soft, thickness.astype(np.float32)


def _mediastinum(frame: Frame, shape: BodyShape) -> FloatImage:
    """Return the upper mediastinum, aortic knob, trachea and main bronchi as density."""
    u = frame.x - shape.midline
    y = frame.y
    carina_y = shape.knob_y + 0.03
    vessels = frame.edge(shape.mediastinum_half_width + 0.01 - np.abs(u), px=2.0)
    vessels = vessels * frame.edge(y - shape.apex_y - 0.05, px=4.0) * frame.edge(carina_y + 0.1 - y)
    knob = frame.edge((1.0 - _knob_radius(u, y, shape)) * shape.knob_r, px=1.5)
    trachea = frame.edge(0.018 - np.abs(u), px=1.2) * frame.edge(carina_y - y, px=1.5)
    bronchi = np.zeros_like(trachea)
    for side, angle in ((-1, 0.75), (1, 0.95)):  # the right main bronchus is steeper
        along = (y - carina_y) * np.cos(angle) + side * u * np.sin(angle)
        across = np.abs(side * u * np.cos(angle) - (y - carina_y) * np.sin(angle))
        bronchi = np.maximum(
            bronchi, frame.edge(0.012 - across) * frame.edge(along) * frame.edge(0.07 - along)
        )
    density: FloatImage = (0.02 * vessels + 0.03 * knob - 0.22 * trachea - 0.16 * bronchi).astype(
        np.float32
    )
    return density


def _knob_radius(u: FloatImage, y: FloatImage, shape: BodyShape) -> FloatImage:
    """Return the elliptic radius about the aortic knob (a tall bulge off the mediastinum)."""
    result: FloatImage = np.hypot((u - shape.knob_u) / shape.knob_r, (y - shape.knob_y) / 0.045)
    return result


def _abdomen(frame: Frame, shape: BodyShape) -> FloatImage:
    """Return breast shadows (if any) and the gastric air bubble under the left dome."""
    u = frame.x - shape.midline
    y = frame.y
    density = np.zeros((frame.rows, frame.cols), dtype=np.float32)
    if shape.breasts > 0:
        for side in (-1, 1):
            r = np.hypot((side * u - 0.25) / 0.17, (y - shape.dome_right_y + 0.01) / 0.12)
            density += (
                shape.breasts * frame.edge(1.0 - r, px=3.0) * np.sqrt(np.clip(1.0 - r**2, 0.0, 1.0))
            )
    if shape.gastric_bubble:
        r = np.hypot((u - 0.15) / 0.05, (y - shape.dome_left_y - 0.055) / 0.03)
        density -= 0.3 * frame.edge((1.0 - r) * 0.03, px=1.5)
    return density
