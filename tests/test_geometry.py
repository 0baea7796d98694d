"""Maps between the network input and the original image land on the same anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from service.inference.geometry import InputGeometry, ResizeMode


def blob(shape: tuple[int, int], centre: tuple[float, float], sigma: float) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    squared = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2
    values: np.ndarray = np.exp(-squared / (2 * sigma**2)).astype(np.float32)
    return values


def peak(values: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(col)


def test_letterbox_pads_the_short_side_to_the_inputs_aspect_like_monai() -> None:
    tall = InputGeometry.fit((1955, 1841), (256, 256), ResizeMode.LETTERBOX)
    assert (tall.pad_top, tall.pad_bottom, tall.pad_left, tall.pad_right) == (0, 0, 57, 57)
    odd = InputGeometry.fit((301, 200), (64, 64), "letterbox")
    assert (odd.pad_left, odd.pad_right) == (50, 51)  # the extra pixel goes after
    wide = InputGeometry.fit((200, 300), (96, 128), ResizeMode.LETTERBOX)
    assert wide.padded_shape == (225, 300)
    assert (wide.pad_top, wide.pad_bottom) == (12, 13)
    plain = InputGeometry.fit((1955, 1841), (256, 256))
    assert plain.padded_shape == (1955, 1841)


CASES = [
    ((1955, 1841), (256, 256), ResizeMode.RESIZE),
    ((1955, 1841), (256, 256), ResizeMode.LETTERBOX),
    ((300, 200), (64, 64), ResizeMode.RESIZE),
    ((300, 200), (64, 64), ResizeMode.LETTERBOX),
    ((200, 300), (96, 128), ResizeMode.LETTERBOX),
]


@pytest.mark.parametrize(("original", "size", "mode"), CASES)
def test_a_peak_at_the_input_lands_where_that_pixel_is_on_the_original(original, size, mode):
    geometry = InputGeometry.fit(original, size, mode)
    # Upper right of the input: a flip or transpose would move it to another quadrant.
    at_input = (size[0] // 5, size[1] * 3 // 4)
    where = geometry.point_to_original(*at_input)
    back = geometry.to_original(blob(size, at_input, sigma=2.0))
    assert back.shape == original and back.dtype == np.float32
    # One input pixel covers `scale` original pixels; the peak is within one of them.
    scale = geometry.padded_shape[0] / size[0]
    found = peak(back)
    assert abs(found[0] - where[0]) <= scale and abs(found[1] - where[1]) <= scale
    assert found[0] < original[0] / 2  # upper half
    assert found[1] > original[1] / 2  # right half


@pytest.mark.parametrize(("original", "size", "mode"), CASES)
def test_a_peak_on_the_original_survives_the_round_trip(original, size, mode):
    geometry = InputGeometry.fit(original, size, mode)
    spot = (original[0] * 7 // 10, original[1] // 6)  # lower left, off every axis of symmetry
    sigma = 3.0 * geometry.padded_shape[0] / size[0]  # a few input pixels wide
    at_input = geometry.to_input(blob(original, spot, sigma))
    assert at_input.shape == size
    expected = geometry.point_to_input(*spot)
    found = peak(at_input)
    assert abs(found[0] - expected[0]) <= 1 and abs(found[1] - expected[1]) <= 1
    back = geometry.to_original(at_input)
    scale = geometry.padded_shape[0] / size[0]
    found = peak(back)
    assert abs(found[0] - spot[0]) <= scale and abs(found[1] - spot[1]) <= scale


def test_point_mappings_invert_each_other() -> None:
    geometry = InputGeometry.fit((300, 200), (64, 64), ResizeMode.LETTERBOX)
    row, col = geometry.point_to_original(*geometry.point_to_input(123.0, 45.0))
    assert row == pytest.approx(123.0) and col == pytest.approx(45.0)
    # The input's first column starts at the padding's outer edge, 50 pixels left of the image.
    assert geometry.point_to_original(0, -0.5)[1] == pytest.approx(-50.5)


def test_letterbox_padding_is_cut_off_and_filled() -> None:
    geometry = InputGeometry.fit((300, 200), (60, 60), ResizeMode.LETTERBOX)
    at_input = geometry.to_input(np.ones((300, 200), np.float32), pad_value=0.0)
    assert at_input[:, :8].max() == 0.0 and at_input[:, -8:].max() == 0.0  # 50 px → 10 px pad
    assert at_input[:, 12:48].min() == pytest.approx(1.0)
    # A constant map stays constant on the way back (no edge darkening from the padding).
    back = geometry.to_original(np.full((60, 60), 0.25, np.float32))
    assert back.shape == (300, 200)
    np.testing.assert_allclose(back, 0.25, atol=1e-6)


def test_label_maps_keep_their_labels_and_stacks_keep_their_axis() -> None:
    geometry = InputGeometry.fit((300, 200), (64, 64), ResizeMode.LETTERBOX)
    labels = np.zeros((300, 200), np.uint8)
    labels[50:250, 20:90] = 1
    labels[60:260, 110:180] = 2
    small = geometry.to_input(labels, interpolation="nearest")
    assert small.dtype == np.uint8 and set(np.unique(small)) == {0, 1, 2}
    stack = np.stack([blob((64, 64), (10, 50), 2.0), blob((64, 64), (50, 10), 2.0)])
    back = geometry.to_original(stack)
    assert back.shape == (2, 300, 200)
    assert peak(back[0])[0] < 150 < peak(back[1])[0]


def test_wrong_shapes_and_settings_are_refused() -> None:
    geometry = InputGeometry.fit((300, 200), (64, 64))
    with pytest.raises(ValueError, match=r"\(64, 64\)"):
        geometry.to_original(np.zeros((64, 65), np.float32))
    with pytest.raises(ValueError, match=r"\(300, 200\)"):
        geometry.to_input(np.zeros((200, 300), np.float32))
    with pytest.raises(ValueError, match="no padding"):
        InputGeometry(300, 200, 64, 64, ResizeMode.RESIZE, pad_left=3)
    with pytest.raises(ValueError, match="not a valid ResizeMode"):
        InputGeometry.fit((300, 200), (64, 64), "crop")
