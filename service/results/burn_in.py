"""Text and colour legend burned into an RGB image, so a Secondary Capture explains itself.

Burned-in text is what any PACS shows, whatever it does with the header: the disclaimer and the
model's name must be in the pixels, not only in attributes.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# One source for colours and glyph fallbacks, so the legend matches the overlay it explains.
from service.results.overlays import colormap_lut, printable

CAPTION_BACKGROUND = (0, 0, 0)
CAPTION_TEXT = (255, 255, 255)
_LEGEND_BACKGROUND = (0, 0, 0)
_MIN_FONT_PX = 6


def text_size(rows: int, columns: int) -> int:
    """Return the font size (px) for burned-in text: 1.7 % of the long side, as in overlays.

    A 2000-pixel radiograph fitted to a laptop screen is shown at about 0.4x; 34 px text is
    then about 14 screen pixels.
    """
    return max(_MIN_FONT_PX, round(0.017 * max(rows, columns)))


def caption_font_size(rows: int, columns: int, lines: list[str]) -> int:
    """Return the font size (px) of a caption: ``text_size``, shrunk until every line fits."""
    size = text_size(rows, columns)
    usable = columns - 2 * _margin(size)
    while size > _MIN_FONT_PX and max(_text_width(line, size) for line in lines) > usable:
        size -= 1
    return size


def burn_in_caption(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """Return a new image: ``rgb`` with a black bar of text lines added below it.

    The bar is added, not drawn over the image, so no anatomy is hidden and the image rows keep
    their geometry. A line too long for a narrow image is clipped at the right edge.
    """
    _check_rgb(rgb)
    if not lines:
        raise ValueError("a caption needs at least one line")
    texts = [printable(line) for line in lines]
    rows, columns = rgb.shape[:2]
    size = caption_font_size(rows, columns, texts)
    font = _font(size)
    margin = _margin(size)
    line_height = size + max(1, size // 3)
    bar = Image.new("RGB", (columns, 2 * margin + line_height * len(texts)), CAPTION_BACKGROUND)
    draw = ImageDraw.Draw(bar)
    for index, text in enumerate(texts):
        draw.text((margin, margin + index * line_height), text, fill=CAPTION_TEXT, font=font)
    return np.concatenate([rgb, np.asarray(bar, dtype=np.uint8)], axis=0)


def draw_colour_legend(
    rgb: np.ndarray, colormap_name: str, vmin: float, vmax: float, label: str
) -> np.ndarray:
    """Return a copy of ``rgb`` with a vertical colour bar, its range and label, top right.

    For callers without a legend of their own (``overlays.composite`` draws a fuller one); the
    colours are ``overlays.colormap_lut``'s, the ones the heatmap was painted with.
    """
    _check_rgb(rgb)
    if not vmax > vmin:
        raise ValueError(f"legend range must increase: {vmin} .. {vmax}")
    rows, columns = rgb.shape[:2]
    size = text_size(rows, columns)
    font = _font(size)
    margin = _margin(size)
    bar_height = max(8, rows // 4)
    bar_width = max(4, columns // 50)
    texts = [printable(label), _format_value(vmax), _format_value(vmin)]
    text_width = max(_text_width(text, size) for text in texts)
    box_width = min(columns, 3 * margin + bar_width + text_width)
    box_height = min(rows, 3 * margin + size + bar_height)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(image)
    left = columns - box_width
    draw.rectangle((left, 0, columns - 1, box_height - 1), fill=_LEGEND_BACKGROUND)
    draw.text((left + margin, margin), texts[0], fill=CAPTION_TEXT, font=font)
    bar_top = 2 * margin + size
    lut = colormap_lut(colormap_name)  # (256, 3), entry 0 for vmin
    steps = np.round(np.linspace(255, 0, bar_height)).astype(np.intp)
    bar = np.ascontiguousarray(lut[steps][:, np.newaxis, :].repeat(bar_width, axis=1))
    image.paste(Image.fromarray(bar), (left + margin, bar_top))
    text_left = left + 2 * margin + bar_width
    draw.text((text_left, bar_top), texts[1], fill=CAPTION_TEXT, font=font)
    draw.text((text_left, bar_top + bar_height - size), texts[2], fill=CAPTION_TEXT, font=font)
    return np.asarray(image, dtype=np.uint8)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a (rows, columns, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError("image is empty")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's embedded font: the same glyphs on every machine, no system font needed.
    return ImageFont.load_default(size=size)


def _text_width(text: str, size: int) -> int:
    return math.ceil(_font(size).getlength(text))


def _margin(size: int) -> int:
    return max(2, size // 2)


def _format_value(value: float) -> str:
    return f"{value:.3g}"
