"""Explanation maps for a classifier: Grad-CAM, Grad-CAM++ and occlusion sensitivity. Pure.

Every function takes the network (a ``RegionClassifier``, or any module whose output is a
logits tensor of shape ``(batch, labels)``), a network input ``(C, H, W)`` or ``(B, C, H, W)``
and an explicit ``label_index``, and returns a raw float32 map at the input's ``H × W``
(``(H, W)``, or ``(B, H, W)`` for a batched input). Raw means no display normalisation: the
bias audit judges these values; overlays scale them for display. ``geometry.InputGeometry``
maps them back onto the original image.

Grad-CAM and Grad-CAM++ are computed here with one forward hook and ``torch.autograd.grad``
rather than with ``monai.visualize.GradCAM``: MONAI's wrapper registers hooks it never removes
(every GradCAM built on a long-lived model adds two more), switches the hooked layer's ReLU to
``inplace=False`` for good, accumulates ``.grad`` on the model's weights, and its default
postprocessing inverts the map. The maths is MONAI's (the tests check that the maps agree).
Occlusion uses ``monai.visualize.OcclusionSensitivity``, turned into "drop in probability".
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

import numpy as np
import torch
import torch.nn.functional as F
from monai.visualize import OcclusionSensitivity
from torch import nn

# Occlusion defaults: coarse on purpose. A mask of 1/8 of the side with 50 % overlap is
# 15 × 15 = 225 forward passes at any input size (RegionClassifier at 256² on an idle 2-core
# CPU: about 1 s, several times that under load); MONAI's default (16 px mask, 60 % overlap)
# is over 1,600 passes at 256² and grows with the input.
OCCLUSION_MASK_FRACTION = 1 / 8
OCCLUSION_OVERLAP = 0.5
OCCLUSION_BATCH = 16


class ExplainMethod(StrEnum):
    """The explanation maps Vigil computes (the names are also the overlay kinds)."""

    GRADCAM = "gradcam"
    GRADCAMPP = "gradcampp"
    OCCLUSION = "occlusion"


class _ImageLogits(nn.Module):
    """The image logits alone, whatever the network returns (tensor or ``RegionOutput``)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return image_logits(self.network(x))


def image_logits(output: object) -> torch.Tensor:
    """Return the ``(batch, labels)`` image logits from a network's output."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "image_logits", None)  # RegionOutput, without importing it
    if isinstance(logits, torch.Tensor):
        return logits
    raise TypeError(f"expected logits or a RegionOutput from the network, got {type(output)}")


def gradcam(model: nn.Module, x: torch.Tensor, *, layer: str, label_index: int = 0) -> np.ndarray:
    """Return the raw Grad-CAM map (float32, ≥ 0, the input's H × W) for ``label_index``.

    ``layer`` is a module path inside ``model`` (a bundle's ``explain_layer``, for instance
    ``"backbone.features"``). Each channel of that layer's output is weighted by the mean
    gradient of the label's logit over space; the weighted sum is rectified and upsampled.
    """
    activation, gradient, _ = _activation_and_gradient(model, x, layer, label_index)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    return _to_input_size(cam, x)


def gradcampp(model: nn.Module, x: torch.Tensor, *, layer: str, label_index: int = 0) -> np.ndarray:
    """Return the raw Grad-CAM++ map (float32, ≥ 0, the input's H × W) for ``label_index``.

    Chattopadhyay et al. 2018, as MONAI computes it, except for the paper's ``exp(score)``
    factor: it multiplies a whole image's map by one positive constant, so it changes no
    comparison within an image, and leaving it out keeps a large logit from overflowing to
    ``inf``. These maps are MONAI's divided by ``exp(score)``.
    """
    activation, gradient, _ = _activation_and_gradient(model, x, layer, label_index)
    grad2 = gradient.pow(2)
    denominator = 2 * grad2 + (activation * gradient.pow(3)).sum(dim=(2, 3), keepdim=True)
    denominator = torch.where(denominator != 0.0, denominator, torch.ones_like(denominator))
    alpha = grad2 / (denominator + 1e-7)
    weights = (alpha * F.relu(gradient)).sum(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    return _to_input_size(cam, x)


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    *,
    label_index: int = 0,
    mask_fraction: float = OCCLUSION_MASK_FRACTION,
    overlap: float = OCCLUSION_OVERLAP,
    batch_size: int = OCCLUSION_BATCH,
    mode: str | float = "gaussian",
) -> np.ndarray:
    """Return the occlusion importance map (float32, the input's H × W): the drop in the
    label's probability when a patch around each pixel is occluded.

    Higher = more important. Negative values are real: hiding that patch raised the
    probability (counter-evidence). One image at a time (MONAI's occlusion is batch-1 only;
    ``batch_size`` is how many occluded copies go through the network at once). The mask is
    ``mask_fraction`` of each side. ``mode`` is MONAI's: the default ``"gaussian"`` pulls the
    patch's centre towards 0 (for a 0..1 radiograph input, towards air-black, which removes
    an opacity) and blends windows smoothly, so the map peaks sharply on the evidence;
    ``"mean_img"`` replaces the whole patch with the image mean (a stronger but blocky map,
    one step per half mask). Each pixel's value averages the windows that cover it, so a
    finding smaller than the mask shows a partial drop.
    """
    batch = _as_batch(x)
    if batch.shape[0] != 1:
        raise ValueError(f"occlusion needs one image, got a batch of {batch.shape[0]}")
    rows, cols = batch.shape[-2:]
    mask = (max(2, round(rows * mask_fraction)), max(2, round(cols * mask_fraction)))
    logits = _ImageLogits(model)
    occluder = OcclusionSensitivity(
        logits,
        mask_size=mask,
        n_batch=batch_size,
        verbose=False,
        overlap=overlap,
        mode=mode,
        # Explicit sigmoid: MONAI's default picks softmax when the *input* has several
        # channels, which is wrong for Vigil's independent (multi-label) findings.
        activate=torch.sigmoid,
    )
    # MONAI 1.6 happens to run the occluded batches under no_grad (inside its eval_mode);
    # Vigil does not rely on that: with grad on, every occluded batch keeps its graph alive.
    with _eval(model), torch.no_grad(), warnings.catch_warnings():
        # MONAI indexes tensors with lists, which torch warns about on every patch. (The
        # filter is process-wide while it lasts: at worst another thread's copy is hidden.)
        warnings.filterwarnings(
            "ignore", message="Using a non-tuple sequence", category=UserWarning
        )
        probabilities = torch.sigmoid(logits(batch))[0]
        if not 0 <= label_index < probabilities.shape[0]:
            raise ValueError(f"label_index {label_index} outside 0..{probabilities.shape[0] - 1}")
        occluded, _ = occluder(batch)
    importance = probabilities[label_index] - torch.as_tensor(occluded)[0, label_index]
    return importance.detach().numpy().astype(np.float32)


def explain(
    method: ExplainMethod, model: nn.Module, x: torch.Tensor, *, layer: str, label_index: int = 0
) -> np.ndarray:
    """Return the raw map of ``method`` (see the function of that name); ``layer`` is unused
    by occlusion."""
    if method is ExplainMethod.GRADCAM:
        return gradcam(model, x, layer=layer, label_index=label_index)
    if method is ExplainMethod.GRADCAMPP:
        return gradcampp(model, x, layer=layer, label_index=label_index)
    return occlusion(model, x, label_index=label_index)


def _activation_and_gradient(
    model: nn.Module, x: torch.Tensor, layer: str, label_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the layer's activation, the label logit's gradient there (both (B, C, h, w),
    detached) and the logits, leaving the model as it was (mode, hooks, ``.grad``)."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"layer '{layer}' is not a module of {type(model).__name__}")
    batch = _as_batch(x)
    captured: list[torch.Tensor] = []

    def keep_output(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        captured.append(output)
        # Later layers get a copy, so an in-place op downstream (ReLU(inplace=True)) cannot
        # overwrite the activation whose gradient we ask for.
        return output.clone()

    handle = modules[layer].register_forward_hook(keep_output)
    try:
        with _eval(model), torch.enable_grad():
            # Requiring grad on the input makes a graph even if the weights are frozen;
            # autograd.grad stops at the activation, so no weight gets a .grad.
            logits = image_logits(model(batch.detach().clone().requires_grad_(True)))
            if not 0 <= label_index < logits.shape[1]:
                raise ValueError(f"label_index {label_index} outside 0..{logits.shape[1] - 1}")
            if len(captured) != 1:
                raise ValueError(f"layer '{layer}' ran {len(captured)} times; need exactly once")
            activation = captured[0]
            if activation.ndim != 4:
                raise ValueError(f"layer '{layer}' gives shape {tuple(activation.shape)}, not 2D")
            # Summing over the batch keeps each image's gradient its own: in eval mode no
            # layer mixes images.
            (gradient,) = torch.autograd.grad(logits[:, label_index].sum(), activation)
    finally:
        handle.remove()
    return activation.detach(), gradient.detach(), logits.detach()


def _to_input_size(cam: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """Return a (B, 1, h, w) map upsampled bilinearly to the input's H × W, as numpy."""
    full = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    maps = full[:, 0].numpy().astype(np.float32)
    return maps[0] if x.ndim == 3 else maps


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` as (B, C, H, W)."""
    if x.ndim == 3:
        return x[None]
    if x.ndim == 4:
        return x
    raise ValueError(f"expected a (C, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode (batch norm, dropout), then restore it."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)
