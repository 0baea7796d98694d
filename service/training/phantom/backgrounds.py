"""Real radiographs as backgrounds: load, square and resample them, split and derive masks.

A backgrounds folder holds ``manifest.csv`` with columns id, image, mask (paths relative to
the folder): 8-bit greyscale images shown with MONOCHROME2 polarity and 0/255 lung masks of the
same size, such as ../shared/data/cxr-lungs-ccby. Nothing of them is copied into the repository.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from service.training.phantom.imaging import FloatImage, Mask, blur

REQUIRED_COLUMNS = ("id", "image", "mask")


class BackgroundsError(ValueError):
    """The backgrounds folder is missing, or its manifest or files are unusable."""


@dataclass(frozen=True)
class Background:
    """One entry of a backgrounds manifest."""

    name: str  # the image's file name, recorded in manifest.csv's background column
    image: Path
    mask: Path


@dataclass(frozen=True)
class BackgroundImage:
    """A background resampled to the output grid, with its masks."""

    fraction: FloatImage  # 0..1 display brightness (MONOCHROME2 polarity)
    body: Mask
    lungs: npt.NDArray[np.uint8]  # 1 = patient's right (image left), 2 = patient's left
    noise_fraction: float  # estimated noise deviation already in the image, as a fraction


def load_backgrounds(folder: Path) -> list[Background]:
    """Return the manifest's entries; raise BackgroundsError if it or a listed file is missing."""
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise BackgroundsError(f"{manifest} not found (expected columns id,image,mask)")
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BackgroundsError(f"{manifest} lacks column(s) {', '.join(missing)}")
        entries = [
            Background(Path(row["image"]).name, folder / row["image"], folder / row["mask"])
            for row in reader
        ]
    if not entries:
        raise BackgroundsError(f"{manifest} lists no images")
    for entry in entries:
        for path in (entry.image, entry.mask):
            if not path.is_file():
                raise BackgroundsError(f"{path} (listed in {manifest}) not found")
    return entries


def prepare_background(entry: Background, rows: int, cols: int) -> BackgroundImage:
    """Return the background padded to the output's aspect, resampled, with derived masks."""
    with Image.open(entry.image) as source:
        picture = source.convert("F")
    with Image.open(entry.mask) as source:
        lung_source = source.convert("L")
    if lung_source.size != picture.size:
        raise BackgroundsError(f"{entry.mask} is not the size of {entry.image}")
    picture = _fit(picture, rows, cols, Image.Resampling.BILINEAR)
    lung_source = _fit(lung_source, rows, cols, Image.Resampling.NEAREST)
    fraction = np.clip(np.asarray(picture, dtype=np.float32) / 255.0, 0.0, 1.0)
    lung_mask = np.asarray(lung_source) > 127
    lungs = split_lungs(lung_mask)
    return BackgroundImage(
        fraction=fraction,
        body=derive_body(fraction, lung_mask),
        lungs=lungs,
        noise_fraction=estimate_noise(fraction, lung_mask),
    )


def split_lungs(mask: Mask) -> npt.NDArray[np.uint8]:
    """Return lung labels: 1 left of the gap between the lungs (patient's right), 2 right of it."""
    cols = mask.shape[1]
    profile = mask.sum(axis=0)
    lo, hi = int(0.3 * cols), max(int(0.3 * cols) + 1, int(0.7 * cols))
    # The midline is the emptiest column in the middle band (the mediastinum).
    valley = lo + int(np.argmin(profile[lo:hi]))
    labels = np.zeros(mask.shape, dtype=np.uint8)
    labels[:, :valley][mask[:, :valley]] = 1
    labels[:, valley:][mask[:, valley:]] = 2
    return labels


def derive_body(fraction: FloatImage, lungs: Mask) -> Mask:
    """Return a body mask: brighter than the air around the patient, filled row by row."""
    smooth = blur(fraction, 2.0)
    outside = smooth[~lungs] if (~lungs).any() else smooth.ravel()
    air = float(np.percentile(smooth, 1.0))
    tissue = float(np.median(outside))
    tissue_like = smooth > air + 0.35 * (tissue - air)
    body = np.zeros_like(tissue_like)
    for row in range(body.shape[0]):
        hits = np.flatnonzero(tissue_like[row] | lungs[row])
        if hits.size:
            body[row, hits[0] : hits[-1] + 1] = True
    result: Mask = body | lungs
    return result


def estimate_noise(fraction: FloatImage, region: Mask) -> float:
    """Return the white-noise deviation within ``region`` (Immerkær's Laplacian estimator)."""
    f = fraction.astype(np.float64)
    response = (
        f[:-2, :-2] - 2 * f[:-2, 1:-1] + f[:-2, 2:]
        - 2 * f[1:-1, :-2] + 4 * f[1:-1, 1:-1] - 2 * f[1:-1, 2:]
        + f[2:, :-2] - 2 * f[2:, 1:-1] + f[2:, 2:]
    )  # fmt: skip
    inside = region[1:-1, 1:-1]
    if not inside.any():
        return 0.0
    return float(np.sqrt(np.pi / 2.0) / 6.0 * np.abs(response[inside]).mean())


def _fit(picture: Image.Image, rows: int, cols: int, method: Image.Resampling) -> Image.Image:
    """Return ``picture`` padded with black to the output's aspect ratio, then resized to it."""
    width, height = picture.size
    target = cols / rows
    if width / height < target:
        new_size = (round(height * target), height)
    else:
        new_size = (width, round(width / target))
    canvas = Image.new(picture.mode, new_size, 0)
    canvas.paste(picture, ((new_size[0] - width) // 2, (new_size[1] - height) // 2))
    return canvas.resize((cols, rows), method)
