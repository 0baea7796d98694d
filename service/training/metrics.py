"""Segmentation metrics on boolean masks (Dice, Hausdorff-95) and bootstrap confidence intervals."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import HausdorffDistanceMetric

BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95 % bootstrap confidence interval, over ``n`` images."""

    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 3) -> str:
        """Return ``mean (95 % CI low–high)`` rounded to ``digits``."""
        return f"{self.mean:.{digits}f} (95% CI {self.low:.{digits}f}–{self.high:.{digits}f})"


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Return the Dice overlap of two boolean masks (1.0 when both are empty)."""
    p, t = prediction.astype(bool), truth.astype(bool)
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((p & t).sum()) / total


def hausdorff95(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Return the 95th-percentile symmetric Hausdorff distance in pixels.

    An empty prediction or truth has no distance; it scores the image diagonal, the worst
    possible value, so that a missed lung counts against the model instead of being dropped.
    """
    if not prediction.any() or not truth.any():
        return 0.0 if not prediction.any() and not truth.any() else math.hypot(*truth.shape)
    metric = HausdorffDistanceMetric(percentile=95)
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated argument internally; nothing to fix on our side.
        warnings.filterwarnings(
            "ignore", message=".*always_return_as_numpy", category=FutureWarning
        )
        value = metric(
            torch.from_numpy(prediction.astype(np.float32))[None, None],
            torch.from_numpy(truth.astype(np.float32))[None, None],
        )
    # The metric is typed to return tensors or nested sequences; one pair gives one tensor.
    assert isinstance(value, torch.Tensor)
    return float(value.item())


def bootstrap(values: Sequence[float], *, seed: int = 0, level: float = 0.95) -> Estimate:
    """Return the mean of ``values`` with a percentile bootstrap confidence interval."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no values to summarise")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(BOOTSTRAP_SAMPLES, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return Estimate(mean=float(data.mean()), low=float(low), high=float(high), n=int(data.size))
