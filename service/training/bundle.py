"""Writes a trained network as a MONAI bundle folder that ``service.inference.registry`` loads.

The bundle is written next to its destination, loaded back through the registry's validation,
and only then swapped in: a failed or interrupted run never leaves a broken bundle behind.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch

from service.inference.errors import BundleError
from service.inference.registry import (
    INFERENCE_FILE,
    METADATA_FILE,
    MODEL_CARD_FILE,
    WEIGHTS_FILE,
    LoadedModel,
    ModelKind,
    load_bundle,
    sha256_of,
)

# MONAI's published metadata schema (the model zoo's); recorded, not downloaded.
METADATA_SCHEMA = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
    "0.8.1/meta_schema_20240725.json"
)
# Bundles live in git: larger weights belong in a release store, not the repository.
MAX_WEIGHTS_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class BundleInfo:
    """What metadata.json says about a model, apart from versions and the weights' hash."""

    version: str
    changelog: Mapping[str, str]
    task: str
    description: str
    authors: str
    copyright: str
    data_source: str
    data_type: str
    image_classes: str
    label_classes: str
    pred_classes: str
    intended_use: str
    network_data_format: Mapping[str, Any]
    kind: ModelKind
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    preprocessing: str
    disclaimer: str
    explain_layer: str | None = None
    required_packages: Mapping[str, str] = field(default_factory=dict)


def display_preprocessing() -> dict[str, Any]:
    """Return the MONAI preprocessing config every Vigil bundle uses: a 2D display-oriented
    float image of any size (higher = brighter) → (1, H, W) float32 in [-1, 1] at the config's
    ``input_size`` (0.5–99.5 percentile window, area resize)."""
    return {
        "_target_": "monai.transforms.Compose",
        "transforms": [
            {"_target_": "monai.transforms.EnsureChannelFirst", "channel_dim": "no_channel"},
            {
                "_target_": "monai.transforms.ScaleIntensityRangePercentiles",
                "lower": 0.5,
                "upper": 99.5,
                "b_min": -1.0,
                "b_max": 1.0,
                "clip": True,
            },
            {
                "_target_": "monai.transforms.Resize",
                "spatial_size": "@input_size",
                "mode": "area",
            },
            {
                "_target_": "monai.transforms.EnsureType",
                "data_type": "tensor",
                "dtype": "$torch.float32",
                "track_meta": False,
            },
        ],
    }


def display_input_format(size: int) -> dict[str, Any]:
    """Return the MONAI ``network_data_format`` entry of the input ``display_preprocessing``
    gives: one channel, ``size``² float32 in [-1, 1]."""
    return {
        "type": "image",
        "format": "magnitude",
        "num_channels": 1,
        "spatial_shape": [size, size],
        "dtype": "float32",
        "value_range": [-1, 1],
        "is_patch_data": False,
        "channel_def": {"0": "image"},
    }


def build_metadata(info: BundleInfo, weights_sha256: str) -> dict[str, Any]:
    """Return metadata.json's content: MONAI's schema fields plus the ``vigil`` section."""
    vigil: dict[str, Any] = {
        "kind": info.kind.value,
        "labels": list(info.labels),
        "input_size": list(info.input_size),
        "preprocessing": info.preprocessing,
        "disclaimer": info.disclaimer,
        "weights_sha256": weights_sha256,
    }
    if info.explain_layer is not None:
        vigil["explain_layer"] = info.explain_layer
    return {
        "schema": METADATA_SCHEMA,
        "version": info.version,
        "changelog": dict(info.changelog),
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": dict(info.required_packages),
        "task": info.task,
        "description": info.description,
        "authors": info.authors,
        "copyright": info.copyright,
        "data_source": info.data_source,
        "data_type": info.data_type,
        "image_classes": info.image_classes,
        "label_classes": info.label_classes,
        "pred_classes": info.pred_classes,
        "intended_use": info.intended_use,
        "network_data_format": dict(info.network_data_format),
        "vigil": vigil,
    }


def write_bundle(
    out: Path,
    *,
    network: torch.nn.Module,
    inference_config: Mapping[str, Any],
    info: BundleInfo,
    model_card: str,
    docs: Mapping[str, bytes] | None = None,
) -> LoadedModel:
    """Return the bundle written to ``out`` (replacing any old one) and loaded back."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.writing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_files(staging, network, inference_config, info, model_card, docs or {})
        # The staging folder's name is not the model's: validate it, then report under `out`.
        try:
            load_bundle(staging)
        except BundleError as exc:
            raise BundleError(exc.message.replace(staging.name, out.name, 1)) from exc
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_bundle(out)


def _write_files(
    folder: Path,
    network: torch.nn.Module,
    inference_config: Mapping[str, Any],
    info: BundleInfo,
    model_card: str,
    docs: Mapping[str, bytes],
) -> None:
    for sub in ("configs", "models", "docs"):
        (folder / sub).mkdir(parents=True)
    weights = folder / WEIGHTS_FILE
    # Plain CPU tensors, so the file loads with weights_only=True anywhere.
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    torch.save(state, weights)
    size = weights.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise BundleError(
            f"{folder.name}: {WEIGHTS_FILE} is {size / 2**20:.1f} MiB, "
            f"over the {MAX_WEIGHTS_BYTES / 2**20:.0f} MiB limit"
        )
    metadata = build_metadata(info, sha256_of(weights))
    _write_json(folder / METADATA_FILE, metadata)
    _write_json(folder / INFERENCE_FILE, dict(inference_config))
    (folder / MODEL_CARD_FILE).write_text(model_card, encoding="utf-8")
    for rel, content in docs.items():
        target = folder / "docs" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` with ``staging`` by renames, so readers see the old or the new bundle."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        if old.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
