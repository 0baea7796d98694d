"""Model-parameter randomisation test for explanations (Adebayo et al., "Sanity Checks for
Saliency Maps", NeurIPS 2018), cascading from the top. Pure: torch, numpy, scipy.

The network's blocks are re-initialised one after another from the output down (for the
region classifier: the head, then the backbone's feature block, then its stages in reverse);
after each step Grad-CAM maps of the same images are compared with the trained network's:
Spearman rank correlation of the absolute maps, and SSIM of the maps scaled to 0..1.

Rule: once every block is random (the end of the cascade, the "decisive" step), a map that
still ranks the pixels as the trained model's did (mean Spearman ≥ ``SPEARMAN_LIMIT`` = 0.5)
comes from the input or the architecture, not from anything the model learnt: the check fails.
0.5 lies between what maps tied to their weights keep (Adebayo et al. report rank correlations
near 0 to 0.3 for Grad-CAM of randomised networks) and what a map that ignores its weights keeps
(1.0). Not earlier in the cascade: with the head and the explained layer random but the lower
blocks still trained, Grad-CAM follows the trained lower features, which is the model's learning
showing, not its absence (measured on vigil-cxr-demo: ρ 0.62 at that step, 0.08 at the end).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import spearmanr
from torch import nn

from service.inference.explain import gradcam

SPEARMAN_LIMIT = 0.5
SSIM_SIGMA = 1.5
RULE = (
    "fails when the mean Spearman rank correlation of |Grad-CAM| between the trained model and "
    "the model with every block re-initialised (the end of the cascade) is ≥ {limit}"
)


@dataclass(frozen=True)
class SanityStep:
    """Similarity to the trained model's maps once ``randomised`` (top first) are random."""

    step: int
    block: str
    randomised: tuple[str, ...]
    spearman: tuple[float, ...]  # per image
    ssim: tuple[float, ...]

    @property
    def mean_spearman(self) -> float:
        return float(np.mean(self.spearman)) if self.spearman else float("nan")

    @property
    def mean_ssim(self) -> float:
        return float(np.mean(self.ssim)) if self.ssim else float("nan")


@dataclass(frozen=True)
class SanityResult:
    explain_layer: str
    images: int
    skipped: int  # images whose trained map was empty: nothing to compare
    steps: tuple[SanityStep, ...]
    decisive_step: int
    limit: float
    passed: bool
    reason: str

    def as_json(self) -> dict[str, Any]:
        """Return the result as stored and shown (per-step means and per-image values)."""
        return {
            "method": "cascading model-parameter randomisation (Adebayo et al. 2018), Grad-CAM",
            "explain_layer": self.explain_layer,
            "images": self.images,
            "skipped": self.skipped,
            "decisive_step": self.decisive_step,
            "limit": self.limit,
            "rule": RULE.format(limit=self.limit),
            "passed": self.passed,
            "reason": self.reason,
            "steps": [
                {
                    **asdict(step),
                    "mean_spearman": round(step.mean_spearman, 4),
                    "mean_ssim": round(step.mean_ssim, 4),
                }
                for step in self.steps
            ],
        }


def cascade_blocks(network: nn.Module) -> list[str]:
    """Return the blocks to randomise, top (output) first.

    A region classifier: ``head``, ``backbone.features``, then ``backbone.stem_and_stages``'s
    blocks in reverse. Any other network: its modules that own parameters, in reverse order
    of registration (the usual top-to-bottom order reversed).
    """
    modules = dict(network.named_modules())
    stages = modules.get("backbone.stem_and_stages")
    if "head" in modules and "backbone.features" in modules and isinstance(stages, nn.Sequential):
        count = len(stages)
        return [
            "head",
            "backbone.features",
            *(f"backbone.stem_and_stages.{i}" for i in reversed(range(count))),
        ]
    owners = [
        name
        for name, module in network.named_modules()
        if name and any(True for _ in module.parameters(recurse=False))
    ]
    return list(reversed(owners))


def randomise(module: nn.Module, seed: int) -> None:
    """Re-initialise every parameter in ``module`` (its layers' own initialisers; a plain
    normal for parameters without one), reproducibly, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()
            elif any(True for _ in sub.parameters(recurse=False)):
                for parameter in sub.parameters(recurse=False):
                    nn.init.normal_(parameter, 0.0, 0.5)
            running = getattr(sub, "reset_running_stats", None)
            if callable(running):
                running()


def spearman_abs(a: np.ndarray, b: np.ndarray) -> float:
    """Return Spearman's ρ of |a| and |b| (0 when ``b`` is constant: its structure is gone;
    nan when ``a`` is: nothing to compare)."""
    x, y = np.abs(np.ravel(a)).astype(np.float64), np.abs(np.ravel(b)).astype(np.float64)
    if np.ptp(x) == 0:
        return float("nan")
    if np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(x, y).statistic)


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = SSIM_SIGMA) -> float:
    """Return the mean structural similarity (Wang et al. 2004, Gaussian window) of two maps,
    each scaled by its own maximum of |value| to 0..1 (data range 1)."""
    x, y = _unit(a), _unit(b)
    c1, c2 = 0.01**2, 0.03**2

    def blur(values: np.ndarray) -> np.ndarray:
        return np.asarray(ndimage.gaussian_filter(values, sigma, truncate=3.5))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(index.mean())


def sanity_check(
    network: nn.Module,
    inputs: torch.Tensor,
    *,
    layer: str,
    label_index: int = 0,
    seed: int = 0,
    limit: float = SPEARMAN_LIMIT,
    blocks: list[str] | None = None,
    on_step: Callable[[int, int], None] = lambda _done, _total: None,
) -> SanityResult:
    """Return the cascading randomisation test of ``network``'s Grad-CAM at ``layer`` on
    ``inputs`` (B, C, H, W). The network itself is left untouched (a copy is randomised)."""
    order = blocks if blocks is not None else cascade_blocks(network)
    modules = dict(network.named_modules())
    missing = [b for b in order if b not in modules]
    if missing or layer not in modules:
        raise ValueError(f"not modules of the network: {', '.join(missing or [layer])}")
    decisive = len(order)
    trained = _maps(network, inputs, layer, label_index)
    usable = [i for i in range(trained.shape[0]) if np.ptp(trained[i]) > 0]
    work = copy.deepcopy(network)
    work_modules = dict(work.named_modules())
    steps = []
    for number, block in enumerate(order, start=1):
        randomise(work_modules[block], seed + number)
        maps = _maps(work, inputs, layer, label_index)
        steps.append(
            SanityStep(
                step=number,
                block=block,
                randomised=tuple(order[:number]),
                spearman=tuple(round(spearman_abs(trained[i], maps[i]), 4) for i in usable),
                ssim=tuple(round(ssim(trained[i], maps[i]), 4) for i in usable),
            )
        )
        on_step(number, len(order))
    return _verdict(layer, trained.shape[0], usable, steps, decisive, limit)


def _verdict(
    layer: str,
    images: int,
    usable: list[int],
    steps: list[SanityStep],
    decisive: int,
    limit: float,
) -> SanityResult:
    skipped = images - len(usable)
    if not usable:
        passed, reason = False, "no image gave a non-empty Grad-CAM map: nothing to compare"
    else:
        rho = steps[decisive - 1].mean_spearman
        passed = rho < limit
        reason = (
            f"after re-initialising {', '.join(steps[decisive - 1].randomised)}, the maps' mean "
            f"Spearman correlation with the trained model's is {rho:.2f} "
            + (f"(< {limit}): the maps depend on the learnt weights" if passed else
               f"(≥ {limit}): the maps stay similar without the learnt weights")
        )  # fmt: skip
    return SanityResult(layer, images, skipped, tuple(steps), decisive, limit, passed, reason)


def _maps(network: nn.Module, inputs: torch.Tensor, layer: str, label_index: int) -> np.ndarray:
    maps = gradcam(network, inputs, layer=layer, label_index=label_index)
    return maps if maps.ndim == 3 else maps[None]


def _unit(values: np.ndarray) -> np.ndarray:
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    top = float(magnitude.max()) if magnitude.size else 0.0
    return magnitude / top if top > 0 else magnitude
