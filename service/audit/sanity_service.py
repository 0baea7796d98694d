"""Run a model release's sanity check on sample images and store the result by its sha256."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.pixels.utils import pixel_array
from sqlalchemy.orm import Session

from service.analysis.pipeline import preprocess
from service.audit import repository
from service.audit.sanity import SanityResult, sanity_check
from service.dicom.render import display_image
from service.errors import BadRequest
from service.inference.registry import LoadedModel, ModelKind
from service.orm import SanityCheck

DEFAULT_IMAGES = 20
PHANTOM_SEED = 2018  # the sample when no images are given: fixed, so reruns compare


def sample_inputs(
    model: LoadedModel, images: Path | None, n: int = DEFAULT_IMAGES, *, seed: int = 0
) -> torch.Tensor:
    """Return ``n`` network inputs (n, C, H, W): DICOM files under ``images`` (a seeded
    sample), or freshly generated phantom radiographs when no folder is given."""
    if n < 1:
        raise BadRequest("the sanity check needs at least one image")
    if images is None:
        from service.training.phantom.generator import PhantomOptions, generate

        with tempfile.TemporaryDirectory(prefix="vigil-sanity-") as tmp:
            generate(PhantomOptions(n=n, seed=PHANTOM_SEED, size=256), Path(tmp), workers=1)
            return _inputs(model, sorted((Path(tmp) / "dicom").rglob("*.dcm")))
    files = sorted(p for p in images.rglob("*") if p.is_file() and _is_dicom(p))
    if not files:
        raise BadRequest(f"no DICOM files under {images}")
    random.Random(seed).shuffle(files)
    return _inputs(model, files[:n])


def run_sanity(
    model: LoadedModel,
    inputs: torch.Tensor,
    *,
    seed: int = 0,
    on_step: Callable[[int, int], None] = lambda _done, _total: None,
) -> SanityResult:
    """Return the cascading randomisation test of a classifier bundle's Grad-CAM."""
    if model.kind is not ModelKind.CLASSIFIER or model.explain_layer is None:
        raise BadRequest(f"model {model.name} is a {model.kind.value}: nothing to explain")
    return sanity_check(
        model.network, inputs, layer=model.explain_layer, seed=seed, on_step=on_step
    )


def store(
    session: Session, model: LoadedModel, result: SanityResult, requested_by: str
) -> SanityCheck:
    """Record the result with the model's identity (its weights' sha256 above all)."""
    return repository.add_sanity_check(
        session,
        SanityCheck(
            model_name=model.name,
            model_version=model.version,
            model_sha256=model.sha256,
            passed=result.passed,
            images=result.images,
            requested_by=requested_by[:64],
            result=result.as_json(),
        ),
    )


def _inputs(model: LoadedModel, files: list[Path]) -> torch.Tensor:
    batch = []
    for path in files:
        source = pydicom.dcmread(path, force=True)
        display = display_image(source, pixel_array(source, index=0))
        if display.ndim != 2:
            continue  # colour images are not what the classifier reads
        x, _geometry = preprocess(model, np.asarray(display))
        batch.append(x)
    if not batch:
        raise BadRequest("none of the sample images could be read as a greyscale radiograph")
    return torch.cat(batch)


def _is_dicom(path: Path) -> bool:
    """Return whether a file carries the DICOM preamble's 'DICM' marker."""
    try:
        with path.open("rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False
