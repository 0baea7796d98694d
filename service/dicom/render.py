"""Display images from DICOM pixels (PS3.18 rendered resources): 8-bit PNG or JPEG.

The grayscale pipeline is the standard one (PS3.3 C.11, PS3.4 N.2): stored values → Modality
LUT (or Rescale Slope/Intercept) → VOI (a window, the file's VOI LUT, or a computed window) →
MONOCHROME1 inverted so that, as with MONOCHROME2, high output means white. Colour images are
passed through as 8-bit RGB. Pure: no web framework, no database.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi
from pydicom.pixels.utils import pixel_array

from service.errors import BadRequest, NotAcceptable

# A viewport beyond this is refused: it would only make the server allocate huge images.
MAX_VIEWPORT = 8192
DEFAULT_JPEG_QUALITY = 90
# Percentiles of the computed window when a file names none: ignores a few outliers
# (collimator edges, burned-in text) that would otherwise flatten the contrast.
COMPUTED_WINDOW_PERCENTILES = (0.5, 99.5)
# zlib level 3: a 2k x 2k radiograph encodes about 4x faster than at level 6, ~10% larger.
PNG_COMPRESS_LEVEL = 3
_GRAYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})


class VoiFunction(StrEnum):
    """VOI LUT Function (0028,1056): how a window maps values to output (PS3.3 C.11.2.1.3)."""

    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"


class ImageFormat(StrEnum):
    """The rendered media types Vigil encodes."""

    PNG = "image/png"
    JPEG = "image/jpeg"


@dataclass(frozen=True)
class Window:
    """A VOI window: centre and width in modality units (after the Modality LUT)."""

    center: float
    width: float
    function: VoiFunction = VoiFunction.LINEAR

    def __post_init__(self) -> None:
        # PS3.3 C.11.2.1.2: width >= 1 for LINEAR, > 0 for the other functions.
        if not np.isfinite(self.center) or not np.isfinite(self.width):
            raise BadRequest("window centre and width must be finite numbers")
        minimum_ok = self.width >= 1 if self.function is VoiFunction.LINEAR else self.width > 0
        if not minimum_ok:
            raise BadRequest(
                f"window width {self.width:g} is too small for {self.function.value} "
                "(LINEAR needs at least 1, the others more than 0)"
            )


@dataclass(frozen=True)
class RenderOptions:
    """What the client asked for: format, window override, viewport and JPEG quality."""

    media_type: ImageFormat = ImageFormat.PNG
    window: Window | None = None
    viewport: tuple[int, int] | None = None
    quality: int = DEFAULT_JPEG_QUALITY


def parse_window(text: str) -> Window:
    """Return the window of a ``center,width[,function]`` query value; BadRequest if malformed."""
    fields = [f.strip() for f in text.split(",")]
    if len(fields) not in (2, 3):
        raise BadRequest("window must be center,width or center,width,function")
    try:
        center, width = float(fields[0]), float(fields[1])
    except ValueError:
        raise BadRequest("window center and width must be numbers") from None
    function = VoiFunction.LINEAR
    if len(fields) == 3:
        try:
            function = VoiFunction(fields[2].upper())
        except ValueError:
            names = ", ".join(f.value.lower() for f in VoiFunction)
            raise BadRequest(f"window function must be one of {names}") from None
    return Window(center, width, function)


def parse_viewport(text: str) -> tuple[int, int]:
    """Return (width, height) of a ``vw,vh`` query value; BadRequest if malformed or too large."""
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != 2:
        # PS3.18 also defines a source rectangle (vw,vh,sx,sy,sw,sh); Vigil does not crop.
        raise BadRequest("viewport must be width,height in pixels (cropping is not supported)")
    try:
        width, height = int(fields[0]), int(fields[1])
    except ValueError:
        raise BadRequest("viewport width and height must be whole numbers") from None
    if not (0 < width <= MAX_VIEWPORT and 0 < height <= MAX_VIEWPORT):
        raise BadRequest(f"viewport width and height must be between 1 and {MAX_VIEWPORT}")
    return width, height


def parse_quality(text: str) -> int:
    """Return a JPEG quality from 1 to 100; BadRequest otherwise."""
    try:
        quality = int(text.strip())
    except ValueError:
        raise BadRequest("quality must be a whole number from 1 to 100") from None
    if not 1 <= quality <= 100:
        raise BadRequest("quality must be a whole number from 1 to 100")
    return quality


def decode_frame(ds: Dataset, index: int) -> np.ndarray:
    """Return the pixels of one frame (0-based), colour converted to RGB; 406 if undecodable."""
    if "PixelData" not in ds:
        raise NotAcceptable("the instance has no pixel data to render")
    try:
        return pixel_array(ds, index=index)
    except Exception as exc:
        # Ingest checked the pixels decode; failing here means a missing plugin or a bad file.
        raise NotAcceptable(
            f"the stored pixel data cannot be decoded ({type(exc).__name__})"
        ) from exc


def modality_values(ds: Dataset, pixels: np.ndarray) -> np.ndarray:
    """Return pixels in modality units (float32): Modality LUT, else Rescale Slope/Intercept."""
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = pixels.astype(np.float32)
    if slope != 1 or intercept != 0:
        values = values * np.float32(slope) + np.float32(intercept)
    return values


def file_window(ds: Dataset) -> Window | None:
    """Return the file's first Window Center/Width pair and its VOI LUT Function, if usable."""
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None:
        return None
    function_name = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    try:
        function = VoiFunction(function_name)
    except ValueError:
        function = VoiFunction.LINEAR
    try:
        return Window(float(center), float(width), function)
    except (BadRequest, ValueError, TypeError):
        return None  # a broken window in the file: fall back rather than refuse to render


def computed_window(values: np.ndarray) -> Window:
    """Return a LINEAR_EXACT window spanning the 0.5th to 99.5th percentile of the values."""
    low, high = np.percentile(values, COMPUTED_WINDOW_PERCENTILES)
    width = max(float(high) - float(low), 1e-3)
    return Window((float(low) + float(high)) / 2, width, VoiFunction.LINEAR_EXACT)


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Return the values mapped to 0..255 (uint8) by a window (PS3.3 C.11.2.1.2 formulas)."""
    c, w = np.float32(window.center), np.float32(window.width)
    x = values.astype(np.float32, copy=False)
    if window.function is VoiFunction.SIGMOID:
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    elif window.function is VoiFunction.LINEAR_EXACT:
        y = ((x - c) / w + 0.5) * 255.0
    elif w == 1:
        y = np.where(x > c - 0.5, np.float32(255.0), np.float32(0.0))  # a step: no ramp
    else:
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    return _to_uint8(y)


def grayscale_display(ds: Dataset, pixels: np.ndarray, window: Window | None) -> np.ndarray:
    """Return an 8-bit display image of a grayscale frame, bright meaning white."""
    chosen = window or file_window(ds)
    if chosen is not None and _tabulable(ds, pixels):
        out = _windowed_by_table(ds, pixels, chosen)
    else:
        out = _windowed(ds, modality_values(ds, pixels), chosen)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        # MONOCHROME1: the minimum value is white. Invert so the image looks as on a viewer.
        out = np.subtract(np.uint8(255), out)
    return out


def _tabulable(ds: Dataset, pixels: np.ndarray) -> bool:
    """Return whether every stored value can be mapped through a table of all of them: 8 or
    16-bit integers, a rescale (not a Modality LUT), and far more pixels than values."""
    return (
        pixels.dtype.kind in "iu"
        and pixels.dtype.isnative
        and pixels.dtype.itemsize <= 2
        and "ModalityLUTSequence" not in ds
        and pixels.size >= 4 * 2 ** (8 * pixels.dtype.itemsize)
    )


def _windowed_by_table(ds: Dataset, pixels: np.ndarray, window: Window) -> np.ndarray:
    """Return ``apply_window(modality_values(ds, pixels), window)``, computed once for every
    value the pixels' type can hold and looked up (the same numbers, a fraction of the time
    for a 2k radiograph)."""
    unsigned = np.dtype(f"u{pixels.dtype.itemsize}")
    every_value = np.arange(2 ** (8 * pixels.dtype.itemsize), dtype=unsigned)
    table = apply_window(modality_values(ds, every_value.view(pixels.dtype)), window)
    looked_up: np.ndarray = table[pixels.view(unsigned)]
    return looked_up


def _windowed(ds: Dataset, values: np.ndarray, chosen: Window | None) -> np.ndarray:
    """Return modality values mapped to 0..255 by a window, the file's VOI LUT, or a window
    computed from the values."""
    if chosen is not None:
        return apply_window(values, chosen)
    if ds.get("VOILUTSequence"):
        return _apply_file_voi_lut(ds, values)
    return apply_window(values, computed_window(values))


def colour_display(ds: Dataset, pixels: np.ndarray) -> np.ndarray:
    """Return an 8-bit RGB image of a colour frame (RGB, YBR decoded to RGB, or palette)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, ds)
        # Palette entries are 8 or 16 bits: keep the top 8.
        return (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb.astype(np.uint8)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise NotAcceptable(f"cannot render photometric interpretation {photometric!r}")
    bits = int(ds.get("BitsStored", 8) or 8)
    if bits > 8:
        scaled = pixels.astype(np.float32) * (255.0 / (2**bits - 1))
        return _to_uint8(scaled)
    return pixels.astype(np.uint8, copy=False)


def display_image(ds: Dataset, pixels: np.ndarray, window: Window | None = None) -> np.ndarray:
    """Return the 8-bit display image (rows x cols, or rows x cols x 3) of one decoded frame.

    A window override applies to grayscale only; colour images pass through unchanged.
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric in _GRAYSCALE and pixels.ndim == 2:
        return grayscale_display(ds, pixels, window)
    return colour_display(ds, pixels)


def fit_within(size: tuple[int, int], viewport: tuple[int, int]) -> tuple[int, int]:
    """Return the largest (width, height) with the size's aspect ratio that fits the viewport."""
    width, height = size
    scale = min(viewport[0] / width, viewport[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode(image: np.ndarray, options: RenderOptions) -> bytes:
    """Return the display image resized to the viewport and encoded as PNG or JPEG."""
    picture = Image.fromarray(image, mode="RGB" if image.ndim == 3 else "L")
    if options.viewport is not None:
        target = fit_within(picture.size, options.viewport)
        if target != picture.size:
            picture = picture.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    if options.media_type is ImageFormat.JPEG:
        picture.save(out, format="JPEG", quality=options.quality)
    else:
        picture.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def render(ds: Dataset, *, frame_index: int, options: RenderOptions) -> bytes:
    """Return one frame (0-based) of an instance as an encoded display image."""
    pixels = decode_frame(ds, frame_index)
    return encode(display_image(ds, pixels, options.window), options)


def _apply_file_voi_lut(ds: Dataset, values: np.ndarray) -> np.ndarray:
    """Return values mapped to 0..255 through the file's first VOI LUT."""
    item = ds.VOILUTSequence[0]
    entries = int(item.LUTDescriptor[0]) or 2**16
    first = int(item.LUTDescriptor[1])
    # Scale by the LUT's own output range: some devices declare 16 bits but fill only 12.
    table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds)
    low, high = float(table.min()), float(table.max())
    mapped = apply_voi(np.rint(values).astype(np.int64), ds).astype(np.float32)
    scaled = (mapped - low) * (255.0 / max(high - low, 1.0))
    return _to_uint8(scaled)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Return values rounded and clipped to 0..255 as uint8."""
    out: np.ndarray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return out


def _first(value: Any) -> Any:
    """Return the first value of a possibly multi-valued element (None when empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value
