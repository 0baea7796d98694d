"""Shrink images and maps for outputs that do not need full resolution."""

from __future__ import annotations

import numpy as np
from PIL import Image


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Return a 2D image or map shrunk (area average) so its long side is at most ``max_side``.

    uint8 images stay uint8; anything else comes back as float32.
    """
    rows, columns = image.shape
    scale = max_side / max(rows, columns)
    if scale >= 1:
        return image
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
    as_float = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(as_float.resize(size, Image.Resampling.BOX), dtype=np.float32)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return a label map resized to ``shape`` by nearest neighbour (labels stay labels)."""
    if labels.shape == shape:
        return labels
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    resized = image.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=labels.dtype)
