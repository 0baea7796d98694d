"""Overlays: transparent where the map is low, hot colours for high values, legible legends."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.results.overlays import (
    LEFT_LUNG_RGB,
    LUNGS_LEGEND,
    RIGHT_LUNG_RGB,
    Legend,
    colormap_lut,
    composite,
    encode_png,
    heatmap_rgba,
    lungs_rgba,
    printable,
)


def luminance(rgb: np.ndarray) -> np.ndarray:
    weighted: np.ndarray = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
    return weighted


def test_high_values_get_hot_colours_and_low_values_cool_ones() -> None:
    jet = colormap_lut("jet")
    assert jet.shape == (256, 3) and jet.dtype == np.uint8
    assert jet[-1, 0] > 100 and jet[-1, 2] == 0  # top: dark red
    assert jet[0, 2] > 100 and jet[0, 0] == 0  # bottom: dark blue
    inferno = luminance(colormap_lut("inferno"))
    assert np.all(np.diff(inferno) >= -1.0)  # brighter with the value, as a reader expects
    with pytest.raises(ValueError, match="unknown colormap"):
        colormap_lut("rainbow")


def test_heatmap_is_transparent_where_values_are_low_and_coloured_where_high() -> None:
    values = np.zeros((4, 5), np.float32)
    values[1, 2] = 2.0
    values[2, 2] = 0.6
    values[3, 4] = np.nan
    rgba = heatmap_rgba(values, vmin=0.0, vmax=2.0, alpha_max=0.5)
    assert rgba.shape == (4, 5, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 0 and rgba[3, 4, 3] == 0  # zero and NaN: the image shows through
    assert rgba[1, 2, 3] == 128  # the maximum at alpha_max
    assert 0 < rgba[2, 2, 3] <= 128  # 0.3 on the 0..1 scale: partly see-through
    hot, mid = rgba[1, 2, :3].astype(int), rgba[2, 2, :3].astype(int)
    assert hot[0] > hot[2] and mid[2] > mid[0]  # the peak red, the lower value blue
    with pytest.raises(ValueError, match="greater than vmin"):
        heatmap_rgba(values, vmin=1.0, vmax=1.0)


def test_lungs_overlay_fills_each_lung_in_its_colour_and_nothing_else() -> None:
    labels = np.zeros((40, 60), np.uint8)
    labels[5:35, 5:25] = 1
    labels[8:38, 35:55] = 2
    rgba = lungs_rgba(labels)
    assert rgba.shape == (40, 60, 4)
    assert rgba[labels == 0, 3].max() == 0  # fully transparent outside the lungs
    assert rgba[labels > 0, 3].min() > 0
    assert tuple(rgba[20, 15, :3]) == RIGHT_LUNG_RGB
    assert tuple(rgba[20, 45, :3]) == LEFT_LUNG_RGB
    assert rgba[5, 15, 3] > rgba[20, 15, 3]  # the outline is stronger than the fill


def test_composite_blends_the_overlay_and_keeps_the_images_size() -> None:
    image = np.full((90, 120), 100, np.uint8)
    clear = np.zeros((90, 120, 4), np.uint8)
    out = composite(image, clear)
    assert out.shape == (90, 120, 3) and out.dtype == np.uint8
    assert np.all(out == 100)
    red = clear.copy()
    red[..., 0] = 255
    red[..., 3] = 128
    half = composite(image, red)[50, 60]
    assert tuple(half) == (178, 50, 50)  # 100 · (1 − 0.5) + 255 · 0.5, rounded


def test_composite_draws_a_colour_scale_legend_and_a_caption() -> None:
    image = np.full((400, 300), 128, np.uint8)
    out = composite(
        image,
        np.zeros((400, 300, 4), np.uint8),
        legend=Legend("probability", 0.0, 1.0),
        caption="Grad-CAM – demo model",
    )
    assert out.shape == (400, 300, 3)
    corner = out[:200, 150:].reshape(-1, 3).astype(int)
    # The bar's ends: jet's top (dark red) and bottom (dark blue) colours are in the corner.
    for colour in (colormap_lut("jet")[-1], colormap_lut("jet")[0]):
        assert np.abs(corner - colour.astype(int)).sum(axis=1).min() <= 6
    assert (corner == 255).all(axis=1).any()  # white tick labels
    bottom = out[-40:, :150]
    # Light text (anti-aliased at this small size) on a dark strip.
    assert (bottom > 220).all(axis=2).any() and (bottom < 100).all(axis=2).any()
    assert np.all(out[200:300, :100] == 128)  # the rest of the image is untouched


def test_legend_text_stays_readable_when_a_2k_image_is_fitted_to_the_screen() -> None:
    rows, cols = 2000, 1800
    out = composite(
        np.zeros((rows, cols), np.uint8),
        np.zeros((rows, cols, 4), np.uint8),
        legend=Legend("probability", 0.0, 1.0),
    )
    white = (out[: rows // 2, cols // 2 :] == 255).all(axis=2)
    ink_rows = np.flatnonzero(white.any(axis=1))
    # Each run of rows with ink is one line: the title, then one tick label per run.
    runs = np.split(ink_rows, np.flatnonzero(np.diff(ink_rows) > 1) + 1)
    assert len(runs) == 6
    # Fitted to 800 screen rows, digits are at least 8 pixels tall (a 12-px UI font's are ~9).
    assert min(len(run) for run in runs) * 800 / rows >= 8


def test_lungs_composite_has_a_key_legend() -> None:
    image = np.full((300, 300), 90, np.uint8)
    labels = np.zeros((300, 300), np.uint8)
    out = composite(image, lungs_rgba(labels), legend=LUNGS_LEGEND)
    corner = out[:100, 100:].reshape(-1, 3)
    assert (corner == RIGHT_LUNG_RGB).all(axis=1).any()
    assert (corner == LEFT_LUNG_RGB).all(axis=1).any()


@pytest.mark.parametrize("shape", [(7, 9), (7, 9, 3), (7, 9, 4)])
def test_png_round_trip(shape) -> None:
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(array))))
    np.testing.assert_array_equal(decoded, array)


def test_png_refuses_other_types() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        encode_png(np.zeros((4, 4, 2), np.uint8))


def test_text_the_font_cannot_draw_is_replaced() -> None:
    assert printable("Grad-CAM – Müller · 2×2") == "Grad-CAM - Muller · 2x2"
    assert printable("≥ 0.5") == ">= 0.5"
    assert printable("肺") == "?"


def test_legend_ticks_read_differently_however_small_the_range() -> None:
    assert Legend("probability", 0.0, 1.0).tick_labels() == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    # A faint Grad-CAM (peak 0.02): two decimals would print 0.01 and 0.02 twice each.
    assert Legend("Grad-CAM", 0.0, 0.02).tick_labels() == [
        "0.000", "0.005", "0.010", "0.015", "0.020"
    ]  # fmt: skip
    assert Legend("Grad-CAM", 0.0, 3.5, number_format="{:.1f}").tick_labels()[-1] == "3.5"
