"""Where the network input sits on the original image: maps go back and forth between them.

A classifier bundle's preprocessing turns the display-oriented 2D image (rows × columns, any
size) into the network's input (``vigil.input_size``) in one of two ways:

- ``resize``: stretch the whole image to the input size (the aspect ratio is distorted);
- ``letterbox``: pad the image to the input's aspect ratio, centred, then resize (the aspect
  ratio is kept; the padding holds no anatomy).

``InputGeometry`` records which, and moves maps between the two frames: explanation and
probability maps to the original image for overlays and the region table (``to_original``),
masks to the network input (``to_input``). Both are a bilinear resize plus a pad or crop, in
the same orientation: never a flip or a transpose, so an overlay sits on the anatomy it
explains. Pixel centres are matched (``align_corners=False``), as MONAI's ``Resize`` does.
Pure: numpy and torch only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Interpolation = Literal["bilinear", "nearest"]


class ResizeMode(StrEnum):
    """How preprocessing fits an image to the network's input size."""

    RESIZE = "resize"
    LETTERBOX = "letterbox"


@dataclass(frozen=True)
class InputGeometry:
    """The original image's size, the network input's size, and the padding between them.

    Pads are in original-image pixels, added before resizing (zero for ``RESIZE``).
    """

    original_rows: int
    original_cols: int
    input_rows: int
    input_cols: int
    mode: ResizeMode = ResizeMode.RESIZE
    pad_top: int = 0
    pad_bottom: int = 0
    pad_left: int = 0
    pad_right: int = 0

    def __post_init__(self) -> None:
        for name in ("original_rows", "original_cols", "input_rows", "input_cols"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"InputGeometry.{name} must be positive, got {getattr(self, name)}"
                )
        pads = (self.pad_top, self.pad_bottom, self.pad_left, self.pad_right)
        if min(pads) < 0:
            raise ValueError(f"InputGeometry pads must not be negative, got {pads}")
        if self.mode is ResizeMode.RESIZE and any(pads):
            raise ValueError("InputGeometry.mode 'resize' takes no padding")

    @classmethod
    def fit(
        cls,
        original_shape: tuple[int, int],
        input_size: tuple[int, int],
        mode: ResizeMode | str = ResizeMode.RESIZE,
    ) -> InputGeometry:
        """Return the geometry of fitting an image of ``original_shape`` (rows, cols) to
        ``input_size`` (rows, cols) by ``mode``.

        Letterbox padding is split as MONAI's ``SpatialPad`` splits it: half (rounded down)
        before, the rest after.
        """
        rows, cols = original_shape
        in_rows, in_cols = input_size
        mode = ResizeMode(mode)
        if mode is ResizeMode.RESIZE:
            return cls(rows, cols, in_rows, in_cols, mode)
        # Pad the short way only, up to the input's aspect ratio.
        padded_rows = max(rows, round(cols * in_rows / in_cols))
        padded_cols = max(cols, round(rows * in_cols / in_rows))
        extra_rows, extra_cols = padded_rows - rows, padded_cols - cols
        return cls(
            rows,
            cols,
            in_rows,
            in_cols,
            mode,
            pad_top=extra_rows // 2,
            pad_bottom=extra_rows - extra_rows // 2,
            pad_left=extra_cols // 2,
            pad_right=extra_cols - extra_cols // 2,
        )

    @property
    def original_shape(self) -> tuple[int, int]:
        """Return (rows, cols) of the original image."""
        return self.original_rows, self.original_cols

    @property
    def input_shape(self) -> tuple[int, int]:
        """Return (rows, cols) of the network input."""
        return self.input_rows, self.input_cols

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Return (rows, cols) of the original image once padded (before the resize)."""
        return (
            self.original_rows + self.pad_top + self.pad_bottom,
            self.original_cols + self.pad_left + self.pad_right,
        )

    def to_original(
        self, map_at_input: np.ndarray, *, interpolation: Interpolation = "bilinear"
    ) -> np.ndarray:
        """Return a map at the network input (``(H, W)`` or ``(N, H, W)``) resampled onto the
        original image (``(rows, cols)`` or ``(N, rows, cols)``); the padding is cut off.

        Use ``interpolation="nearest"`` for label maps (it keeps the dtype).
        """
        _check_shape(map_at_input, self.input_shape, "to_original")
        padded = _resize(map_at_input, self.padded_shape, interpolation)
        rows = slice(self.pad_top, self.pad_top + self.original_rows)
        cols = slice(self.pad_left, self.pad_left + self.original_cols)
        return padded[..., rows, cols]

    def to_input(
        self,
        map_at_original: np.ndarray,
        *,
        interpolation: Interpolation = "bilinear",
        pad_value: float = 0.0,
    ) -> np.ndarray:
        """Return a map at the original image (``(rows, cols)`` or ``(N, rows, cols)``)
        resampled onto the network input; letterbox padding is filled with ``pad_value``.

        Shrinking is anti-aliased, so a small bright spot keeps its place and some of its
        height instead of falling between sample points.
        """
        _check_shape(map_at_original, self.original_shape, "to_input")
        widths = [(0, 0)] * (map_at_original.ndim - 2) + [
            (self.pad_top, self.pad_bottom),
            (self.pad_left, self.pad_right),
        ]
        padded = np.pad(map_at_original, widths, constant_values=pad_value)
        return _resize(padded, self.input_shape, interpolation)

    def point_to_original(self, row: float, col: float) -> tuple[float, float]:
        """Return the original-image (row, col) of a network-input pixel position (pixel
        centres at whole numbers)."""
        padded_rows, padded_cols = self.padded_shape
        return (
            (row + 0.5) * padded_rows / self.input_rows - 0.5 - self.pad_top,
            (col + 0.5) * padded_cols / self.input_cols - 0.5 - self.pad_left,
        )

    def point_to_input(self, row: float, col: float) -> tuple[float, float]:
        """Return the network-input (row, col) of an original-image pixel position."""
        padded_rows, padded_cols = self.padded_shape
        return (
            (row + self.pad_top + 0.5) * self.input_rows / padded_rows - 0.5,
            (col + self.pad_left + 0.5) * self.input_cols / padded_cols - 0.5,
        )


def _check_shape(array: np.ndarray, shape: tuple[int, int], what: str) -> None:
    if array.ndim not in (2, 3) or tuple(array.shape[-2:]) != shape:
        raise ValueError(
            f"{what} needs a map of shape {shape} (optionally with a leading axis), "
            f"got {array.shape}"
        )


def _resize(array: np.ndarray, shape: tuple[int, int], interpolation: Interpolation) -> np.ndarray:
    """Return ``array`` ((H, W) or (N, H, W)) resized to ``shape``, same orientation."""
    if tuple(array.shape[-2:]) == shape:
        return array.copy()
    flat = array.reshape(-1, 1, *array.shape[-2:])
    if interpolation == "nearest":
        # "nearest-exact" samples at pixel centres; torch's "nearest" is off by half a pixel.
        # float64 holds any uint8/int label exactly and interpolate has no integer kernels.
        tensor = torch.from_numpy(flat.astype(np.float64))
        out = F.interpolate(tensor, size=shape, mode="nearest-exact")
        resized = out.numpy().astype(array.dtype)
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))
        out = F.interpolate(
            tensor, size=shape, mode="bilinear", align_corners=False, antialias=True
        )
        resized = out.numpy()
    return resized.reshape(*array.shape[:-2], *shape)
