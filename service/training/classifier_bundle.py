"""How a region classifier is packaged: its inference.json and its bundle metadata.

Training and the service both build the network and the preprocessing from
``classifier_inference_config``, so what was trained is exactly what runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.inference.region_classifier import EXPLAIN_LAYER
from service.inference.registry import ModelKind
from service.training.bundle import BundleInfo, display_input_format, display_preprocessing

DEMO_DISCLAIMER = "Demo model, synthetic training data, not for clinical use."
PREPROCESSING = (
    "2D display image (modality LUT and VOI window applied, MONOCHROME1 inverted, higher = "
    "brighter); intensities mapped from the 0.5–99.5 percentiles to [-1, 1] and clipped; "
    "whole image resized to {size}×{size} (area interpolation, aspect ratio not kept)."
)


def classifier_inference_config(
    size: int,
    labels: int = 1,
    widths: Sequence[int] = (24, 32, 64, 96, 128),
    dropout: float = 0.1,
    *,
    sharpness: float = 4.0,
    temperature: float = 1.0,
    local_contrast: float = 0.0,
) -> dict[str, Any]:
    """Return inference.json for a RegionClassifier taking ``size``×``size`` inputs.

    ``temperature`` (fitted on validation data) is part of the network, so the probabilities
    the service reads are the calibrated ones.
    """
    return {
        "imports": ["$import torch"],
        "input_size": [size, size],
        "network_def": {
            "_target_": "service.inference.region_classifier.RegionClassifier",
            "labels": labels,
            "in_channels": 1,
            "widths": list(widths),
            "dropout": dropout,
            "sharpness": sharpness,
            "temperature": temperature,
            "local_contrast": local_contrast,
        },
        "network": "$@network_def",
        "preprocessing": display_preprocessing(),
    }


def classifier_bundle_info(
    *,
    version: str,
    size: int,
    labels: Sequence[str],
    description: str,
    data_source: str,
    intended_use: str,
    disclaimer: str = DEMO_DISCLAIMER,
    changelog: str = "region classifier trained by `vigil train classifier`",
) -> BundleInfo:
    """Return the metadata of a region classifier bundle."""
    return BundleInfo(
        version=version,
        changelog={version: changelog},
        task="Finding probability and per-region probability map for frontal chest radiographs",
        description=description,
        authors="Vigil contributors",
        copyright="Copyright (c) Vigil contributors",
        data_source=data_source,
        data_type="DICOM CR/DX frontal chest radiographs",
        image_classes="one channel, display-oriented radiograph",
        label_classes=", ".join(labels),
        pred_classes="image logits per label; per-region logits per label at 1/16 resolution",
        intended_use=intended_use,
        network_data_format={
            "inputs": {"image": display_input_format(size)},
            "outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "classification",
                    "num_channels": len(labels),
                    "spatial_shape": [len(labels)],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": {str(i): label for i, label in enumerate(labels)},
                }
            },
        },
        kind=ModelKind.CLASSIFIER,
        labels=tuple(labels),
        input_size=(size, size),
        preprocessing=PREPROCESSING.format(size=size),
        disclaimer=disclaimer,
        explain_layer=EXPLAIN_LAYER,
    )
