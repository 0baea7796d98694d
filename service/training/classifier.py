"""``vigil train classifier``: a region classifier trained on phantom folders, written as a bundle.

Data: ``--data`` alone is split 70/15/15 by a hash of each image id (``split_by_id``);
``--val``/``--test`` folders replace the validation/test parts (the whole of ``--data`` then
trains). Training: ``classifier_loop``. Afterwards one temperature is fitted on the validation
logits and written into the network (so the service's probabilities are calibrated), the
operating point is chosen on validation (Youden's J), and the bundle, loaded back through the
registry, is scored on the test images; the scores go into the model card.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import set_determinism

from service.inference.region_classifier import RegionClassifier
from service.inference.registry import INFERENCE_FILE, LoadedModel, load_bundle
from service.training.bundle import write_bundle
from service.training.classifier_bundle import (
    DEMO_DISCLAIMER,
    classifier_bundle_info,
    classifier_inference_config,
)
from service.training.classifier_card import CardFacts, classifier_model_card
from service.training.classifier_data import ClassifierSet, load_set, split_by_id
from service.training.classifier_eval import (
    Evaluation,
    fit_temperature,
    predict,
    sigmoid,
    youden_threshold,
)
from service.training.classifier_eval import evaluate as evaluate_network
from service.training.classifier_loop import Augmentation, EpochLog, LoopSettings, train_loop
from service.training.lung_data import TrainingDataError
from service.training.plots import train_validation_curves_png

WIDTHS = (24, 32, 64, 96, 128)
SHARPNESS = 4.0
# Time kept back from --max-minutes for calibration, scoring the test set and writing.
EVALUATION_RESERVE_S = 60.0
OPERATING_POINT_RULE = "maximum Youden's J (sensitivity + specificity − 1) on validation"


@dataclass(frozen=True)
class ClassifierTrainingConfig:
    """Everything ``vigil train classifier`` can be told."""

    data_dir: Path
    out: Path
    val_dir: Path | None = None
    test_dir: Path | None = None
    size: int = 256
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    l1: float = 0.0
    dropout: float = 0.1
    augmentation: Augmentation = field(default_factory=Augmentation)
    region_weight: float = 1.0
    region_positive_weight: float = 10.0
    local_contrast: float = 8.0
    crop: int = 128  # 0 = whole images throughout
    crop_epochs: int | None = None  # epochs on crops first [all but the last 10 %]
    init_from: Path | None = None
    freeze_backbone: bool = False
    patience: int = 8
    max_minutes: float = 25.0
    seed: int = 0
    version: str = "1.0.0"
    labels: tuple[str, ...] = ("lesion",)
    workers: int = 1  # augmentation and decoding processes
    threads: int = 2  # torch threads for training
    bf16: bool = False
    command: str = "vigil train classifier"
    data_commands: tuple[str, ...] = ()  # how the phantom folders were made, for the card
    description: str = "Region classifier trained on Vigil's synthetic phantom radiographs."
    intended_use: str = (
        "Demonstrating Vigil's analysis, review and bias-audit workflow. Not a medical device; "
        "not for diagnosis, treatment or any clinical decision."
    )
    disclaimer: str = DEMO_DISCLAIMER
    preparation_seconds: float = 0.0  # spent before training (generating data), for the card


@dataclass(frozen=True)
class ClassifierTrainingResult:
    """The written bundle, the training log, calibration and the test scores."""

    model: LoadedModel
    epochs: list[EpochLog]
    best_epoch: int
    stopped_because: str
    temperature: float
    threshold: float
    evaluation: Evaluation
    counts: dict[str, int]
    wall_seconds: float


def train_classifier(
    config: ClassifierTrainingConfig,
    on_epoch: Callable[[EpochLog], None] = lambda _: None,
    on_progress: Callable[[str], None] = lambda _: None,
) -> ClassifierTrainingResult:
    """Return the result of training, calibrating, writing and scoring a region classifier."""
    started = time.monotonic() - config.preparation_seconds
    torch.set_num_threads(config.threads)
    set_determinism(seed=config.seed)
    train, validation, test = _datasets(config, on_progress)
    counts = {
        "train": len(train),
        "train_positives": int(train.labels.sum()),
        "validation": len(validation),
        "validation_positives": int(validation.labels.sum()),
        "test": len(test),
        "test_positives": int(test.labels.sum()),
    }
    widths, local_contrast, network = _network(config)
    settings = LoopSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        l1=config.l1,
        patience=config.patience,
        seed=config.seed,
        deadline=started + config.max_minutes * 60.0 - EVALUATION_RESERVE_S,
        region_weight=config.region_weight,
        region_positive_weight=config.region_positive_weight,
        crop=config.crop if config.crop < config.size else 0,
        crop_epochs=_crop_epochs(config),
        freeze_backbone=config.freeze_backbone,
        bf16=config.bf16,
        workers=config.workers,
        augmentation=config.augmentation,
    )
    on_progress(
        f"training on {len(train)} images ({counts['train_positives']} with lesions), "
        f"validating on {len(validation)}"
    )
    loop = train_loop(network, train, validation, settings, on_epoch)

    # Calibrate on validation: one temperature, then the operating point on calibrated scores.
    val_logits = predict(network, validation.inputs)[0][:, 0]
    temperature = fit_temperature(val_logits, validation.labels)
    threshold = youden_threshold(sigmoid(val_logits / temperature), validation.labels)
    network.temperature = temperature
    inference = classifier_inference_config(
        config.size,
        labels=len(config.labels),
        widths=widths,
        dropout=config.dropout,
        sharpness=SHARPNESS,
        temperature=temperature,
        local_contrast=local_contrast,
    )
    inference["operating_point"] = {"threshold": threshold, "rule": OPERATING_POINT_RULE}
    info = classifier_bundle_info(
        version=config.version,
        size=config.size,
        labels=config.labels,
        description=config.description,
        data_source="; ".join(config.data_commands) or f"vigil phantom folders: {config.data_dir}",
        intended_use=config.intended_use,
        disclaimer=config.disclaimer,
    )
    on_progress(f"scoring the bundle on {len(test)} test images")
    # Score the bundle as the service will load it, not the in-memory network.
    with tempfile.TemporaryDirectory() as tmp:
        trial = write_bundle(
            Path(tmp) / config.out.name,
            network=network,
            inference_config=inference,
            info=info,
            model_card="(being scored)\n",
        )
        evaluation = evaluate_network(
            trial.network, test, threshold=threshold, temperature=temperature, seed=config.seed
        )
    facts = CardFacts(
        name=config.out.name,
        config=config,
        widths=widths,
        counts=counts,
        epochs=loop.epochs,
        best_epoch=loop.best_epoch,
        stopped_because=loop.stopped_because,
        evaluation=evaluation,
        operating_point_rule=OPERATING_POINT_RULE,
        wall_minutes=(time.monotonic() - started) / 60.0,
        machine=f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
    )
    curves = train_validation_curves_png(
        [e.train_image_loss for e in loop.epochs],
        [e.val_loss for e in loop.epochs],
        [e.train_auroc for e in loop.epochs],
        [e.val_auroc for e in loop.epochs],
        title=f"{config.out.name}: image BCE and AUROC per epoch",
    )
    model = write_bundle(
        config.out,
        network=network,
        inference_config=inference,
        info=info,
        model_card=classifier_model_card(facts),
        docs={
            "training_curves.png": curves,
            "evaluation.json": _evaluation_json(facts).encode(),
        },
    )
    return ClassifierTrainingResult(
        model=model,
        epochs=loop.epochs,
        best_epoch=loop.best_epoch,
        stopped_because=loop.stopped_because,
        temperature=temperature,
        threshold=threshold,
        evaluation=evaluation,
        counts=counts,
        wall_seconds=time.monotonic() - started,
    )


def operating_threshold(model: LoadedModel) -> float:
    """Return the operating threshold written into a classifier bundle's inference.json."""
    config = json.loads((model.path / INFERENCE_FILE).read_text(encoding="utf-8"))
    point = config.get("operating_point")
    if not isinstance(point, dict) or not isinstance(point.get("threshold"), float | int):
        raise TrainingDataError(f"{model.name}: {INFERENCE_FILE} has no operating_point")
    return float(point["threshold"])


def _datasets(
    config: ClassifierTrainingConfig, on_progress: Callable[[str], None]
) -> tuple[ClassifierSet, ClassifierSet, ClassifierSet]:
    """Return the train, validation and test sets the config names."""

    def load(folder: Path) -> ClassifierSet:
        return load_set(folder, config.size, workers=config.workers, on_progress=on_progress)

    data = load(config.data_dir)
    split = split_by_id(data.ids)
    parts = [split.train]
    if config.val_dir is not None:
        validation = load(config.val_dir)
        parts.append(split.validation)
    else:
        validation = data.take(split.validation)
    if config.test_dir is not None:
        test = load(config.test_dir)
        parts.append(split.test)
    else:
        test = data.take(split.test)
    train = data.take(np.sort(np.concatenate(parts)))
    for name, part in (("training", train), ("validation", validation), ("test", test)):
        if part.labels.min() == part.labels.max():
            raise TrainingDataError(
                f"the {name} images ({len(part)}) need both positives and negatives; "
                "use more images or a prevalence between 0 and 1"
            )
    return train, validation, test


def _crop_epochs(config: ClassifierTrainingConfig) -> int:
    """Return how many epochs train on crops (by default all but the last 10 %)."""
    if not config.crop or config.crop >= config.size:
        return 0
    if config.crop_epochs is not None:
        return min(config.crop_epochs, config.epochs)
    return max(config.epochs - max(config.epochs // 10, 1), 1) if config.epochs > 1 else 1


def _network(
    config: ClassifierTrainingConfig,
) -> tuple[tuple[int, ...], float, RegionClassifier]:
    """Return the widths, the local-contrast gain and a fresh network, or one whose backbone
    comes from ``config.init_from``."""
    widths: tuple[int, ...] = WIDTHS
    local_contrast = config.local_contrast
    state: dict[str, torch.Tensor] = {}
    if config.init_from is not None:
        source = load_bundle(config.init_from)
        if not isinstance(source.network, RegionClassifier):
            raise TrainingDataError(f"{source.name}: --init-from needs a region classifier")
        network_def = json.loads((source.path / INFERENCE_FILE).read_text(encoding="utf-8"))
        # The backbone's shape comes with its weights.
        widths = tuple(network_def["network_def"].get("widths", WIDTHS))
        local_contrast = float(network_def["network_def"].get("local_contrast", 0.0))
        state = {k: v for k, v in source.network.state_dict().items() if k.startswith("backbone.")}
    network = RegionClassifier(
        labels=len(config.labels),
        in_channels=1,
        widths=widths,
        dropout=config.dropout,
        sharpness=SHARPNESS,
        local_contrast=local_contrast,
    )
    if state:
        # The backbone transfers; the head is new (the labels may differ).
        network.load_state_dict(state, strict=False)
    return widths, local_contrast, network


def _evaluation_json(facts: CardFacts) -> str:
    """Return the numbers of the model card as JSON (docs/evaluation.json)."""
    evaluation: dict[str, Any] = asdict(facts.evaluation)
    return json.dumps(
        {
            "model": facts.name,
            "version": facts.config.version,
            "operating_point_rule": facts.operating_point_rule,
            "counts": facts.counts,
            "best_epoch": facts.best_epoch,
            "stopped_because": facts.stopped_because,
            "wall_minutes": round(facts.wall_minutes, 2),
            "test": evaluation,
            "epochs": [asdict(e) for e in facts.epochs],
        },
        indent=2,
        default=str,
    )
