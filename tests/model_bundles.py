"""Tiny model bundles for tests: real bundle files, untrained (or hand-set) weights."""

from __future__ import annotations

from pathlib import Path

import torch

from service.inference.region_classifier import RegionClassifier
from service.inference.registry import LoadedModel
from service.training.bundle import write_bundle
from service.training.classifier_bundle import classifier_bundle_info, classifier_inference_config

TEST_CLASSIFIER = "vigil-test-classifier"
WIDTHS = (8, 8, 16, 16, 16)


def write_test_classifier(
    models_dir: Path, *, size: int = 64, seed: int = 0, widths: tuple[int, ...] = WIDTHS
) -> LoadedModel:
    """Write an untrained region classifier bundle called ``vigil-test-classifier``."""
    torch.manual_seed(seed)
    network = RegionClassifier(labels=1, widths=widths, dropout=0.0)
    return write_bundle(
        models_dir / TEST_CLASSIFIER,
        network=network,
        inference_config=classifier_inference_config(size, labels=1, widths=widths, dropout=0.0),
        info=classifier_bundle_info(
            version="0.0.1",
            size=size,
            labels=["nodule"],
            description="Untrained test classifier",
            data_source="none (random weights)",
            intended_use="tests only",
            disclaimer="Test model, random weights, not for clinical use.",
        ),
        model_card="# vigil-test-classifier\n\nRandom weights, for tests only.\n",
    )
