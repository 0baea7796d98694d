"""Synthetic findings: nodules (sharp, round) and opacities (ill-defined), always inside a lung.

Each lesion's ``contrast`` is its peak brightening in 12-bit display units (MONOCHROME2
polarity), set to ``cnr`` times the deviation of the background it lies on, so CNR is exact by
construction. That deviation counts both what hides a lesion: the quantum noise at its centre
and the anatomy around it (the standard deviation of the noise-free image over the lesion's
bounding box: ribs, vessels, the heart border). A CNR against quantum noise alone would call a
nodule "obvious" that the rib pattern hides completely; against the whole background, CNR 5 is
obvious to a reader and CNR 0.5 is near invisible, as the generator's options promise. The
default mix keeps most lesions learnable and some hard: see ``LesionMix``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.training.phantom.imaging import FloatImage, Mask

PLACEMENT_TRIES = 300
OPACITY_REACH = 1.25  # radii at which an opacity's soft edge reaches zero
SHRINK = 0.8  # a lesion that finds no room is retried this much smaller, down to the minimum


@dataclass(frozen=True)
class LesionMix:
    """How lesions are drawn.

    CNR and diameter are each log-uniform: with probability ``easy_fraction`` on
    [floor, max], otherwise on [min, floor] (the hard tail); when the floor lies outside
    (min, max) the whole range is used. Default: 90 % of lesions have CNR 1.5–5 and 90 % are
    10–40 mm across; the rest have CNR 0.5–1.5 or 5–10 mm (the two drawn independently), so
    about 1 in 5 lesions is subtle in one way and 1 in 100 in both. Diameters are of the mask.
    """

    cnr_range: tuple[float, float] = (0.5, 5.0)
    easy_cnr_floor: float = 1.5
    diameter_range_mm: tuple[float, float] = (5.0, 40.0)
    easy_diameter_floor_mm: float = 10.0
    easy_fraction: float = 0.9
    opacity_fraction: float = 0.35
    # Probabilities of 1, 2, 3 … lesions on a positive image.
    count_weights: tuple[float, ...] = (0.65, 0.25, 0.1)


@dataclass(frozen=True)
class Lesion:
    """One placed lesion, as written to lesions.csv."""

    lesion_id: int
    kind: str  # "nodule" or "opacity"
    center_row: float
    center_col: float
    diameter_mm: float
    diameter_px: float
    contrast: float
    cnr: float
    lung: str  # "right" or "left" (the patient's)
    overlaps_rib: bool  # its centre lies on a rib (nearly every lesion touches one somewhere)
    overlaps_heart: bool  # some of its mask lies within the heart's outline


@dataclass(frozen=True)
class PlacementContext:
    """Where lesions may go and what they may overlap, in the image's pixel grid."""

    lungs: npt.NDArray[np.uint8]  # 1 = patient's right, 2 = patient's left
    allowed: Mask  # lung pixels not covered by burned-in annotations
    ribs: Mask
    heart: Mask
    noise_sigma: FloatImage  # quantum noise (plus a real background's own) per pixel
    spacing_mm: float


def draw_count(rng: np.random.Generator, mix: LesionMix) -> int:
    """Return how many lesions a positive image gets (at least one)."""
    weights = np.asarray(mix.count_weights, dtype=float)
    return 1 + int(rng.choice(len(weights), p=weights / weights.sum()))


def draw_log_mixture(
    rng: np.random.Generator, bounds: tuple[float, float], floor: float, easy_fraction: float
) -> float:
    """Return a log-uniform draw from the easy part [floor, hi] or the hard part [lo, floor]."""
    lo, hi = bounds
    if lo < floor < hi:
        lo, hi = (floor, hi) if rng.random() < easy_fraction else (lo, floor)
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def place_lesions(
    rng: np.random.Generator,
    image: FloatImage,
    context: PlacementContext,
    *,
    mix: LesionMix,
    count: int,
) -> tuple[list[Lesion], Mask]:
    """Add up to ``count`` lesions to ``image`` in place; return them and their union mask."""
    union = np.zeros(image.shape, dtype=bool)
    occupied = np.zeros(image.shape, dtype=bool)
    candidates = np.flatnonzero(context.allowed)
    lesions: list[Lesion] = []
    if candidates.size == 0:
        return lesions, union
    for _ in range(count):
        kind = "opacity" if rng.random() < mix.opacity_fraction else "nodule"
        cnr = draw_log_mixture(rng, mix.cnr_range, mix.easy_cnr_floor, mix.easy_fraction)
        diameter_mm = draw_log_mixture(
            rng, mix.diameter_range_mm, mix.easy_diameter_floor_mm, mix.easy_fraction
        )
        shape = _LesionShape.draw(rng, kind)
        while True:
            placed = _try_place(rng, candidates, context, occupied, shape, diameter_mm)
            if placed is not None or diameter_mm * SHRINK < mix.diameter_range_mm[0]:
                break
            diameter_mm *= SHRINK
        if placed is None:
            continue
        row, col = placed
        radius_px = diameter_mm / context.spacing_mm / 2
        box, profile, mask = shape.render(row, col, radius_px, image.shape)
        sigma = background_deviation(image, box, float(context.noise_sigma[int(row), int(col)]))
        contrast = cnr * sigma
        image[box] += np.float32(contrast) * profile
        union[box] |= mask
        occupied[box] |= profile > 0
        lung_label = int(context.lungs[int(row), int(col)])
        lesions.append(
            Lesion(
                lesion_id=len(lesions) + 1,
                kind=kind,
                center_row=row,
                center_col=col,
                diameter_mm=diameter_mm,
                diameter_px=2 * radius_px,
                contrast=contrast,
                cnr=cnr,
                lung="right" if lung_label == 1 else "left",
                overlaps_rib=bool(context.ribs[int(row), int(col)]),
                overlaps_heart=bool((context.heart[box] & mask).any()),
            )
        )
    return lesions, union


def background_deviation(image: FloatImage, box: tuple[slice, slice], noise_sigma: float) -> float:
    """Return the deviation a lesion in ``box`` must stand out from: quantum noise and the
    anatomy's own variation there, added in quadrature."""
    anatomy = float(np.std(image[box], dtype=np.float64))
    return float(np.hypot(noise_sigma, anatomy))


def _try_place(
    rng: np.random.Generator,
    candidates: npt.NDArray[np.intp],
    context: PlacementContext,
    occupied: Mask,
    shape: _LesionShape,
    diameter_mm: float,
) -> tuple[float, float] | None:
    """Return a centre whose whole footprint lies in allowed lung, clear of other lesions."""
    rows, cols = context.allowed.shape
    radius_px = diameter_mm / context.spacing_mm / 2
    for _ in range(PLACEMENT_TRIES):
        flat = int(candidates[rng.integers(candidates.size)])
        row = flat // cols + float(rng.uniform(-0.5, 0.5))
        col = flat % cols + float(rng.uniform(-0.5, 0.5))
        reach = shape.reach * radius_px
        if row < reach or col < reach or row + reach >= rows or col + reach >= cols:
            continue
        box, profile, _mask = shape.render(row, col, radius_px, (rows, cols))
        footprint = profile > 0
        if not context.allowed[box][footprint].all() or occupied[box][footprint].any():
            continue
        # The centre must be in a lung so "lung" in the manifest is well defined.
        if context.lungs[int(row), int(col)] == 0:
            continue
        return row, col
    return None


@dataclass(frozen=True)
class _LesionShape:
    """A lesion's outline and profile, independent of where and how big it is."""

    kind: str
    harmonics: tuple[tuple[float, int, float], ...]  # (amplitude, order, phase) of the outline

    @property
    def reach(self) -> float:
        """Return the farthest extent of the footprint in radii (outline bumps, soft edge)."""
        bumps = 1.0 + sum(a for a, _n, _p in self.harmonics)
        return bumps * (OPACITY_REACH if self.kind == "opacity" else 1.0) + 0.05

    @staticmethod
    def draw(rng: np.random.Generator, kind: str) -> _LesionShape:
        """Return a random outline: nearly round nodules, lobulated opacities."""
        harmonics: tuple[tuple[float, int, float], ...]
        if kind == "nodule":
            harmonics = ((float(rng.uniform(0.0, 0.08)), 3, float(rng.uniform(0, 2 * np.pi))),)
        else:
            harmonics = tuple(
                (float(rng.uniform(0.05, 0.18)), order, float(rng.uniform(0, 2 * np.pi)))
                for order in (2, 3)
            )
        return _LesionShape(kind=kind, harmonics=harmonics)

    def render(
        self, row: float, col: float, radius_px: float, image_shape: tuple[int, ...]
    ) -> tuple[tuple[slice, slice], FloatImage, Mask]:
        """Return the box (clipped to the image), the profile (peak 1) and the lesion mask."""
        reach = self.reach * radius_px + 1.0
        r0, r1 = (
            max(0, int(np.floor(row - reach))),
            min(image_shape[0], int(np.ceil(row + reach)) + 1),
        )
        c0, c1 = (
            max(0, int(np.floor(col - reach))),
            min(image_shape[1], int(np.ceil(col + reach)) + 1),
        )
        yy = np.arange(r0, r1, dtype=np.float32)[:, None] - np.float32(row)
        xx = np.arange(c0, c1, dtype=np.float32)[None, :] - np.float32(col)
        theta = np.arctan2(yy, xx)
        outline = np.ones_like(theta)
        for amplitude, order, phase in self.harmonics:
            outline = outline + amplitude * np.cos(order * theta + phase)
        # At least 0.75 px, so even a sub-pixel lesion covers the pixel nearest its centre.
        rho = np.hypot(yy, xx) / (np.float32(max(radius_px, 0.75)) * outline)
        if self.kind == "nodule":
            # Projected sphere: thickness √(1 − ρ²).
            profile = np.sqrt(np.clip(1.0 - rho * rho, 0.0, 1.0))
        else:
            # Ill-defined edge: a tanh shoulder, shifted so it reaches exactly 0 at OPACITY_REACH.
            profile = (_shoulder(rho) - _shoulder(OPACITY_REACH)) / (
                _shoulder(0.0) - _shoulder(OPACITY_REACH)
            )
            profile = np.where(rho < OPACITY_REACH, np.clip(profile, 0.0, 1.0), 0.0)
        mask = rho <= 1.0
        return (slice(r0, r1), slice(c0, c1)), profile.astype(np.float32), mask


def _shoulder(rho: npt.NDArray[np.floating] | float) -> npt.NDArray[np.float32]:
    """Return the opacity's unshifted edge profile: 1 inside, falling through ρ = 0.8."""
    result: npt.NDArray[np.float32] = (
        0.5 * (1.0 - np.tanh((np.asarray(rho) - 0.8) / 0.14))
    ).astype(np.float32)
    return result
