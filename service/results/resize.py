"""Shrink images and maps for outputs that do not need full resolution, and bring maps back."""

from __future__ import annotations

import numpy as np
from PIL import Image


def fitted_shape(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Return (rows, columns) of an image of ``shape`` shrunk so its long side is at most
    ``max_side`` (the shape ``fit_within`` gives it)."""
    rows, columns = shape
    scale = max_side / max(rows, columns)
    if scale >= 1:
        return rows, columns
    return max(1, round(rows * scale)), max(1, round(columns * scale))


def is_scaled_copy(shape: tuple[int, int], of: tuple[int, int]) -> bool:
    """Return whether ``shape`` is the image shape ``of`` itself or a ``fit_within`` copy."""
    return tuple(shape) == tuple(of) or tuple(shape) == fitted_shape(of, max(shape))


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Return a 2D image or map shrunk (area average) so its long side is at most ``max_side``.

    uint8 images stay uint8; anything else comes back as float32.
    """
    rows, columns = fitted_shape(image.shape, max_side)
    if (rows, columns) == image.shape:
        return image
    size = (columns, rows)
    if image.dtype == np.uint8:
        picture = Image.fromarray(image)
    else:
        picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    factor = image.shape[0] // rows
    if image.shape == (rows * factor, columns * factor):
        # A whole factor (a 2048² image to 512²): Pillow's block reduction, the same average
        # in a third of the time (8-bit values may round the other way by one).
        shrunk = picture.reduce(factor)
    else:
        shrunk = picture.resize(size, Image.Resampling.BOX)
    return np.asarray(shrunk, dtype=np.uint8 if image.dtype == np.uint8 else np.float32)


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return a float map resampled to ``shape`` (rows, columns) as float32: bilinear with
    pixel centres matched when it grows, area average when it shrinks."""
    if values.shape == shape:
        return np.asarray(values, dtype=np.float32)
    method = map_resampling(values.shape, shape)
    as_float = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), mode="F")
    return np.asarray(as_float.resize((shape[1], shape[0]), method), dtype=np.float32)


def map_resampling(shape: tuple[int, ...], target: tuple[int, int]) -> Image.Resampling:
    """Return how to resample a map from ``shape`` to ``target`` (rows, columns): bilinear
    (pixel centres matched) when it grows, area average when it shrinks."""
    grows = target[0] * target[1] > shape[0] * shape[1]
    return Image.Resampling.BILINEAR if grows else Image.Resampling.BOX


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return a label map resized to ``shape`` by nearest neighbour (labels stay labels)."""
    if labels.shape == shape:
        return labels
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    resized = image.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=labels.dtype)
