"""The study view's pictures and shapes: the image in modality units, overlays at the view
size, region outlines. Tiny arrays whose answers are known."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from service.results.overlays import heatmap_rgba
from service.review.region_outlines import outline
from service.review.view_image import (
    NotViewable,
    heatmap_view,
    lungs_view,
    view_image,
    view_map,
    view_size,
)
from tests.factories import make_cr


def decode(data: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """Read a vigil-view-1 file the way the page's script does."""
    (length,) = struct.unpack("<I", data[:4])
    meta = json.loads(data[4 : 4 + length])
    assert (4 + length) % 4 == 0, "the codes must start on an aligned offset"
    codes = np.frombuffer(data[4 + length :], dtype="<u2")
    return meta, codes.reshape(int(meta["height"]), int(meta["width"]))


def with_pixels(pixels: np.ndarray, **attributes: Any) -> Dataset:
    ds = make_cr(rows=pixels.shape[0], columns=pixels.shape[1], **attributes)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def test_small_images_travel_losslessly_in_modality_units() -> None:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100 + 7
    ds = with_pixels(pixels, RescaleSlope=2, RescaleIntercept=-10)
    meta, codes = decode(view_image(ds).to_bytes())
    values = meta["offset"] + codes * meta["step"]
    np.testing.assert_array_equal(values, pixels * 2.0 - 10)
    assert (meta["width"], meta["height"], meta["columns"], meta["rows"]) == (4, 3, 4, 3)
    assert meta["invert"] is False


def test_the_file_window_and_monochrome1_reach_the_browser() -> None:
    ds = with_pixels(
        np.zeros((4, 4)),
        WindowCenter=1000,
        WindowWidth=400,
        PhotometricInterpretation="MONOCHROME1",
    )
    meta, _codes = decode(view_image(ds).to_bytes())
    assert meta["window"] == {"center": 1000.0, "width": 400.0, "function": "LINEAR"}
    assert meta["invert"] is True


def test_large_images_shrink_to_the_view_by_area_averaging() -> None:
    pixels = np.zeros((2048, 1024), dtype=np.uint16)
    pixels[:, 512:] = 4000  # right half bright
    meta, codes = decode(view_image(with_pixels(pixels)).to_bytes())
    assert (meta["width"], meta["height"]) == (512, 1024)
    assert codes[0, 0] == 0 and codes[0, -1] * meta["step"] == pytest.approx(4000)
    assert view_size(rows=3000, columns=2000) == (683, 1024)
    assert view_size(rows=100, columns=80) == (80, 100)  # never enlarged


def test_colour_images_are_refused_with_a_reason() -> None:
    ds = with_pixels(np.zeros((4, 4)))
    ds.PhotometricInterpretation = "RGB"
    with pytest.raises(NotViewable, match="greyscale images only"):
        view_image(ds)


def test_shrink_map_averages_and_keeps_nan_where_all_was_nan() -> None:
    values = np.array([[1, 3, np.nan, np.nan], [5, 7, np.nan, np.nan]], dtype=np.float32)
    small = view_map(values, (2, 1))
    assert small[0, 0] == pytest.approx(4.0) and np.isnan(small[0, 1])
    mixed = np.array([[1, np.nan]], dtype=np.float32)
    assert view_map(mixed, (1, 1))[0, 0] == pytest.approx(1.0)  # NaN left out of the mean


def test_a_map_smaller_than_the_view_grows_smoothly() -> None:
    # Maps are kept at 512 a side and views go up to 1024: no 2×2 blocks of equal values.
    ramp = np.tile(np.linspace(0.0, 1.0, 512, dtype=np.float32), (512, 1))
    grown = view_map(ramp, (1024, 1024))
    assert grown.shape == (1024, 1024)
    steps = np.diff(grown[0, 2:-2])
    assert (steps > 0).all()  # every column differs from its neighbour
    assert grown[0, 0] == pytest.approx(0.0, abs=1e-3) and grown[0, -1] == pytest.approx(1.0)


def test_the_palette_overlay_matches_the_rgba_heatmap() -> None:
    values = np.linspace(0, 2, 64 * 64, dtype=np.float32).reshape(64, 64)
    data, legend = heatmap_view(values, (64, 64), vmin=0.0, vmax=2.0, title="Grad-CAM")
    drawn = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")).astype(int)
    expected = heatmap_rgba(values, vmin=0.0, vmax=2.0, alpha_max=1.0).astype(int)
    assert np.abs(drawn - expected).max() <= 4  # 256 palette steps against continuous values
    assert legend["ticks"] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert legend["colours"][0] == "#000080" and len(legend["colours"]) == 11
    assert drawn[0, 0, 3] == 0 and drawn[-1, -1, 3] == 255  # low values let the image show


def test_the_lung_overlay_keeps_its_labels_when_shrunk() -> None:
    labels = np.zeros((40, 40), dtype=np.uint8)
    labels[10:30, 4:18], labels[10:30, 22:36] = 1, 2
    rgba, legend = lungs_view(labels, (20, 20))
    assert rgba.shape == (20, 20, 4)
    assert tuple(rgba[10, 5, :3]) == (30, 144, 255) and tuple(rgba[10, 14, :3]) == (255, 176, 0)
    assert [e["label"] for e in legend["entries"]] == [
        "patient's right lung",
        "patient's left lung",
    ]


def test_a_rectangle_outline_is_its_four_corners() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:6, 3:9] = True
    shape = outline(mask)
    assert shape.box == (3, 2, 9, 6)
    assert shape.polygon == [(3.0, 2.0), (3.0, 6.0), (9.0, 6.0), (9.0, 2.0)]


def test_a_disc_outline_stays_within_its_box_and_follows_its_edge() -> None:
    rows, cols = np.mgrid[:200, :200]
    disc = (rows - 100) ** 2 + (cols - 100) ** 2 < 60**2
    shape = outline(disc)
    assert shape.box == (41, 41, 160, 160)
    assert 60 < len(shape.polygon) <= 2 * 48 + 4
    for x, y in shape.polygon:
        assert 41 <= x <= 160 and 41 <= y <= 160
    xs = [x for x, _y in shape.polygon]
    assert (min(xs), max(xs)) == (41.0, 160.0)  # the bands through the centre reach the edge


def test_an_empty_region_cannot_be_outlined() -> None:
    with pytest.raises(ValueError, match="empty mask"):
        outline(np.zeros((3, 3), dtype=bool))
