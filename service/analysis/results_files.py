"""Where an analysis's images and raw maps are kept: ``<results>/<analysis id>/``."""

from __future__ import annotations

import os
import tempfile
import uuid
from enum import StrEnum
from pathlib import Path

import numpy as np


class OverlayKind(StrEnum):
    GRADCAM = "gradcam"
    GRADCAMPP = "gradcampp"
    OCCLUSION = "occlusion"
    PROBABILITY = "probability"
    LUNGS = "lungs"


def analysis_dir(root: Path, analysis_id: uuid.UUID) -> Path:
    return root / str(analysis_id)


def overlay_path(root: Path, analysis_id: uuid.UUID, kind: OverlayKind) -> Path:
    return analysis_dir(root, analysis_id) / f"overlay-{kind.value}.png"


def composite_path(root: Path, analysis_id: uuid.UUID, kind: OverlayKind) -> Path:
    return analysis_dir(root, analysis_id) / f"composite-{kind.value}.png"


def raw_map_path(root: Path, analysis_id: uuid.UUID, name: str) -> Path:
    """Raw maps (before display scaling) at the working copy's size (the image's geometry,
    long side at most 512; ``display`` is full size): overlays and audit reports read them."""
    return analysis_dir(root, analysis_id) / f"map-{name}.npy"


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file so readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_map(path: Path, values: np.ndarray) -> None:
    """Store a float map as float32 .npy, atomically."""
    save_array(path, values.astype(np.float32))


def save_array(path: Path, values: np.ndarray) -> None:
    """Store an array as .npy with its dtype, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, values, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_map(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)  # type: ignore[no-any-return]
