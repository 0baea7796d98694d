"""Generate a phantom set: the options, each image's recipe, parallel workers, files and tables.

Image i depends only on (seed, i) and the options, never on the worker that made it, so any
``workers`` value writes byte-identical files. Layout of ``out``:

    manifest.csv, lesions.csv, dicom/<image_id>.dcm,
    masks/body/<image_id>.png (0/255), masks/lungs/<image_id>.png (0, 1 = right, 2 = left),
    masks/lesions/<image_id>.png (0/255, union of lesions)
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from service.training.phantom.backgrounds import Background, load_backgrounds
from service.training.phantom.confounders import ConfounderStrengths
from service.training.phantom.dicom_writer import (
    DicomImage,
    Modality,
    Photometric,
    instance_uids,
    write_dicom,
)
from service.training.phantom.geometry import REFERENCE_FIELD_MM
from service.training.phantom.imaging import MAX_STORED, quantize
from service.training.phantom.lesions import LesionMix
from service.training.phantom.manifest import ManifestRow, format_box, lesion_row, write_tables
from service.training.phantom.patients import draw_patient
from service.training.phantom.render import ImageRequest, Streams, render_image
from service.training.phantom.sites import Site, make_sites

SUBFOLDERS = ("dicom", "masks/body", "masks/lungs", "masks/lesions")
ImageResult = tuple[ManifestRow, list[tuple[str, ...]]]


class PhantomOptionsError(ValueError):
    """An option is out of range; the message names it."""


@dataclass(frozen=True)
class PhantomOptions:
    """Everything that decides the generated images (``workers`` does not, so it is not here)."""

    n: int
    seed: int = 0
    size: int = 512
    pixel_spacing_mm: float | None = None  # None: 358.4 mm / size, 0.7 mm at 512
    prevalence: float = 0.5
    modality: Modality = Modality.CR
    monochrome1_fraction: float = 0.2
    ap_fraction: float = 0.2
    sites: int = 3
    site_intensity: float = 0.5
    site_prevalence: float = 0.0
    strengths: ConfounderStrengths = field(default_factory=ConfounderStrengths)
    mix: LesionMix = field(default_factory=LesionMix)
    backgrounds: Path | None = None

    @property
    def spacing_mm(self) -> float:
        """Return the pixel spacing in mm (by default the reference chest field fills the image)."""
        if self.pixel_spacing_mm is not None:
            return self.pixel_spacing_mm
        return round(float(REFERENCE_FIELD_MM / self.size), 4)

    def validate(self) -> None:
        """Raise PhantomOptionsError naming the first option that is out of range."""
        _require(self.n >= 1, f"n must be at least 1 (got {self.n})")
        _require(self.seed >= 0, f"seed must be 0 or more (got {self.seed})")
        _require(32 <= self.size <= 4096, f"size must be 32..4096 (got {self.size})")
        _require(
            0.05 <= self.spacing_mm <= 10.0,
            f"pixel spacing must be 0.05..10 mm (got {self.spacing_mm})",
        )
        _require(self.sites >= 1, f"sites must be at least 1 (got {self.sites})")
        for name, value in (
            ("prevalence", self.prevalence),
            ("monochrome1 fraction", self.monochrome1_fraction),
            ("AP fraction", self.ap_fraction),
            ("site intensity", self.site_intensity),
            ("site prevalence strength", self.site_prevalence),
            ("marker strength", self.strengths.marker),
            ("text strength", self.strengths.text),
            ("border strength", self.strengths.border),
            ("easy fraction", self.mix.easy_fraction),
            ("opacity fraction", self.mix.opacity_fraction),
        ):
            _require(0.0 <= value <= 1.0, f"{name} must be between 0 and 1 (got {value})")
        for name, (lo, hi) in (
            ("CNR range", self.mix.cnr_range),
            ("diameter range", self.mix.diameter_range_mm),
        ):
            _require(0 < lo <= hi, f"{name} must satisfy 0 < min <= max (got {lo}, {hi})")

    def fingerprint(self) -> str:
        """Return a short hash of the options: UIDs derive from it, so runs never collide."""
        described = asdict(self)
        described["backgrounds"] = self.backgrounds.name if self.backgrounds else None
        text = json.dumps(described, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunSummary:
    """What a run wrote."""

    images: int
    positives: int
    lesions: int
    seconds: float


@dataclass(frozen=True)
class RunContext:
    """What every worker needs to make any image of the run."""

    options: PhantomOptions
    out: Path
    sites: tuple[Site, ...]
    backgrounds: tuple[Background, ...]
    fingerprint: str


def generate(
    options: PhantomOptions,
    out: Path,
    *,
    workers: int = 1,
    on_image: Callable[[], None] | None = None,
) -> RunSummary:
    """Write ``options.n`` images with masks and tables into ``out``; return the counts."""
    started = time.perf_counter()
    options.validate()
    backgrounds = tuple(load_backgrounds(options.backgrounds)) if options.backgrounds else ()
    sites = make_sites(
        count=options.sites,
        seed=options.seed,
        prevalence=options.prevalence,
        intensity=options.site_intensity,
        prevalence_strength=options.site_prevalence,
    )
    context = RunContext(options, out, tuple(sites), backgrounds, options.fingerprint())
    for sub in SUBFOLDERS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    lesions: list[tuple[str, ...]] = []
    for row, image_lesions in _results(context, workers):
        rows.append(row)
        lesions.extend(image_lesions)
        if on_image is not None:
            on_image()
    write_tables(out, rows, lesions)
    return RunSummary(
        images=len(rows),
        positives=sum(row.label == "1" for row in rows),
        lesions=len(lesions),
        seconds=time.perf_counter() - started,
    )


def make_image(context: RunContext, index: int) -> ImageResult:
    """Make image ``index``: decide its facts, render it, write its files, return its rows."""
    options = context.options
    rng = np.random.default_rng([options.seed, index, 0])
    site = context.sites[int(rng.integers(len(context.sites)))]
    label = int(rng.random() < site.prevalence)
    photometric = (
        Photometric.MONOCHROME1
        if rng.random() < options.monochrome1_fraction
        else Photometric.MONOCHROME2
    )
    background = (
        context.backgrounds[int(rng.integers(len(context.backgrounds)))]
        if context.backgrounds
        else None
    )
    patient = draw_patient(rng, seed=options.seed, index=index, ap_fraction=options.ap_fraction)
    spacing = options.spacing_mm
    rendered = render_image(
        ImageRequest(
            rows=options.size,
            cols=options.size,
            spacing_mm=spacing,
            view=patient.view,
            sex=patient.sex,
            label=label,
            site=site,
            strengths=options.strengths,
            mix=options.mix,
            background=background,
        ),
        Streams.for_image(options.seed, index),
    )
    display = quantize(rendered.display)
    center, width = _window(display, rendered.body)
    if photometric is Photometric.MONOCHROME1:
        stored = (MAX_STORED - display).astype(np.uint16)
        center = MAX_STORED - center
    else:
        stored = display
    image_id = f"{index:06d}"
    uids = instance_uids(context.fingerprint, image_id)
    annotations = rendered.annotations
    marker, text, border = annotations.marker, annotations.text, annotations.border
    dicom_path = f"dicom/{image_id}.dcm"
    write_dicom(
        context.out / dicom_path,
        DicomImage(
            pixels=stored,
            photometric=photometric,
            spacing_mm=spacing,
            window_center=center,
            window_width=width,
            modality=options.modality,
            patient=patient,
            site=site,
            uids=uids,
            burned_in_annotation=marker is not None or text is not None,
        ),
    )
    _write_png(context.out / "masks/body" / f"{image_id}.png", rendered.body.astype(np.uint8) * 255)
    _write_png(context.out / "masks/lungs" / f"{image_id}.png", rendered.lungs)
    _write_png(
        context.out / "masks/lesions" / f"{image_id}.png",
        rendered.lesion_mask.astype(np.uint8) * 255,
    )
    row = ManifestRow(
        image_id=image_id,
        dicom_path=dicom_path,
        patient_id=patient.patient_id,
        patient_name=patient.name,
        sex=patient.sex,
        age=str(patient.age),
        study_date=patient.study_date,
        study_uid=uids.study,
        series_uid=uids.series,
        sop_uid=uids.sop,
        site=site.name,
        manufacturer=site.manufacturer,
        manufacturer_model_name=site.model,
        institution_name=site.institution,
        station_name=site.station,
        view_position=patient.view,
        photometric=photometric.value,
        rows=str(options.size),
        columns=str(options.size),
        pixel_spacing_mm=f"{spacing:.6g}",
        # A positive draw whose lesions found no room in the lungs is recorded as negative.
        label=str(int(bool(rendered.lesions))),
        n_lesions=str(len(rendered.lesions)),
        marker_text=marker.text if marker else "",
        marker_box=format_box(marker.box if marker else None),
        text_token=text.text if text else "",
        text_box=format_box(text.box if text else None),
        border_artifact=border.kind if border else "",
        border_box=format_box(border.box if border else None),
        background=background.name if background else "phantom",
        seed=str(options.seed),
    )
    return row, [lesion_row(image_id, lesion) for lesion in rendered.lesions]


def _require(condition: bool, message: str) -> None:
    """Raise PhantomOptionsError with ``message`` unless ``condition`` holds."""
    if not condition:
        raise PhantomOptionsError(message)


def _window(display: npt.NDArray[np.uint16], body: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """Return a window (centre, width) from the darkest air (or lung) to the densest body part."""
    lo = float(np.percentile(display, 1.0))
    hi = float(np.percentile(display[body], 99.5)) if body.any() else float(display.max())
    return round((lo + hi) / 2), max(1, round(hi - lo))


def _write_png(path: Path, pixels: npt.NDArray[np.uint8]) -> None:
    """Write an 8-bit greyscale PNG."""
    Image.fromarray(pixels, mode="L").save(path, format="PNG")


def _results(context: RunContext, workers: int) -> Iterator[ImageResult]:
    """Yield every image's rows in index order, made here or by ``workers`` processes."""
    n = context.options.n
    if workers <= 1 or n == 1:
        for index in range(n):
            yield make_image(context, index)
        return
    chunk = max(1, min(8, n // (workers * 4)))
    spawn = multiprocessing.get_context("spawn")
    with (
        _one_blas_thread(),
        spawn.Pool(min(workers, n), initializer=_init_worker, initargs=(context,)) as pool,
    ):
        yield from pool.imap(_worker_image, range(n), chunksize=chunk)


_WORKER_CONTEXT: RunContext | None = None


def _init_worker(context: RunContext) -> None:
    """Keep the run's context in the worker process."""
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = context


def _worker_image(index: int) -> ImageResult:
    """Make one image in a worker process."""
    assert _WORKER_CONTEXT is not None, "worker started without a context"
    return make_image(_WORKER_CONTEXT, index)


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Start workers with one BLAS thread each: N workers × N threads thrash the cores."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
