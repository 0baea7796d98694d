"""The study view's pictures, made small: the image in modality units for window/level in the
browser, and overlays at the same size. Pure: numpy, Pillow and pydicom, no web or database.

The image travels as one binary file, ``vigil-view-1``:

    uint32 little-endian N | N bytes of JSON (space-padded so 4 + N is a multiple of 4)
    | width × height uint16 little-endian codes, row by row

where modality value = offset + code × step, so the browser applies any window to the
original values (not to an already windowed 8-bit picture) and the file stays lossless for
images of 16 bits or fewer.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array

from service.dicom.render import VoiFunction, Window, computed_window, file_window, modality_values
from service.errors import VigilError
from service.results.overlays import (
    LUNGS_LEGEND,
    colormap_lut,
    heatmap_rgba,
    lungs_rgba,
)
from service.results.resize import fitted_shape, map_resampling

# About the canvas's size at 1920×1080: the browser draws it 1:1 and fast. Zooming in past
# this shows the view image enlarged (the full-resolution image is a WADO-RS request away).
VIEW_MAX_SIDE = 1024
FORMAT = "vigil-view-1"
_CODES = 65535
LEGEND_STOPS = 11
# Fast PNG compression: the clinician is waiting for the first drawing.
PNG_LEVEL = 1


class NotViewable(VigilError):
    """The image cannot be shown in the study view (the reason says why)."""

    status_code = 422


@dataclass(frozen=True)
class ViewImage:
    meta: dict[str, Any]
    codes: np.ndarray  # uint16, height × width

    def to_bytes(self) -> bytes:
        """Return the ``vigil-view-1`` bytes of this image (see the module docstring)."""
        header = json.dumps(self.meta, separators=(",", ":")).encode()
        header += b" " * (-(4 + len(header)) % 4)
        return struct.pack("<I", len(header)) + header + self.codes.astype("<u2").tobytes()


def view_size(rows: int, columns: int, max_side: int = VIEW_MAX_SIDE) -> tuple[int, int]:
    """Return (width, height) of the view: the image scaled down to ``max_side``, never up."""
    fitted_rows, fitted_columns = fitted_shape((rows, columns), max_side)
    return fitted_columns, fitted_rows


def view_image(ds: Dataset, max_side: int = VIEW_MAX_SIDE) -> ViewImage:
    """Return the first frame of a greyscale image in modality units, area-averaged down to
    the view size, with the window to start from (the file's, else a percentile window)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise NotViewable(f"the study view shows greyscale images only, not {photometric!r}")
    values = modality_values(ds, pixel_array(ds, index=0))
    if values.ndim != 2:
        raise NotViewable("the study view shows single-channel images only")
    rows, columns = values.shape
    window = file_window(ds) or computed_window(values)
    width, height = view_size(rows, columns, max_side)
    small = values
    if (width, height) != (columns, rows):
        small = np.asarray(
            Image.fromarray(values.astype(np.float32), mode="F").resize(
                (width, height), Image.Resampling.BOX
            )
        )
    low, high = float(values.min()), float(values.max())
    # Whole numbers within 16 bits stay exact (step 1); wider ranges are spread over 65535.
    step = max(1.0, (high - low) / _CODES)
    codes = np.clip(np.round((small - low) / step), 0, _CODES).astype(np.uint16)
    meta = {
        "format": FORMAT,
        "width": width,
        "height": height,
        "columns": columns,
        "rows": rows,
        "offset": low,
        "step": step,
        "range": [low, high],
        "window": _window_json(window),
        "invert": photometric == "MONOCHROME1",
    }
    return ViewImage(meta=meta, codes=codes)


def _window_json(window: Window) -> dict[str, Any]:
    function = window.function
    if function not in (VoiFunction.LINEAR, VoiFunction.LINEAR_EXACT, VoiFunction.SIGMOID):
        function = VoiFunction.LINEAR
    return {"center": window.center, "width": window.width, "function": function.value}


def view_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return a float map resampled to (width, height): area-averaged when it shrinks,
    bilinear when it grows (maps are kept at 512 a side; views go up to 1024). NaN stays NaN
    where all was NaN."""
    values = values.astype(np.float32, copy=False)
    if values.shape[::-1] == size:
        return values
    method = map_resampling(values.shape, (size[1], size[0]))
    finite = np.isfinite(values)
    if finite.all():  # the usual case: one resize
        return np.asarray(Image.fromarray(values, mode="F").resize(size, method))
    filled = np.where(finite, values, 0).astype(np.float32)
    total = np.asarray(Image.fromarray(filled, mode="F").resize(size, method))
    share = np.asarray(Image.fromarray(finite.astype(np.float32), mode="F").resize(size, method))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(share > 0, total / share, np.nan).astype(np.float32)


def heatmap_view(
    values: np.ndarray, size: tuple[int, int], *, vmin: float, vmax: float, title: str
) -> tuple[bytes, dict[str, Any]]:
    """Return a map's overlay at the view size as PNG bytes, and its legend: title, range,
    ticks and the colour ramp. Opacity goes up to 1: the page's slider sets how much shows.

    The PNG is a palette image: colour and opacity are both functions of the scaled value,
    so 256 palette entries (made by ``heatmap_rgba`` itself, from a ramp of values) hold the
    overlay exactly, in a quarter of the bytes to encode, send and decode of RGBA.
    """
    scaled = (view_map(values, size) - vmin) / (vmax - vmin)
    index = np.round(np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    ramp = np.linspace(vmin, vmax, 256, dtype=np.float32)[None, :]
    palette = heatmap_rgba(ramp, vmin=vmin, vmax=vmax, alpha_max=1.0)[0]
    picture = Image.fromarray(index, mode="L").convert("P")
    picture.putpalette(palette[:, :3].tobytes(), rawmode="RGB")
    picture.info["transparency"] = palette[:, 3].tobytes()
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=PNG_LEVEL)
    lut = colormap_lut("jet")
    stops = np.linspace(0, 255, LEGEND_STOPS).round().astype(int)
    legend = {
        "type": "scale",
        "title": title,
        "vmin": vmin,
        "vmax": vmax,
        "ticks": [float(v) for v in np.linspace(vmin, vmax, 5)],
        "colours": ["#{:02x}{:02x}{:02x}".format(*lut[i]) for i in stops],
    }
    return buffer.getvalue(), legend


def lungs_view(labels: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    """Return the lung-field overlay at the view size and its legend of colour swatches."""
    small = labels
    if labels.shape[::-1] != size:
        small = np.asarray(
            Image.fromarray(labels.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
        )
    rgba = lungs_rgba(small, fill_alpha=0.45, edge_alpha=1.0)
    legend = {
        "type": "key",
        "title": LUNGS_LEGEND.label,
        "entries": [
            {"label": label, "colour": "#{:02x}{:02x}{:02x}".format(*rgb)}
            for label, rgb in LUNGS_LEGEND.entries
        ],
    }
    return rgba, legend
