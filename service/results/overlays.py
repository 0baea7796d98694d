"""Overlay images: heatmaps and lung fields as RGBA, composites with a legend, PNG bytes.

Every array here is at the original image's geometry (map explanation outputs back with
``InputGeometry.to_original`` first), rows × columns, display orientation. Colour maps are
small lookup tables built here, so drawing needs numpy and Pillow only (no matplotlib).
Pure: no web, database or queue code.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]

# Control points (position 0..1, (r, g, b) 0..1), interpolated linearly into 256 entries.
# "jet" follows matplotlib's segment data; "inferno" samples matplotlib's inferno every 0.1
# (perceptually uniform, prints well in grey; jet is what Grad-CAM readers expect).
_CONTROL_POINTS: dict[str, tuple[tuple[float, tuple[float, float, float]], ...]] = {
    "jet": (
        (0.0, (0.0, 0.0, 0.5)),
        (0.11, (0.0, 0.0, 1.0)),
        (0.125, (0.0, 0.0, 1.0)),
        (0.34, (0.0, 0.86, 1.0)),
        (0.35, (0.0, 0.9, 1.0)),
        (0.375, (0.1, 1.0, 0.9)),
        (0.64, (0.9, 1.0, 0.1)),
        (0.66, (1.0, 0.93, 0.0)),
        (0.89, (1.0, 0.0, 0.0)),
        (0.91, (0.95, 0.0, 0.0)),
        (1.0, (0.5, 0.0, 0.0)),
    ),
    "inferno": (
        (0.0, (0.001, 0.000, 0.014)),
        (0.1, (0.087, 0.045, 0.225)),
        (0.2, (0.258, 0.039, 0.407)),
        (0.3, (0.416, 0.090, 0.433)),
        (0.4, (0.578, 0.148, 0.404)),
        (0.5, (0.736, 0.216, 0.330)),
        (0.6, (0.865, 0.317, 0.226)),
        (0.7, (0.954, 0.470, 0.099)),
        (0.8, (0.988, 0.645, 0.040)),
        (0.9, (0.964, 0.844, 0.273)),
        (1.0, (0.988, 0.998, 0.645)),
    ),
}
COLORMAPS = tuple(_CONTROL_POINTS)

# Patient's right lung (image-left on PA/AP) and left lung: blue and amber stay apart for
# red-green colour blindness and from the heatmaps' reds.
RIGHT_LUNG_RGB: RGB = (30, 144, 255)
LEFT_LUNG_RGB: RGB = (255, 176, 0)
_LUNG_COLOURS = {1: RIGHT_LUNG_RGB, 2: LEFT_LUNG_RGB}

_LEGEND_BACKGROUND = (0, 0, 0, 170)  # dark, see-through: white text reads on any image
_TEXT = (255, 255, 255, 255)
# Pillow's built-in scalable font (Aileron) covers ASCII and a little punctuation; anything
# else draws as an empty box. Known look-alikes first, then accents dropped, then "?".
_LOOK_ALIKES = str.maketrans(
    {"–": "-", "—": "-", "×": "x", "²": "2", "≥": ">=", "≤": "<=", "µ": "u", "→": "->"}
)
_EXTRA_GLYPHS = frozenset("…·°±‘’“”")


@cache
def _lut(name: str) -> np.ndarray:
    if name not in _CONTROL_POINTS:
        raise ValueError(f"unknown colormap '{name}', choose one of {list(COLORMAPS)}")
    positions = np.array([p for p, _ in _CONTROL_POINTS[name]])
    colours = np.array([c for _, c in _CONTROL_POINTS[name]])
    steps = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(steps, positions, colours[:, k]) for k in range(3)], axis=1)
    lut = np.round(table * 255).astype(np.uint8)
    lut.flags.writeable = False  # shared by every caller through the cache
    return lut


@cache
def _packed_lut(name: str) -> np.ndarray:
    """Return the colour map as (256,) uint32 whose bytes are R, G, B, 0 (a pixel's RGBA)."""
    rgba = np.zeros((256, 4), dtype=np.uint8)
    rgba[:, :3] = _lut(name)
    packed = rgba.view(np.uint32).ravel()
    packed.flags.writeable = False
    return packed


def colormap_lut(name: str) -> np.ndarray:
    """Return the colour map's lookup table: (256, 3) uint8, entry 0 for the lowest value."""
    return _lut(name)


def heatmap_rgba(
    values: np.ndarray,
    *,
    vmin: float,
    vmax: float,
    colormap: str = "jet",
    alpha_max: float = 0.5,
    threshold: float = 0.15,
    ramp: float = 0.15,
) -> np.ndarray:
    """Return a (rows, cols, 4) uint8 RGBA overlay of a 2D map.

    Values are scaled so ``vmin`` → 0 and ``vmax`` → 1 (clipped) and coloured by
    ``colormap``. Opacity is 0 up to ``threshold`` (on that 0..1 scale), so the image shows
    through where the map is low, rises linearly over ``ramp`` to ``alpha_max`` and stays
    there. NaN is fully transparent.
    """
    if values.ndim != 2:
        raise ValueError(f"heatmap_rgba needs a 2D map, got shape {values.shape}")
    if not vmax > vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin})")
    if not 0.0 <= alpha_max <= 1.0 or ramp <= 0.0:
        raise ValueError("alpha_max must lie in 0..1 and ramp must be positive")
    # In place, in float32 and through lookup tables: a 1024² map takes a few milliseconds.
    scaled = np.asarray(values, dtype=np.float32) - np.float32(vmin)
    scaled *= np.float32(1.0 / (vmax - vmin))
    valid = np.isfinite(scaled)
    all_valid = bool(valid.all())
    if not all_valid:
        scaled[~valid] = 0.0
    np.clip(scaled, 0.0, 1.0, out=scaled)
    index = np.rint(scaled * 255).astype(np.uint8)
    # One 4-byte lookup per pixel (RGB and a zero alpha, filled in below).
    packed: np.ndarray = np.take(_packed_lut(colormap), index)
    rgba = packed.view(np.uint8).reshape(*values.shape, 4)
    top = np.float32(alpha_max * 255)
    opacity = (scaled - np.float32(threshold)) * np.float32(alpha_max * 255 / ramp)
    np.clip(opacity, 0.0, top, out=opacity)
    if not all_valid:
        opacity[~valid] = 0.0
    rgba[..., 3] = np.rint(opacity)
    return rgba


def lungs_rgba(
    lung_labels: np.ndarray, *, fill_alpha: float = 0.3, edge_alpha: float = 0.9
) -> np.ndarray:
    """Return a (rows, cols, 4) uint8 RGBA overlay of the lung fields: each lung filled in its
    colour (right blue, left amber) with a stronger outline, fully transparent elsewhere.

    ``lung_labels``: 0 background, 1 patient's right lung, 2 patient's left lung.
    """
    if lung_labels.ndim != 2:
        raise ValueError(f"lungs_rgba needs a 2D label map, got shape {lung_labels.shape}")
    rgba = np.zeros((*lung_labels.shape, 4), dtype=np.uint8)
    # Outline width grows with the image so it stays visible when a 2k image is shown small.
    width = max(1, round(max(lung_labels.shape) / 500))
    for label, colour in _LUNG_COLOURS.items():
        lung = lung_labels == label
        if not lung.any():
            continue
        edge = lung & ~_erode(lung, width)
        rgba[lung, :3] = colour
        rgba[lung, 3] = round(fill_alpha * 255)
        rgba[edge, 3] = round(edge_alpha * 255)
    return rgba


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Return ``mask`` eroded ``steps`` times by a 4-neighbour cross (image edge = outside)."""
    inner = mask.copy()
    for _ in range(steps):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[0, :] = shrunk[-1, :] = False
        shrunk[:, 0] = shrunk[:, -1] = False
        inner = shrunk
    return inner


MAX_TICK_DECIMALS = 6


@dataclass(frozen=True)
class Legend:
    """A colour-scale legend: what the colours mean and the numbers to print beside them.

    ``ticks`` defaults to five evenly spaced values from ``vmin`` to ``vmax``.
    """

    label: str
    vmin: float
    vmax: float
    colormap: str = "jet"
    ticks: tuple[float, ...] = ()
    number_format: str | None = None  # None: two decimals, more where ticks would look alike

    def tick_values(self) -> tuple[float, ...]:
        """Return the ticks to draw: the given ones inside the range, or five even ones."""
        if not self.ticks:
            return tuple(float(v) for v in np.linspace(self.vmin, self.vmax, 5))
        low, high = sorted((self.vmin, self.vmax))
        return tuple(t for t in self.ticks if low <= t <= high)

    def tick_labels(self) -> list[str]:
        """Return the ticks' labels: a small Grad-CAM range (0 to 0.02) gets as many decimals
        as it takes for different ticks to read differently (0.005, not 0.01 twice)."""
        values = self.tick_values()
        if self.number_format is not None:
            return [self.number_format.format(v) for v in values]
        labels: list[str] = []
        for decimals in range(2, MAX_TICK_DECIMALS + 1):
            labels = [f"{v:.{decimals}f}" for v in values]
            if len(set(labels)) == len(labels):
                break
        return labels


@dataclass(frozen=True)
class KeyLegend:
    """A legend of named colour swatches (the lung fields, for instance)."""

    label: str
    entries: tuple[tuple[str, RGB], ...]


LUNGS_LEGEND = KeyLegend(
    "lung fields",
    (("patient's right lung", RIGHT_LUNG_RGB), ("patient's left lung", LEFT_LUNG_RGB)),
)


def composite(
    display_image: np.ndarray,
    overlay_rgba: np.ndarray,
    *,
    legend: Legend | KeyLegend | None = None,
    caption: str | None = None,
) -> np.ndarray:
    """Return the image with the overlay alpha-blended on it, as (rows, cols, 3) uint8 RGB,
    with the legend in the top-right corner and the caption along the bottom.

    ``display_image`` is the 8-bit (rows, cols) greyscale image as shown to the reader. Text
    and legend scale with the image, so they stay readable when a 2k image is fitted to a
    1280 × 800 screen; the output keeps the image's size (nothing is added around it).
    """
    if display_image.ndim != 2 or display_image.dtype != np.uint8:
        raise ValueError(
            f"display_image must be 2D uint8, got {display_image.dtype} {display_image.shape}"
        )
    if overlay_rgba.shape != (*display_image.shape, 4):
        raise ValueError(
            f"overlay shape {overlay_rgba.shape} does not match the image "
            f"{display_image.shape} (+4 channels)"
        )
    # grey · (1 − α) + colour · α, rounded: Pillow's alpha compositing over an opaque image
    # (in C, no temporaries: a third of numpy's time).
    canvas = Image.alpha_composite(
        Image.fromarray(display_image).convert("RGBA"),
        Image.fromarray(np.ascontiguousarray(overlay_rgba)),
    )
    layout = _Layout.for_image(*display_image.shape)
    if legend is not None:
        canvas = _draw_legend(canvas, legend, layout)
    if caption:
        canvas = _draw_caption(canvas, caption, layout)
    return np.asarray(canvas.convert("RGB"))


def encode_png(array: np.ndarray, *, compress_level: int = 6) -> bytes:
    """Return PNG bytes of a uint8 image: (rows, cols) grey, (…, 3) RGB or (…, 4) RGBA.

    ``compress_level`` 1 is several times faster than the default 6 for slightly larger files.
    """
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ValueError(f"encode_png needs (rows, cols[, 3|4]), got shape {array.shape}")
    # Pillow picks L, RGB or RGBA from the uint8 array's shape.
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(
        buffer, format="PNG", compress_level=compress_level
    )
    return buffer.getvalue()


def printable(text: str) -> str:
    """Return ``text`` with characters the legend font cannot draw replaced by look-alikes
    (``–`` → ``-``, ``é`` → ``e``) or ``?``."""
    folded = unicodedata.normalize("NFKD", text.translate(_LOOK_ALIKES))
    kept = (c for c in folded if not unicodedata.combining(c))
    return "".join(c if c.isascii() or c in _EXTRA_GLYPHS else "?" for c in kept)


@dataclass(frozen=True)
class _Layout:
    """Sizes in image pixels, all proportional to the image's long side."""

    rows: int
    cols: int
    font_px: int
    margin: int
    padding: int
    bar_width: int
    bar_height: int

    @classmethod
    def for_image(cls, rows: int, cols: int) -> _Layout:
        # A 2000-pixel image fitted to a 1280 × 800 screen is shown at about 0.4×: a
        # 1.7 %-of-long-side font (34 px) is then ~14 screen pixels, a comfortable size.
        unit = max(rows, cols) / 100
        return cls(
            rows=rows,
            cols=cols,
            font_px=max(10, round(1.7 * unit)),
            margin=max(2, round(unit)),
            padding=max(3, round(0.8 * unit)),
            bar_width=max(6, round(2.0 * unit)),
            bar_height=max(30, round(0.22 * rows)),
        )

    def font(self, size: int | None = None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return ImageFont.load_default(size=size or self.font_px)


def _text_size(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont
) -> tuple[int, int, int]:
    """Return (width, height, top offset) of ``text`` as drawn."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(right - left), int(bottom - top), int(top)


def _draw_legend(canvas: Image.Image, legend: Legend | KeyLegend, layout: _Layout) -> Image.Image:
    """Return ``canvas`` with the legend box drawn in its top-right corner."""
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = layout.font()
    title = printable(legend.label)
    pad, gap = layout.padding, max(2, layout.padding // 2)
    title_w, title_h, title_top = _text_size(draw, title, font)
    if isinstance(legend, KeyLegend):
        names = [printable(name) for name, _ in legend.entries]
        lines = [(name, _text_size(draw, name, font)) for name in names]
        swatch = title_h
        line_h = max([swatch] + [h for _, (_, h, _) in lines])
        body_w = swatch + gap + max((w for _, (w, _, _) in lines), default=0)
        body_h = len(lines) * line_h + max(0, len(lines) - 1) * gap
    else:
        labels = legend.tick_labels()
        sizes = [_text_size(draw, text, font) for text in labels]
        tick = max(2, layout.bar_width // 3)
        label_w = max((w for w, _, _ in sizes), default=0)
        body_w = label_w + gap + tick + layout.bar_width
        half_text = max((h for _, h, _ in sizes), default=0) // 2 + 1
        body_h = layout.bar_height + 2 * half_text  # end labels overhang the bar by half
    box_w = max(title_w, body_w) + 2 * pad
    box_h = pad + title_h + gap + body_h + pad
    x0 = layout.cols - layout.margin - box_w
    y0 = layout.margin
    draw.rectangle((x0, y0, x0 + box_w - 1, y0 + box_h - 1), fill=_LEGEND_BACKGROUND)
    right = x0 + box_w - pad
    draw.text((right - title_w, y0 + pad - title_top), title, font=font, fill=_TEXT)
    body_y = y0 + pad + title_h + gap
    if isinstance(legend, KeyLegend):
        for i, ((name, (_, h, top)), (_, colour)) in enumerate(
            zip(lines, legend.entries, strict=True)
        ):
            y = body_y + i * (line_h + gap)
            draw.rectangle(
                (x0 + pad, y, x0 + pad + swatch - 1, y + swatch - 1), fill=(*colour, 255)
            )
            draw.text(
                (x0 + pad + swatch + gap, y + (line_h - h) // 2 - top), name, font=font, fill=_TEXT
            )
    else:
        bar_x = right - layout.bar_width
        bar_y = body_y + half_text
        _paste_bar(layer, legend, bar_x, bar_y, layout)
        for value, text, (w, h, top) in zip(legend.tick_values(), labels, sizes, strict=True):
            y = bar_y + round(_fraction_from_top(legend, value) * (layout.bar_height - 1))
            draw.line((bar_x - tick, y, bar_x - 1, y), fill=_TEXT, width=max(1, tick // 3))
            draw.text((bar_x - tick - gap - w, y - h // 2 - top), text, font=font, fill=_TEXT)
    return Image.alpha_composite(canvas, layer)


def _fraction_from_top(legend: Legend, value: float) -> float:
    """Return where ``value`` sits on the bar, 0 at the top (vmax) to 1 at the bottom."""
    return (legend.vmax - value) / (legend.vmax - legend.vmin)


def _paste_bar(layer: Image.Image, legend: Legend, x: int, y: int, layout: _Layout) -> None:
    """Draw the colour bar (highest value at the top) onto ``layer`` at (x, y)."""
    steps = np.linspace(1.0, 0.0, layout.bar_height)
    colours = colormap_lut(legend.colormap)[np.round(steps * 255).astype(np.intp)]
    bar = np.repeat(colours[:, None, :], layout.bar_width, axis=1)
    opaque = np.concatenate([bar, np.full((*bar.shape[:2], 1), 255, np.uint8)], axis=2)
    layer.paste(Image.fromarray(opaque), (x, y))


def _draw_caption(canvas: Image.Image, caption: str, layout: _Layout) -> Image.Image:
    """Return ``canvas`` with ``caption`` on a dark strip along its bottom-left edge."""
    caption = printable(caption)
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    room = layout.cols - 2 * layout.margin - 2 * layout.padding
    size = layout.font_px
    width, height, top = _text_size(draw, caption, layout.font(size))
    if width > room:  # shrink a long caption to fit rather than cut it off
        size = max(8, int(size * room / width))
        width, height, top = _text_size(draw, caption, layout.font(size))
    pad = layout.padding
    x0 = layout.margin
    y1 = layout.rows - layout.margin
    y0 = y1 - height - 2 * pad
    draw.rectangle((x0, y0, x0 + width + 2 * pad, y1), fill=_LEGEND_BACKGROUND)
    draw.text((x0 + pad, y0 + pad - top), caption, font=layout.font(size), fill=_TEXT)
    return Image.alpha_composite(canvas, layer)
