"""Lung-field training data: the real CC BY chest radiographs (fixed split) and phantom lungs.

Real data: a folder with ``manifest.csv`` (id, image, mask, view, ...), 8-bit PNG images and
0/255 masks (``VIGIL_CXR_LUNGS_DIR``, by default the shared ``cxr-lungs-ccby`` set). Phantoms:
the output of ``vigil phantom`` (``manifest.csv`` with image_id and dicom_path, DICOM CR images,
``masks/lungs/<image_id>.png`` with 1 = right and 2 = left lung). Every image comes out as a
display-oriented float32 array (higher = brighter) with a boolean lung mask of the same size.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels.processing import apply_modality_lut

from service.errors import VigilError

DATA_DIR_ENV = "VIGIL_CXR_LUNGS_DIR"
DEFAULT_DATA_DIR = Path("/work/shared/data/cxr-lungs-ccby")
# Sorted ids, every 5th held out for testing (about 20 % of the set, spread over its order).
TEST_EVERY = 5
# Of the rest, every 7th is for early stopping (about 11 images of 77).
VALIDATION_EVERY = 7


class TrainingDataError(VigilError):
    """A training data folder is missing or not in the expected format."""


@dataclass(frozen=True)
class LungImage:
    """One radiograph: display-oriented float32 pixels and the boolean lung mask."""

    id: str
    source: str
    view: str
    image: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Split:
    """Image ids for training, validation (early stopping) and the held-out test."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def default_data_dir() -> Path:
    """Return the real data folder: ``$VIGIL_CXR_LUNGS_DIR`` or the shared default."""
    return Path(os.environ.get(DATA_DIR_ENV, str(DEFAULT_DATA_DIR)))


def read_manifest(data_dir: Path) -> list[dict[str, str]]:
    """Return the real data manifest's rows, sorted by id."""
    manifest = data_dir / "manifest.csv"
    if not manifest.is_file():
        raise TrainingDataError(f"{data_dir}: no manifest.csv (set {DATA_DIR_ENV} or --data)")
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for column in ("id", "image", "mask"):
        if rows and column not in rows[0]:
            raise TrainingDataError(f"{manifest}: no column '{column}'")
    return sorted(rows, key=lambda row: row["id"])


def split_ids(ids: Sequence[str]) -> Split:
    """Return the fixed split: every 5th sorted id is test, every 7th of the rest validation."""
    ordered = sorted(ids)
    test = ordered[::TEST_EVERY]
    held_out = set(test)
    rest = [i for i in ordered if i not in held_out]
    validation = rest[::VALIDATION_EVERY]
    chosen = set(validation)
    train = [i for i in rest if i not in chosen]
    return Split(train=tuple(train), validation=tuple(validation), test=tuple(test))


def load_real(data_dir: Path, ids: Sequence[str]) -> Iterator[LungImage]:
    """Yield the real images with these ids (one at a time: callers shrink them as they go)."""
    rows = {row["id"]: row for row in read_manifest(data_dir)}
    for image_id in ids:
        row = rows[image_id]
        image = _read_png(data_dir / row["image"])
        mask = _read_png(data_dir / row["mask"]) > 127
        _check_same_shape(image_id, image, mask)
        yield LungImage(
            id=image_id,
            source="cxr-lungs-ccby",
            view=row.get("view", ""),
            image=image.astype(np.float32),
            mask=mask,
        )


def read_phantom_manifest(phantom_dir: Path) -> list[dict[str, str]]:
    """Return the rows of a ``vigil phantom`` folder's manifest.csv."""
    manifest = phantom_dir / "manifest.csv"
    if not manifest.is_file():
        raise TrainingDataError(f"{phantom_dir}: no manifest.csv (not a vigil phantom folder)")
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and "image_id" not in rows[0]:
        raise TrainingDataError(f"{manifest}: no column 'image_id'")
    return rows


def built_on(row: Mapping[str, str], real_ids: Collection[str]) -> bool:
    """Return whether a phantom was drawn over one of these real images (its background)."""
    # `vigil phantom --backgrounds` records the real image's file name, e.g. "0005.png".
    return Path(row.get("background", "")).stem in real_ids


def load_phantoms(
    phantom_dir: Path, *, skip_backgrounds: Collection[str] = ()
) -> Iterator[LungImage]:
    """Yield the phantoms of a ``vigil phantom`` folder (lungs = mask > 0), except those drawn
    over a real image in ``skip_backgrounds`` (held-out ids: they would leak into training)."""
    for row in read_phantom_manifest(phantom_dir):
        if built_on(row, skip_backgrounds):
            continue
        image_id = row["image_id"]
        dicom_path = Path(row.get("dicom_path") or f"dicom/{image_id}.dcm")
        image = dicom_display_pixels(
            dicom_path if dicom_path.is_absolute() else phantom_dir / dicom_path
        )
        mask_path = phantom_dir / "masks" / "lungs" / f"{image_id}.png"
        if not mask_path.is_file():
            raise TrainingDataError(f"{phantom_dir}: no lung mask masks/lungs/{image_id}.png")
        mask = _read_png(mask_path) > 0
        _check_same_shape(image_id, image, mask)
        yield LungImage(
            id=image_id, source=f"phantom:{phantom_dir.name}", view="", image=image, mask=mask
        )


def dicom_display_pixels(path: Path) -> np.ndarray:
    """Return a DICOM image's modality values as float32, MONOCHROME1 flipped to bright = high."""
    ds = pydicom.dcmread(path)
    values = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)
    if values.ndim != 2:
        raise TrainingDataError(f"{path}: expected one 2D grayscale frame, got {values.shape}")
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        # MONOCHROME1 shows low values as white; the networks expect higher = brighter.
        values = values.max() + values.min() - values
    return values


def _read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise TrainingDataError(f"missing image {path}")
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def _check_same_shape(image_id: str, image: np.ndarray, mask: np.ndarray) -> None:
    if image.shape != mask.shape:
        raise TrainingDataError(
            f"{image_id}: image is {image.shape} but its lung mask is {mask.shape}"
        )
