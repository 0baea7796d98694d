"""Lung fields of a chest radiograph: the "relevant region" for the bias audit. Pure functions.

``segment_lungs`` runs a ``lung-segmenter`` bundle on a 2D image of any size and returns a mask
of the same size; ``split_lungs`` separates it into the patient's right and left lung. A
segmenter bundle's preprocessing must resize the whole image (no crop, no pad), so that its
output maps back onto the image by resizing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from service.inference.errors import BundleError
from service.inference.registry import LoadedModel, ModelKind

THRESHOLD = 0.5
# Lungs are two blobs; a component far smaller than the largest is a false positive (a marker,
# the stomach bubble), not a lung. A collapsed lung is still well above 2 % of the other.
MIN_COMPONENT_FRACTION = 0.02
# A single blob with at least this share of its pixels on each side of the image centre is
# taken as two touching lungs rather than one.
TWO_LUNG_SHARE = 0.2


@dataclass(frozen=True)
class LungFields:
    """Boolean masks of the patient's right and left lung (image-left and image-right on PA/AP)."""

    right: np.ndarray
    left: np.ndarray

    @property
    def both(self) -> np.ndarray:
        """Return the union of both lungs."""
        union: np.ndarray = self.right | self.left
        return union


def lung_probability(model: LoadedModel, image: np.ndarray) -> np.ndarray:
    """Return the per-pixel lung probability (float32, the image's size) from a segmenter."""
    if model.kind is not ModelKind.LUNG_SEGMENTER:
        raise BundleError(f"{model.name}: is a {model.kind.value}, not a lung-segmenter")
    if image.ndim != 2:
        raise ValueError(f"segment_lungs needs a 2D image, got shape {image.shape}")
    x = model.preprocess(image)
    with torch.no_grad():
        probability = model.postprocess(model.network(x[None])[0])
    # Resizing the probability (not the thresholded mask) gives smooth edges at full size.
    full = F.interpolate(
        probability[None, :1], size=image.shape, mode="bilinear", align_corners=False
    )
    return full[0, 0].numpy().astype(np.float32)


def segment_lungs(model: LoadedModel, image: np.ndarray) -> np.ndarray:
    """Return the lung-field mask (bool, the image's size) of a display-oriented 2D image."""
    return clean_lung_mask(lung_probability(model, image) >= THRESHOLD)


def clean_lung_mask(mask: np.ndarray) -> np.ndarray:
    """Return ``mask`` with only its two largest components, holes filled."""
    return fill_holes(keep_largest_components(mask, 2))


def keep_largest_components(mask: np.ndarray, count: int) -> np.ndarray:
    """Return a mask of the ``count`` largest 8-connected components (tiny ones dropped)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1][:count]
    keep = [i + 1 for i in order if sizes[i] >= MIN_COMPONENT_FRACTION * sizes[order[0]]]
    return np.isin(labels, keep)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Return ``mask`` with every enclosed background region filled."""
    filled: np.ndarray = ndimage.binary_fill_holes(mask)
    return filled.astype(bool)


def split_lungs(mask: np.ndarray) -> LungFields:
    """Return the mask split into the patient's right lung (image left) and left lung."""
    mask = np.asarray(mask, dtype=bool)
    kept = keep_largest_components(mask, 2)
    labels, n = ndimage.label(kept, structure=np.ones((3, 3), dtype=bool))
    empty = np.zeros(mask.shape, dtype=bool)
    if n == 0:
        return LungFields(right=empty, left=empty.copy())
    if n == 2:
        columns = [np.nonzero(labels == i)[1].mean() for i in (1, 2)]
        image_left = 1 if columns[0] < columns[1] else 2
        return LungFields(right=labels == image_left, left=labels == 3 - image_left)
    # One blob: either a single lung (the other one not seen) or two lungs that touch, often
    # below the heart. A blob with a fair share on each side of the image centre is two lungs,
    # cut at the emptiest column of its middle third, where the mediastinum is.
    xs = np.nonzero(kept)[1]
    share_image_left = float((xs < mask.shape[1] / 2).mean())
    if not TWO_LUNG_SHARE < share_image_left < 1 - TWO_LUNG_SHARE:
        if share_image_left >= 0.5:
            return LungFields(right=kept, left=empty)
        return LungFields(right=empty, left=kept)
    lo, hi = int(xs.min()), int(xs.max()) + 1
    third = max((hi - lo) // 3, 1)
    middle = kept[:, lo + third : hi - third].sum(axis=0)
    cut = lo + third + int(np.argmin(middle)) if middle.size else mask.shape[1] // 2
    right, left = kept.copy(), kept.copy()
    right[:, cut:] = False
    left[:, :cut] = False
    return LungFields(right=right, left=left)
