"""Phantom folders as classifier data, decoded the way the service decodes them, and cached.

Every image takes the service's path (``service.analysis.pipeline.decode``: pydicom → first
frame → ``display_image``: modality LUT, the file's VOI window, MONOCHROME1 inverted → uint8),
then the bundle's own preprocessing (``classifier_inference_config`` parsed by MONAI's
``ConfigParser``), so training sees exactly the pixels the service will feed the network.
Lesion masks are shrunk to the input size as coverage (the share of each input pixel that is
lesion), which moves with the image under augmentation and gives the region targets.

A decoded folder is cached in ``<folder>/.vigil-cache/`` (keyed by its manifest, the input size
and the preprocessing), so a second run does not decode thousands of DICOM files again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from PIL import Image
from pydicom.pixels.utils import pixel_array

from service.dicom.render import display_image
from service.training.classifier_bundle import classifier_inference_config
from service.training.lung_data import TrainingDataError
from service.training.phantom.manifest import LESIONS_FILE, MANIFEST_FILE, read_table

CACHE_DIR = ".vigil-cache"
CACHE_FORMAT = 1  # bump when what is cached changes
# Share of the ids (by a hash of each id) for training, validation and test.
SPLIT_PERCENT = (70, 15, 15)
# Below this many images a worker pool costs more to start than it saves.
POOL_MIN_IMAGES = 200
COVER_SCALE = 255  # coverage is stored as uint8


@dataclass(frozen=True)
class ClassifierSet:
    """Decoded images of one phantom folder with their labels and lesion facts (row-aligned)."""

    folder: Path
    ids: tuple[str, ...]
    inputs: np.ndarray  # (n, size, size) float16: preprocessed network inputs in [-1, 1]
    cover: np.ndarray  # (n, size, size) uint8: lesion coverage × 255 at the input size
    labels: np.ndarray  # (n,) int8: 1 = at least one lesion
    shapes: np.ndarray  # (n, 2) int32: original rows, columns
    spacing_mm: np.ndarray  # (n,) float32: original pixel spacing
    max_cnr: np.ndarray  # (n,) float32: the most conspicuous lesion's CNR (nan if none)
    max_diameter_mm: np.ndarray  # (n,) float32: the largest lesion's diameter (nan if none)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> int:
        """Return the network input size the set was decoded for."""
        return int(self.inputs.shape[-1])

    def take(self, indices: Sequence[int] | np.ndarray) -> ClassifierSet:
        """Return the images at ``indices`` (in that order) as a set of their own."""
        index = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            ids=tuple(self.ids[i] for i in index),
            inputs=self.inputs[index],
            cover=self.cover[index],
            labels=self.labels[index],
            shapes=self.shapes[index],
            spacing_mm=self.spacing_mm[index],
            max_cnr=self.max_cnr[index],
            max_diameter_mm=self.max_diameter_mm[index],
        )

    def lesion_mask(self, index: int) -> np.ndarray:
        """Return the boolean lesion mask of image ``index`` at its original size."""
        path = self.folder / "masks" / "lesions" / f"{self.ids[index]}.png"
        if not path.is_file():
            raise TrainingDataError(f"{self.folder}: no lesion mask masks/lesions/{path.name}")
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 127


@dataclass(frozen=True)
class Split:
    """Row indices of one folder for training, validation and test."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def display_pixels(path: Path) -> np.ndarray:
    """Return the uint8 display image the service analyses (``pipeline.decode``'s steps)."""
    ds = pydicom.dcmread(path, force=True)
    display = display_image(ds, pixel_array(ds, index=0))
    if display.ndim != 2:
        raise TrainingDataError(f"{path}: expected one greyscale frame, got {display.shape}")
    return display


def read_manifest(folder: Path) -> list[dict[str, str]]:
    """Return a phantom folder's manifest rows; ``TrainingDataError`` if it is not one."""
    manifest = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise TrainingDataError(f"{folder}: no such folder")
    if not manifest.is_file():
        raise TrainingDataError(f"{folder}: no {MANIFEST_FILE} (not a `vigil phantom` folder)")
    rows = read_table(manifest)
    if not rows:
        raise TrainingDataError(f"{manifest}: no images")
    for column in ("image_id", "dicom_path", "label", "pixel_spacing_mm"):
        if column not in rows[0]:
            raise TrainingDataError(f"{manifest}: no column '{column}'")
    return rows


def load_set(
    folder: Path,
    size: int,
    *,
    workers: int = 1,
    use_cache: bool = True,
    on_progress: Callable[[str], None] = lambda _: None,
) -> ClassifierSet:
    """Return every image of a ``vigil phantom`` folder decoded for a ``size``² network."""
    rows = read_manifest(folder)
    preprocessing = classifier_inference_config(size)["preprocessing"]
    cache = _cache_path(folder, size, preprocessing)
    arrays = _read_cache(cache) if use_cache else None
    if arrays is None:
        on_progress(f"decoding {len(rows)} images of {folder} at {size}×{size}")
        arrays = _decode_all(folder, rows, size, workers)
        if use_cache:
            _write_cache(cache, arrays)
    else:
        on_progress(f"{folder}: {len(rows)} decoded images from the cache")
    max_cnr, max_diameter = _lesion_facts(folder, [row["image_id"] for row in rows])
    return ClassifierSet(
        folder=folder,
        ids=tuple(row["image_id"] for row in rows),
        inputs=arrays["inputs"],
        cover=arrays["cover"],
        labels=np.asarray([int(row["label"]) for row in rows], dtype=np.int8),
        shapes=arrays["shapes"],
        spacing_mm=np.asarray([float(row["pixel_spacing_mm"]) for row in rows], np.float32),
        max_cnr=max_cnr,
        max_diameter_mm=max_diameter,
    )


def split_by_id(ids: Sequence[str]) -> Split:
    """Return a 70/15/15 train/validation/test split decided by a hash of each image id.

    An image's part depends on its id alone, so adding images to a folder never moves the
    others between parts (a test image never becomes a training image).
    """
    parts: list[list[int]] = [[], [], []]
    train_cut, validation_cut = SPLIT_PERCENT[0], SPLIT_PERCENT[0] + SPLIT_PERCENT[1]
    for index, image_id in enumerate(ids):
        bucket = int(hashlib.sha256(image_id.encode()).hexdigest()[:8], 16) % 100
        part = 0 if bucket < train_cut else 1 if bucket < validation_cut else 2
        parts[part].append(index)
    train, validation, test = (np.asarray(p, dtype=np.int64) for p in parts)
    return Split(train=train, validation=validation, test=test)


def cover_to_input(mask: np.ndarray, size: int) -> np.ndarray:
    """Return a boolean mask's coverage of each pixel of a ``size``² input (uint8, × 255)."""
    # Area interpolation, as the image's own Resize: coverage lines up with the pixels.
    tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
    shrunk = F.interpolate(tensor, size=(size, size), mode="area")[0, 0].numpy()
    cover: np.ndarray = np.rint(shrunk * COVER_SCALE).astype(np.uint8)
    return cover


def _decode_one(
    folder: Path, row: dict[str, str], size: int, preprocess: Callable[[Any], Any]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    image_id = row["image_id"]
    dicom = Path(row["dicom_path"] or f"dicom/{image_id}.dcm")
    display = display_pixels(dicom if dicom.is_absolute() else folder / dicom)
    x = torch.as_tensor(preprocess(display.astype(np.float32)))
    mask_path = folder / "masks" / "lesions" / f"{image_id}.png"
    if mask_path.is_file():
        with Image.open(mask_path) as img:
            mask = np.asarray(img.convert("L")) > 127
        if mask.shape != display.shape:
            raise TrainingDataError(
                f"{image_id}: image is {display.shape} but its lesion mask is {mask.shape}"
            )
        cover = cover_to_input(mask, size)
    elif row["label"] == "1":
        raise TrainingDataError(f"{folder}: no lesion mask masks/lesions/{mask_path.name}")
    else:
        cover = np.zeros((size, size), dtype=np.uint8)
    rows, cols = display.shape
    return x[0].numpy().astype(np.float16), cover, (rows, cols)


_WORKER: tuple[Path, int, Callable[[Any], Any]] | None = None


def _init_worker(folder: Path, size: int) -> None:
    """Build the preprocessing once per worker, on one thread (the workers share the cores)."""
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = (folder, size, bundle_preprocessing(size))


def _worker_decode(row: dict[str, str]) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    assert _WORKER is not None, "worker started without its context"
    folder, size, preprocess = _WORKER
    return _decode_one(folder, row, size, preprocess)


def bundle_preprocessing(size: int) -> Callable[[Any], Any]:
    """Return the preprocessing transform of a classifier bundle for ``size``² inputs."""
    parser = ConfigParser(classifier_inference_config(size))
    transform: Callable[[Any], Any] = parser.get_parsed_content("preprocessing")
    return transform


def _decode_all(
    folder: Path, rows: list[dict[str, str]], size: int, workers: int
) -> dict[str, np.ndarray]:
    if workers > 1 and len(rows) >= POOL_MIN_IMAGES:
        import multiprocessing

        chunk = max(1, math.ceil(len(rows) / (workers * 8)))
        with ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(folder, size),
        ) as pool:
            decoded = list(pool.map(_worker_decode, rows, chunksize=chunk))
    else:
        preprocess = bundle_preprocessing(size)
        decoded = [_decode_one(folder, row, size, preprocess) for row in rows]
    return {
        "inputs": np.stack([d[0] for d in decoded]),
        "cover": np.stack([d[1] for d in decoded]),
        "shapes": np.asarray([d[2] for d in decoded], dtype=np.int32),
    }


def _lesion_facts(folder: Path, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return per image the highest lesion CNR and the largest diameter (nan: no lesion)."""
    cnr = np.full(len(ids), np.nan, dtype=np.float32)
    diameter = np.full(len(ids), np.nan, dtype=np.float32)
    path = folder / LESIONS_FILE
    if not path.is_file():
        return cnr, diameter
    where = {image_id: i for i, image_id in enumerate(ids)}
    for row in read_table(path):
        i = where.get(row["image_id"])
        if i is None:
            continue
        cnr[i] = np.fmax(cnr[i], float(row["cnr"]))
        diameter[i] = np.fmax(diameter[i], float(row["diameter_mm"]))
    return cnr, diameter


def _cache_path(folder: Path, size: int, preprocessing: dict[str, Any]) -> Path:
    digest = hashlib.sha256()
    digest.update((folder / MANIFEST_FILE).read_bytes())
    digest.update(json.dumps(preprocessing, sort_keys=True).encode())
    digest.update(f"{CACHE_FORMAT}:{size}".encode())
    return folder / CACHE_DIR / f"classifier-{size}-{digest.hexdigest()[:16]}.npz"


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in ("inputs", "cover", "shapes")}
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache is rebuilt, never trusted


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial.npz")
        np.savez(partial, inputs=arrays["inputs"], cover=arrays["cover"], shapes=arrays["shapes"])
        partial.replace(path)
    except OSError:
        pass  # a read-only data folder just means decoding again next time
