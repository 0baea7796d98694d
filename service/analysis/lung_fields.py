"""The lung-field stage of an analysis, runnable in the helper process.

Lung segmentation needs only the working copy of the image, so it starts as soon as the image
is decoded and runs on the second core while the classifier and Grad-CAM run on the first.
Across the process boundary goes a small request (the bundle's folder, the sha256 of the
weights the server loaded, the working copy, where to save the labels); the helper loads the
bundle once and keeps it, saves the labels where the ``lungs`` overlay is drawn from, and
answers only whether it found both lungs. A helper whose copy of the bundle is not the one
the server validated (the weights changed on disk since) refuses, and the server runs the
stage itself with its own model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from service.analysis.helper_process import HelperProcess
from service.analysis.results_files import load_map, save_array
from service.inference.errors import BundleError
from service.inference.lungs import segment_lungs, split_lungs
from service.inference.registry import LoadedModel, load_bundle
from service.log_config import get_logger
from service.results.regions import lung_label_map

log = get_logger(__name__)

# One torch thread in the helper: the server's own torch work has the other core.
HELPER_TORCH_THREADS = 1


@dataclass(frozen=True)
class LungRequest:
    bundle: Path
    weights_sha256: str
    working: np.ndarray  # the working copy, uint8 display image
    save_to: Path | None  # where the labels go (.npy); the answer is then small


@dataclass(frozen=True)
class LungResult:
    labels: np.ndarray | None  # 1 right lung, 2 left lung, 0 elsewhere; None without both
    elapsed_ms: float


@dataclass(frozen=True)
class _Segmented:
    saved: bool  # labels were found and saved
    elapsed_ms: float


def lung_labels(model: LoadedModel, working: np.ndarray) -> np.ndarray | None:
    """Return lung labels (1 right, 2 left) at the working copy's size, or None without both."""
    fields = split_lungs(segment_lungs(model, working.astype(np.float32)))
    if not fields.right.any() or not fields.left.any():
        return None
    return lung_label_map(fields.right, fields.left)


def start_lung_fields(
    helper: HelperProcess, model: LoadedModel, working: np.ndarray, save_to: Path
) -> Callable[[], LungResult]:
    """Start segmenting the lung fields of ``working`` in the helper, which saves the labels
    to ``save_to``; return a function that waits for them. Where the helper cannot use the
    model (its weights changed on disk since the server loaded them) the server segments
    them itself."""
    with _lock:  # inline work (no helper) uses the server's own copy, not a second one
        _models.setdefault(model.path, model)
    request = LungRequest(model.path, model.sha256, working, save_to)
    waiting = helper.submit(lung_labels_beside, request)

    def result() -> LungResult:
        try:
            segmented = waiting()
        except BundleError as exc:
            log.warning("analysis.helper_lung_model", reason=exc.message)
            segmented = _segment(model, request)
        labels = load_map(save_to) if segmented.saved else None
        return LungResult(labels, segmented.elapsed_ms)

    return result


def warm_up(helper: HelperProcess, model: LoadedModel) -> None:
    """Have the helper load torch and the lung model now (in the background), so the first
    analysis does not wait for them."""
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))  # not flat: no 0/0 scaling
    helper.submit(lung_labels_beside, LungRequest(model.path, model.sha256, ramp, None))


def lung_labels_beside(request: LungRequest) -> _Segmented:
    """Segment and save the lung labels of a working copy with the requested bundle (in the
    helper, loaded there once)."""
    return _segment(_loaded(request.bundle, request.weights_sha256), request)


def _segment(model: LoadedModel, request: LungRequest) -> _Segmented:
    started = time.perf_counter()
    labels = lung_labels(model, request.working)
    if labels is not None and request.save_to is not None:
        save_array(request.save_to, labels)
    saved = labels is not None and request.save_to is not None
    return _Segmented(saved, round((time.perf_counter() - started) * 1000, 1))


_models: dict[Path, LoadedModel] = {}
_lock = threading.Lock()


def _loaded(bundle: Path, weights_sha256: str) -> LoadedModel:
    with _lock:
        model = _models.get(bundle)
        if model is None or model.sha256 != weights_sha256:
            if not _models:
                torch.set_num_threads(HELPER_TORCH_THREADS)
            model = load_bundle(bundle)
            _models[bundle] = model
    if model.sha256 != weights_sha256:
        raise BundleError(
            f"{model.name}: the weights on disk (sha256 {model.sha256}) are not the ones the "
            f"server loaded ({weights_sha256})"
        )
    return model
