"""Display rendering: windows, LUTs, MONOCHROME1 inversion, resizing and encoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from service.dicom import render
from service.dicom.render import ImageFormat, RenderOptions, VoiFunction, Window
from service.errors import BadRequest, NotAcceptable
from tests.factories import make_cr


def grayscale(photometric: str = "MONOCHROME2", **attributes: object) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_linear_window_128_256_is_the_identity_on_0_to_255() -> None:
    # PS3.3 C.11.2.1.2.1: with c=128, w=256 the ramp is y = x exactly.
    values = np.arange(256, dtype=np.float32)
    out = render.apply_window(values, Window(128, 256))
    assert out.dtype == np.uint8
    assert np.array_equal(out, np.arange(256))
    assert list(render.apply_window(np.array([-50.0, 1000.0]), Window(128, 256))) == [0, 255]


def test_linear_exact_maps_the_window_edges_to_black_and_white() -> None:
    out = render.apply_window(
        np.array([-1.0, 0.0, 100.0, 200.0, 300.0]), Window(100, 200, VoiFunction.LINEAR_EXACT)
    )
    assert list(out) == [0, 0, 128, 255, 255]


def test_sigmoid_is_mid_grey_at_the_centre_and_monotonic() -> None:
    values = np.linspace(-1000, 1000, 101)
    out = render.apply_window(values, Window(0, 200, VoiFunction.SIGMOID))
    assert out[50] == 128
    assert out[0] == 0 and out[-1] == 255
    assert np.all(np.diff(out.astype(int)) >= 0)


def test_linear_width_one_is_a_threshold() -> None:
    out = render.apply_window(np.array([9.0, 9.5, 10.0, 11.0]), Window(10, 1))
    assert list(out) == [0, 0, 255, 255]


@pytest.mark.parametrize("width, function", [(0.5, VoiFunction.LINEAR), (0, VoiFunction.SIGMOID)])
def test_too_narrow_windows_are_refused(width: float, function: VoiFunction) -> None:
    with pytest.raises(BadRequest, match="too small"):
        Window(0, width, function)


def test_parse_window() -> None:
    assert render.parse_window("40,400") == Window(40, 400)
    assert render.parse_window(" -600 , 1500 , sigmoid") == Window(-600, 1500, VoiFunction.SIGMOID)
    for bad in ["40", "a,b", "40,400,cubic", "1,2,3,4", "40,0", "nan,10"]:
        with pytest.raises(BadRequest):
            render.parse_window(bad)


def test_parse_viewport_and_quality() -> None:
    assert render.parse_viewport("512,256") == (512, 256)
    for bad in ["512", "0,10", "a,b", "10,10,0,0,5,5", "99999,10"]:
        with pytest.raises(BadRequest):
            render.parse_viewport(bad)
    assert render.parse_quality("75") == 75
    for bad in ["0", "101", "high"]:
        with pytest.raises(BadRequest):
            render.parse_quality(bad)


def test_rescale_slope_and_intercept_give_modality_units() -> None:
    ds = grayscale(RescaleSlope=2, RescaleIntercept=-1024)
    values = render.modality_values(ds, np.array([[0, 512, 1024]], dtype=np.uint16))
    assert values.tolist() == [[-1024, 0, 1024]]


def test_modality_lut_sequence_is_applied() -> None:
    item = Dataset()
    item.LUTDescriptor = [3, 10, 16]
    item.ModalityLUTType = "US"
    item.LUTData = [100, 200, 300]
    ds = grayscale(ModalityLUTSequence=Sequence([item]))
    values = render.modality_values(ds, np.array([5, 10, 11, 12, 50], dtype=np.uint16))
    assert values.tolist() == [100, 100, 200, 300, 300]


def test_file_window_takes_the_first_pair_and_the_function() -> None:
    ds = grayscale(WindowCenter=[40, 400], WindowWidth=[350, 2000], VOILUTFunction="SIGMOID")
    assert render.file_window(ds) == Window(40, 350, VoiFunction.SIGMOID)
    assert render.file_window(grayscale()) is None
    assert render.file_window(grayscale(WindowCenter=10, WindowWidth=0)) is None


def test_monochrome1_is_inverted_so_low_values_are_white() -> None:
    pixels = np.array([[0, 255]], dtype=np.uint16)
    mono1 = grayscale("MONOCHROME1", WindowCenter=128, WindowWidth=256)
    mono2 = grayscale("MONOCHROME2", WindowCenter=128, WindowWidth=256)
    assert render.display_image(mono1, pixels).tolist() == [[255, 0]]
    assert render.display_image(mono2, pixels).tolist() == [[0, 255]]


def test_window_override_wins_over_the_files_window() -> None:
    ds = grayscale(WindowCenter=128, WindowWidth=256)
    pixels = np.array([[100, 150]], dtype=np.uint16)
    assert render.display_image(ds, pixels).tolist() == [[100, 150]]
    narrow = render.display_image(ds, pixels, Window(125, 50, VoiFunction.LINEAR_EXACT))
    assert narrow.tolist() == [[0, 255]]


def test_computed_window_ignores_a_few_outliers() -> None:
    # 10,000 pixels spread over 0..1000 and one burned-in marker at 60,000.
    pixels = np.concatenate([np.linspace(0, 1000, 10_000), [60_000]]).reshape(1, -1)
    out = render.display_image(grayscale(), pixels.astype(np.uint16))
    body = out[0, :-1]
    assert body.min() == 0 and body.max() == 255  # contrast kept, not squashed by the marker
    assert abs(int(body[5000]) - 128) <= 2
    assert out[0, -1] == 255


def test_constant_image_renders_without_error() -> None:
    out = render.display_image(grayscale(), np.full((4, 4), 7, dtype=np.uint16))
    assert np.all(out == out[0, 0])


def test_voi_lut_sequence_is_used_when_there_is_no_window() -> None:
    item = Dataset()
    item.LUTDescriptor = [4, 10, 16]
    item.LUTData = [0, 1000, 2000, 4095]  # 16 bits declared, 12 used
    ds = grayscale(VOILUTSequence=Sequence([item]))
    out = render.display_image(ds, np.array([[5, 10, 11, 12, 13, 99]], dtype=np.uint16))
    assert out.tolist() == [[0, 0, 62, 125, 255, 255]]


def test_rgb_passes_through() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    ds = grayscale("RGB", SamplesPerPixel=3, BitsStored=8)
    assert np.array_equal(render.display_image(ds, rgb, Window(0, 10)), rgb)


def test_fit_within_keeps_the_aspect_ratio() -> None:
    assert render.fit_within((200, 100), (50, 50)) == (50, 25)
    assert render.fit_within((10, 20), (100, 100)) == (50, 100)
    assert render.fit_within((1841, 1955), (256, 256)) == (241, 256)


def test_png_round_trips_exactly_and_viewport_resizes() -> None:
    image = np.arange(64 * 32, dtype=np.uint32).reshape(32, 64).astype(np.uint8)
    assert np.array_equal(decode_png(render.encode(image, RenderOptions())), image)
    small = decode_png(render.encode(image, RenderOptions(viewport=(16, 16))))
    assert small.shape == (8, 16)


def test_jpeg_quality_changes_the_size() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)
    low = render.encode(image, RenderOptions(media_type=ImageFormat.JPEG, quality=10))
    high = render.encode(image, RenderOptions(media_type=ImageFormat.JPEG, quality=95))
    assert low[:2] == high[:2] == b"\xff\xd8"
    assert len(low) < len(high)


def test_render_a_synthetic_cr_end_to_end() -> None:
    ds = make_cr(rows=16, columns=8, WindowCenter=2048, WindowWidth=4096)
    png = decode_png(render.render(ds, frame_index=0, options=RenderOptions()))
    assert png.shape == (16, 8)
    expected = render.apply_window(ds.pixel_array.astype(np.float32), Window(2048, 4096))
    assert np.array_equal(png, expected)


def test_instance_without_pixels_is_not_renderable() -> None:
    with pytest.raises(NotAcceptable, match="no pixel data"):
        render.render(grayscale(), frame_index=0, options=RenderOptions())


@pytest.mark.parametrize(
    ("dtype", "slope", "intercept", "window", "photometric"),
    [
        (np.uint16, 1.0, 0.0, Window(1910, 2661, VoiFunction.LINEAR), "MONOCHROME2"),
        (np.uint16, 1.0, 0.0, Window(15000, 30000, VoiFunction.LINEAR), "MONOCHROME1"),
        (np.int16, 0.5, -1024.0, Window(40, 400, VoiFunction.LINEAR_EXACT), "MONOCHROME2"),
        (np.int16, 1.0, 0.0, Window(0, 1, VoiFunction.LINEAR), "MONOCHROME2"),
        (np.uint16, 2.0, 10.0, Window(3000, 900, VoiFunction.SIGMOID), "MONOCHROME2"),
        (np.uint8, 1.0, 0.0, Window(100, 60, VoiFunction.LINEAR), "MONOCHROME1"),
    ],
)
def test_large_images_are_windowed_through_a_table_with_the_same_result(
    dtype: type[np.integer],
    slope: float,
    intercept: float,
    window: Window,
    photometric: str,
) -> None:
    # A 2k radiograph has far more pixels than values: the window is computed once per value.
    info = np.iinfo(dtype)
    pixels = np.random.default_rng(3).integers(info.min, info.max, (600, 500), endpoint=True)
    pixels = pixels.astype(dtype)
    ds = make_cr(rows=8, columns=8)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PhotometricInterpretation = photometric
    assert render._tabulable(ds, pixels)
    direct = render.apply_window(render.modality_values(ds, pixels), window)
    if photometric == "MONOCHROME1":
        direct = 255 - direct
    assert np.array_equal(render.grayscale_display(ds, pixels, window), direct)


def test_small_or_wide_or_byte_swapped_pixels_are_windowed_directly() -> None:
    ds = make_cr(rows=8, columns=8)
    assert not render._tabulable(ds, np.zeros((64, 64), np.uint16))  # fewer pixels than values
    assert not render._tabulable(ds, np.zeros((600, 500), np.uint32))
    assert not render._tabulable(ds, np.zeros((600, 500), ">u2"))
