"""Burned-in confounders: laterality marker, site text token, border artifact (collimation, ruler).

Presence follows one rule for each confounder, with a base rate b and a strength s in [0, 1]:

    P(present | label = 1) = b + s·(1 − b)        P(present | label = 0) = b·(1 − s)

so s = 0 makes presence independent of the label (rate b on every image) and s = 1 makes it
present exactly on the positive images. The marker and the border artifact are physical objects
in the beam (drawn before the noise); the text token is digital (drawn after it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.training.phantom.imaging import MAX_STORED, FloatImage, Mask

Box = tuple[int, int, int, int]  # row0, col0, row1, col1, half-open

MARKER_BASE_RATE = 0.5
TEXT_BASE_RATE = 0.5
BORDER_BASE_RATE = 0.3


@dataclass(frozen=True)
class ConfounderStrengths:
    """How strongly each burned-in confounder is tied to the label (0 = not at all)."""

    marker: float = 0.0
    text: float = 0.0
    border: float = 0.0


@dataclass(frozen=True)
class Annotation:
    """One burned-in object: what it says, where it is, and its pixels within its box."""

    kind: str  # "marker", "text", "collimation" or "ruler"
    text: str
    box: Box
    coverage: FloatImage  # 0..1 within the box: how much of each pixel the object covers
    value: float  # display value (MONOCHROME2 polarity) of the object

    def slices(self) -> tuple[slice, slice]:
        """Return the box as numpy slices."""
        r0, c0, r1, c1 = self.box
        return slice(r0, r1), slice(c0, c1)


@dataclass(frozen=True)
class Annotations:
    """The confounders drawn for one image (None where absent)."""

    marker: Annotation | None
    text: Annotation | None
    border: Annotation | None

    def footprint(self, shape: tuple[int, int], margin: int) -> Mask:
        """Return a mask of every annotation's box grown by ``margin`` pixels."""
        mask = np.zeros(shape, dtype=bool)
        for item in (self.marker, self.text, self.border):
            if item is not None:
                r0, c0, r1, c1 = item.box
                mask[max(0, r0 - margin) : r1 + margin, max(0, c0 - margin) : c1 + margin] = True
        return mask


def presence_probability(*, label: int, strength: float, base_rate: float) -> float:
    """Return the chance a confounder is present given the label (module docstring rule)."""
    if label:
        return base_rate + strength * (1.0 - base_rate)
    return base_rate * (1.0 - strength)


def plan_annotations(
    rng: np.random.Generator,
    *,
    label: int,
    shape: tuple[int, int],
    spacing_mm: float,
    strengths: ConfounderStrengths,
    site_token: str,
) -> Annotations:
    """Return which confounders this image carries and where (draws a fixed number of values)."""
    draws = rng.random(3)  # one per confounder, so each presence is monotone in its strength
    has_marker = draws[0] < presence_probability(
        label=label, strength=strengths.marker, base_rate=MARKER_BASE_RATE
    )
    has_text = draws[1] < presence_probability(
        label=label, strength=strengths.text, base_rate=TEXT_BASE_RATE
    )
    has_border = draws[2] < presence_probability(
        label=label, strength=strengths.border, base_rate=BORDER_BASE_RATE
    )
    # Each object draws from its own child stream: adding one never moves another.
    marker_rng, text_rng, border_rng = rng.spawn(3)
    border = _border(border_rng, shape, spacing_mm) if has_border else None
    insets = _insets(border, shape)
    marker = _marker(marker_rng, shape, spacing_mm, insets) if has_marker else None
    text = _text(text_rng, shape, spacing_mm, insets, site_token) if has_text else None
    return Annotations(marker=marker, text=text, border=border)


def burn(image: FloatImage, annotation: Annotation) -> None:
    """Draw ``annotation`` into ``image`` in place, covering what lies beneath."""
    region = annotation.slices()
    cover = annotation.coverage
    image[region] = image[region] * (1.0 - cover) + np.float32(annotation.value) * cover


def _insets(border: Annotation | None, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Return how far (top, left, bottom, right) other annotations must stay from the edges."""
    if border is None:
        return (0, 0, 0, 0)
    r0, c0, r1, c1 = border.box
    rows, cols = shape
    if r1 - r0 < c1 - c0:  # a strip along the top or bottom edge
        return (r1, 0, 0, 0) if r0 == 0 else (0, 0, rows - r0, 0)
    return (0, c1, 0, 0) if c0 == 0 else (0, 0, 0, cols - c0)


@lru_cache(maxsize=256)
def _glyphs(text: str) -> Mask:
    """Return ``text`` rendered in Pillow's built-in bitmap font, cropped to its ink."""
    font = ImageFont.load_default_imagefont()
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, fill=255, font=font)
    ink = np.asarray(canvas) > 127
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    result: Mask = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    result.setflags(write=False)
    return result


def _scaled_text(text: str, height_px: float, bold: bool) -> Mask:
    """Return the text's ink scaled by a whole factor to about ``height_px`` rows."""
    ink = _glyphs(text)
    factor = max(1, round(height_px / ink.shape[0]))
    scaled = np.kron(ink, np.ones((factor, factor), dtype=bool))
    if bold and factor > 1:
        # Lead markers have thick strokes: thicken by a third of the scale factor.
        grow = max(1, factor // 3)
        padded = np.pad(scaled, grow)
        thick = np.zeros_like(padded)
        for dr in range(-grow, grow + 1):
            for dc in range(-grow, grow + 1):
                thick |= np.roll(np.roll(padded, dr, axis=0), dc, axis=1)
        return thick
    return scaled


def _place(
    rng: np.random.Generator,
    size: tuple[int, int],
    rows_range: tuple[float, float],
    cols_range: tuple[float, float],
    shape: tuple[int, int],
) -> tuple[int, int]:
    """Return a top-left corner for an object of ``size`` inside fractional ranges of the image."""
    rows, cols = shape
    h, w = size
    r_lo, r_hi = int(rows_range[0]), max(int(rows_range[0]), int(rows_range[1]) - h)
    c_lo, c_hi = int(cols_range[0]), max(int(cols_range[0]), int(cols_range[1]) - w)
    row = int(rng.integers(r_lo, r_hi + 1))
    col = int(rng.integers(c_lo, c_hi + 1))
    return min(max(0, row), rows - h), min(max(0, col), cols - w)


def _marker(
    rng: np.random.Generator, shape: tuple[int, int], spacing_mm: float, insets: tuple[int, ...]
) -> Annotation:
    """Return an "L" (top right: the patient's left) or "R" (top left) lead marker."""
    rows, cols = shape
    letter = "L" if rng.random() < 0.5 else "R"
    ink = _scaled_text(letter, rng.uniform(12.0, 18.0) / spacing_mm, bold=True)
    if rng.random() < 0.5:  # many markers sit in a small square holder
        pad = max(1, ink.shape[0] // 6)
        framed = np.zeros((ink.shape[0] + 4 * pad, ink.shape[1] + 4 * pad), dtype=bool)
        framed[:pad], framed[-pad:], framed[:, :pad], framed[:, -pad:] = True, True, True, True
        framed[2 * pad : 2 * pad + ink.shape[0], 2 * pad : 2 * pad + ink.shape[1]] = ink
        ink = framed
    top, left, _bottom, right = insets
    margin = max(1, round(0.02 * cols))
    row_range = (top + margin, top + margin + 0.1 * rows)
    col_range: tuple[float, float]
    if letter == "L":
        col_range = (cols - right - margin - 0.14 * cols, cols - right - margin)
    else:
        col_range = (left + margin, left + margin + 0.14 * cols)
    return _annotation("marker", letter, ink, rng, row_range, col_range, shape, (0.93, 1.0))


def _text(
    rng: np.random.Generator,
    shape: tuple[int, int],
    spacing_mm: float,
    insets: tuple[int, ...],
    token: str,
) -> Annotation:
    """Return the site's label, burned in near a bottom corner."""
    rows, cols = shape
    ink = _scaled_text(token, rng.uniform(4.0, 6.0) / spacing_mm, bold=False)
    _top, left, bottom, right = insets
    margin = max(1, round(0.02 * rows))
    row_range = (rows - bottom - margin - 0.08 * rows, rows - bottom - margin)
    col_range: tuple[float, float]
    if rng.random() < 0.5:
        col_range = (left + margin, left + margin + 0.25 * cols)
    else:
        col_range = (cols - right - margin - 0.25 * cols, cols - right - margin)
    return _annotation("text", token, ink, rng, row_range, col_range, shape, (0.85, 1.0))


def _annotation(
    kind: str,
    text: str,
    ink: Mask,
    rng: np.random.Generator,
    row_range: tuple[float, float],
    col_range: tuple[float, float],
    shape: tuple[int, int],
    value_range: tuple[float, float],
) -> Annotation:
    """Return an annotation for ``ink`` placed at random within the given ranges."""
    h, w = min(ink.shape[0], shape[0]), min(ink.shape[1], shape[1])
    row, col = _place(rng, (h, w), row_range, col_range, shape)
    value = MAX_STORED * float(rng.uniform(*value_range))
    coverage = ink[:h, :w].astype(np.float32)
    return Annotation(kind, text, (row, col, row + h, col + w), coverage, value)


def _border(rng: np.random.Generator, shape: tuple[int, int], spacing_mm: float) -> Annotation:
    """Return a collimation edge (a bright unexposed band) or a ruler along one border."""
    rows, cols = shape
    side = str(rng.choice(["top", "bottom", "left", "right"]))
    along = cols if side in ("top", "bottom") else rows
    if rng.random() < 0.6:
        depth = max(
            2, round(rng.uniform(0.02, 0.05) * (rows if side in ("top", "bottom") else cols))
        )
        strip = np.ones((depth, along), dtype=np.float32)
        strip[-1] = 0.5  # penumbra: the collimator blade's edge is not perfectly sharp
        kind, start = "collimation", 0
    else:
        depth = max(3, round(rng.uniform(8.0, 12.0) / spacing_mm))
        length = max(4, round(rng.uniform(0.4, 0.8) * along))
        start = int(rng.integers(0, along - length + 1))
        strip = np.full((depth, length), 0.55, dtype=np.float32)
        for tick_mm in np.arange(0.0, length * spacing_mm, 5.0):
            position = min(length - 1, round(tick_mm / spacing_mm))
            long_tick = round(tick_mm) % 10 == 0
            strip[: max(1, round(depth * (0.65 if long_tick else 0.35))), position] = 1.0
        kind = "ruler"
    # The strip is drawn with its outer edge first; orient it onto the chosen side.
    if side == "bottom":
        strip = strip[::-1]
    if side in ("left", "right"):
        strip = strip.T if side == "left" else strip.T[:, ::-1]
    h, w = strip.shape
    r0 = {"top": 0, "bottom": rows - h}.get(side, start)
    c0 = {"left": 0, "right": cols - w}.get(side, start)
    value = MAX_STORED * float(rng.uniform(0.9, 0.97))
    return Annotation(kind, "", (r0, c0, r0 + h, c0 + w), strip, value)
