"""How good a region classifier is: AUROC with CIs, the operating point, calibration, AUROC by
lesion conspicuity, and the region map's pointing game. Pure maths plus one runner.

Choices (also in the model card):
- operating point: the threshold maximising Youden's J (sensitivity + specificity − 1) on the
  validation set's calibrated probabilities; the test set only reports it;
- calibration: one temperature T fitted on validation logits by minimum NLL; ECE uses 15
  equal-width bins of the finding's probability (|observed rate − mean probability|, weighted
  by the bin's share of images);
- per-bin AUROC: each positive image is binned by its most conspicuous lesion (highest CNR) and
  by its largest lesion (diameter), and scored against all negative images;
- pointing game: the argmax of the probability map, brought to the original image as the
  service does, hits when it lies within half a map cell's diagonal of a lesion pixel. The map
  is 1/16 of the input: its argmax is a cell centre, and any lesion pixel in that cell lies
  within half the cell's diagonal of it (15.8 mm for 512² at 0.7 mm and a 256² input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from scipy.stats import rankdata

from service.inference.geometry import InputGeometry
from service.training.classifier_data import ClassifierSet
from service.training.metrics import BOOTSTRAP_SAMPLES, Estimate, bootstrap

ECE_BINS = 15
STRIDE = 16
CNR_BINS: tuple[tuple[str, float, float], ...] = (
    ("CNR < 1", 0.0, 1.0),
    ("CNR 1–2", 1.0, 2.0),
    ("CNR 2–3.5", 2.0, 3.5),
    ("CNR ≥ 3.5", 3.5, math.inf),
)
SIZE_BINS: tuple[tuple[str, float, float], ...] = (
    ("< 10 mm", 0.0, 10.0),
    ("10–20 mm", 10.0, 20.0),
    ("≥ 20 mm", 20.0, math.inf),
)


@dataclass(frozen=True)
class BinResult:
    """AUROC of the positives in one bin against every negative (None: no positives)."""

    name: str
    positives: int
    negatives: int
    auroc: Estimate | None


@dataclass(frozen=True)
class Evaluation:
    """A classifier's scores on one labelled set."""

    images: int
    positives: int
    auroc: Estimate
    threshold: float
    sensitivity: Estimate
    specificity: Estimate
    temperature: float
    ece_uncalibrated: float
    ece: float
    pointing: Estimate | None
    pointing_tolerance_mm: float
    cnr_bins: list[BinResult]
    size_bins: list[BinResult]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Return the logistic function of ``x`` (float64, no overflow warnings)."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64))))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Return the area under the ROC curve (ties count half; nan without both classes)."""
    y = np.asarray(labels) > 0.5
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def auroc_estimate(
    scores: np.ndarray, labels: np.ndarray, *, seed: int = 0, level: float = 0.95
) -> Estimate:
    """Return the AUROC with a stratified percentile bootstrap CI (positives and negatives
    resampled separately, so every resample has both)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels) > 0.5
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        raise ValueError("AUROC needs positive and negative images")
    rng = np.random.default_rng(seed)
    values = np.empty(BOOTSTRAP_SAMPLES)
    for b in range(BOOTSTRAP_SAMPLES):
        p = pos[rng.integers(0, pos.size, pos.size)]
        n = np.sort(neg[rng.integers(0, neg.size, neg.size)])
        below = np.searchsorted(n, p, side="left")
        at_or_below = np.searchsorted(n, p, side="right")
        values[b] = (below + at_or_below).sum() / (2.0 * pos.size * neg.size)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Estimate(mean=auroc(s, y), low=float(low), high=float(high), n=int(s.size))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Return the mean binary negative log-likelihood of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.float64)
    # log(1 + e^z) − y·z, written to stay finite for large |z|.
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Return the temperature T (0.05–20) that minimises the NLL of ``logits / T``."""
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, math.exp(log_t)),
        bounds=(math.log(0.05), math.log(20.0)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(result.x))


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Return the ECE: over equal-width probability bins, the image-weighted mean of
    |share of positives − mean probability|."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(y[inside].mean() - p[inside].mean())
    return float(total / max(p.size, 1))


def youden_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Return the threshold t (positive when p ≥ t) that maximises sensitivity + specificity."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels) > 0.5
    if y.all() or not y.any():
        raise ValueError("an operating point needs positive and negative images")
    candidates = np.unique(p)
    sensitivity = np.array([(p[y] >= t).mean() for t in candidates])
    specificity = np.array([(p[~y] < t).mean() for t in candidates])
    best = int(np.argmax(sensitivity + specificity))
    # Halfway to the next lower score: the same split, less sensitive to tiny shifts.
    lower = candidates[best - 1] if best > 0 else 0.0
    return float((candidates[best] + lower) / 2.0)


def probability_map(cells: np.ndarray, geometry: InputGeometry) -> np.ndarray:
    """Return one label's cell logits (h, w) as a probability map on the original image,
    resampled exactly as the service's ``pipeline.classify`` does."""
    probabilities = torch.sigmoid(torch.from_numpy(np.asarray(cells, dtype=np.float32)))
    at_input = F.interpolate(
        probabilities[None, None], size=geometry.input_shape, mode="bilinear", align_corners=False
    )
    return geometry.to_original(at_input[0, 0].numpy())


def pointing_tolerance_px(geometry: InputGeometry, stride: int = STRIDE) -> float:
    """Return half the diagonal of one map cell, in original-image pixels."""
    rows, cols = geometry.padded_shape
    cell_rows = stride * rows / geometry.input_rows
    cell_cols = stride * cols / geometry.input_cols
    return 0.5 * math.hypot(cell_rows, cell_cols)


def pointing_hit(prob_map: np.ndarray, lesion_mask: np.ndarray, tolerance_px: float) -> bool:
    """Return whether the map's maximum lies within ``tolerance_px`` of a lesion pixel."""
    if prob_map.shape != lesion_mask.shape:
        raise ValueError(f"map {prob_map.shape} and mask {lesion_mask.shape} differ in shape")
    lesion = np.argwhere(lesion_mask)
    if lesion.size == 0:
        return False
    peak = np.asarray(np.unravel_index(int(np.argmax(prob_map)), prob_map.shape))
    nearest = float(np.sqrt(((lesion - peak) ** 2).sum(axis=1).min()))
    return nearest <= tolerance_px


def binned_auroc(
    scores: np.ndarray,
    labels: np.ndarray,
    values: np.ndarray,
    bins: Sequence[tuple[str, float, float]],
    *,
    seed: int = 0,
) -> list[BinResult]:
    """Return per bin the AUROC of positives whose value is in [low, high) against all
    negatives."""
    y = np.asarray(labels) > 0.5
    results = []
    for name, low, high in bins:
        chosen = y & (values >= low) & (values < high)
        keep = chosen | ~y
        estimate = (
            auroc_estimate(scores[keep], y[keep], seed=seed)
            if chosen.any() and (~y).any()
            else None
        )
        results.append(BinResult(name, int(chosen.sum()), int((~y).sum()), estimate))
    return results


def predict(
    network: torch.nn.Module, inputs: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Return the image logits (n, labels) and region logits (n, labels, h, w) of inputs."""
    network.eval()
    images, regions = [], []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            x = torch.from_numpy(inputs[start : start + batch_size, None].astype(np.float32))
            out = network(x.contiguous(memory_format=torch.channels_last))
            images.append(out.image_logits.float().numpy())
            regions.append(out.region_logits.float().contiguous().numpy())
    return np.concatenate(images), np.concatenate(regions)


def pointing_game(
    data: ClassifierSet, region_logits: np.ndarray, *, seed: int = 0
) -> tuple[Estimate | None, float]:
    """Return the pointing-game hit rate over the positive images (None without any) and the
    mean tolerance in mm."""
    hits: list[float] = []
    tolerances_mm: list[float] = []
    for i in np.flatnonzero(data.labels > 0):
        rows, cols = (int(v) for v in data.shapes[i])
        geometry = InputGeometry.fit((rows, cols), (data.size, data.size))
        tolerance = pointing_tolerance_px(geometry)
        prob_map = probability_map(region_logits[i, 0], geometry)
        hits.append(float(pointing_hit(prob_map, data.lesion_mask(int(i)), tolerance)))
        tolerances_mm.append(tolerance * float(data.spacing_mm[i]))
    if not hits:
        return None, math.nan
    return bootstrap(hits, seed=seed), float(np.mean(tolerances_mm))


def evaluate(
    network: torch.nn.Module,
    data: ClassifierSet,
    *,
    threshold: float,
    temperature: float,
    seed: int = 0,
) -> Evaluation:
    """Return the scores of a calibrated network (its logits already divided by
    ``temperature``) on a labelled set, at the operating ``threshold``."""
    logits, region_logits = predict(network, data.inputs)
    scores = logits[:, 0].astype(np.float64)
    y = data.labels > 0
    probabilities = sigmoid(scores)
    uncalibrated = sigmoid(scores * temperature)
    flagged = probabilities >= threshold
    pointing, tolerance_mm = pointing_game(data, region_logits, seed=seed)
    return Evaluation(
        images=len(data),
        positives=int(y.sum()),
        auroc=auroc_estimate(scores, y, seed=seed),
        threshold=threshold,
        sensitivity=bootstrap(flagged[y].astype(float).tolist(), seed=seed),
        specificity=bootstrap((~flagged[~y]).astype(float).tolist(), seed=seed),
        temperature=temperature,
        ece_uncalibrated=expected_calibration_error(uncalibrated, y),
        ece=expected_calibration_error(probabilities, y),
        pointing=pointing,
        pointing_tolerance_mm=tolerance_mm,
        cnr_bins=binned_auroc(scores, y, data.max_cnr, CNR_BINS, seed=seed),
        size_bins=binned_auroc(scores, y, data.max_diameter_mm, SIZE_BINS, seed=seed),
    )
