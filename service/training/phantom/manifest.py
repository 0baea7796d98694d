"""The ground-truth tables written beside the images: manifest.csv and lesions.csv.

Column order is a contract other code reads by name and position; see ``MANIFEST_COLUMNS`` and
``LESION_COLUMNS``. Boxes are "row0,col0,row1,col1" (half-open pixel coordinates) or empty.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from service.training.phantom.confounders import Box
from service.training.phantom.lesions import Lesion

MANIFEST_FILE = "manifest.csv"
LESIONS_FILE = "lesions.csv"


@dataclass(frozen=True)
class ManifestRow:
    """One image's row of manifest.csv, already formatted as text (fields in column order)."""

    image_id: str
    dicom_path: str
    patient_id: str
    patient_name: str
    sex: str
    age: str
    study_date: str
    study_uid: str
    series_uid: str
    sop_uid: str
    site: str
    manufacturer: str
    manufacturer_model_name: str
    institution_name: str
    station_name: str
    view_position: str
    photometric: str
    rows: str
    columns: str
    pixel_spacing_mm: str
    label: str
    n_lesions: str
    marker_text: str
    marker_box: str
    text_token: str
    text_box: str
    border_artifact: str
    border_box: str
    background: str
    seed: str


MANIFEST_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ManifestRow))
LESION_COLUMNS: tuple[str, ...] = (
    "image_id", "lesion_id", "kind", "center_row", "center_col", "diameter_mm", "diameter_px",
    "contrast", "cnr", "lung", "overlaps_rib", "overlaps_heart",
)  # fmt: skip


def format_box(box: Box | None) -> str:
    """Return a box as "row0,col0,row1,col1", or "" for no box."""
    return "" if box is None else ",".join(str(v) for v in box)


def parse_box(text: str) -> Box | None:
    """Return the box written by ``format_box`` (None for an empty cell)."""
    if not text:
        return None
    r0, c0, r1, c1 = (int(v) for v in text.split(","))
    return (r0, c0, r1, c1)


def lesion_row(image_id: str, lesion: Lesion) -> tuple[str, ...]:
    """Return one lesion's row of lesions.csv as text, in ``LESION_COLUMNS`` order."""
    return (
        image_id,
        str(lesion.lesion_id),
        lesion.kind,
        f"{lesion.center_row:.2f}",
        f"{lesion.center_col:.2f}",
        f"{lesion.diameter_mm:.2f}",
        f"{lesion.diameter_px:.2f}",
        f"{lesion.contrast:.2f}",
        f"{lesion.cnr:.3f}",
        lesion.lung,
        str(int(lesion.overlaps_rib)),
        str(int(lesion.overlaps_heart)),
    )


def write_tables(
    out: Path, manifest: Iterable[ManifestRow], lesions: Iterable[tuple[str, ...]]
) -> None:
    """Write manifest.csv and lesions.csv into ``out``, each replaced atomically."""
    _write_csv(out / MANIFEST_FILE, MANIFEST_COLUMNS, (astuple(row) for row in manifest))
    _write_csv(out / LESIONS_FILE, LESION_COLUMNS, lesions)


def read_table(path: Path) -> list[dict[str, str]]:
    """Return a manifest.csv or lesions.csv as a list of rows keyed by column name."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> None:
    """Write a CSV with Unix line endings to a temporary name, then rename it into place."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(partial, path)
