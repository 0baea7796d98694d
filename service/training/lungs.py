"""``vigil train lungs``: a MONAI UNet lung-field segmenter, written as the bundle vigil-lungs.

Real radiographs (fixed split: every 5th sorted id held out for testing) plus optional phantom
lungs; early stopping on validation Dice; the best weights are written as a bundle, loaded back
through the registry, and scored on the held-out real images at their original size (Dice and
Hausdorff-95 with bootstrap CIs), which go into the model card.
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.networks.nets import UNet
from monai.utils import set_determinism

from service.inference.lungs import segment_lungs
from service.inference.registry import LoadedModel
from service.training.bundle import display_preprocessing, write_bundle
from service.training.lung_card import CardFacts, lung_bundle_info, lung_model_card
from service.training.lung_data import (
    LungImage,
    TrainingDataError,
    built_on,
    load_phantoms,
    load_real,
    read_manifest,
    read_phantom_manifest,
    split_ids,
)
from service.training.lung_loop import EpochLog, LoopSettings, Sample, mask_to_input_size
from service.training.lung_loop import train_loop as run_loop
from service.training.metrics import Estimate, bootstrap, dice, hausdorff95
from service.training.plots import training_curves_png

BUNDLE_NAME = "vigil-lungs"
DEFAULT_OUT = Path("models") / BUNDLE_NAME
CHANNELS = (16, 32, 64, 128, 256)
STRIDES = (2, 2, 2, 2)
RES_UNITS = 2
# Time kept back from --max-minutes for scoring the test split and writing the bundle.
EVALUATION_RESERVE_S = 60.0


@dataclass(frozen=True)
class LungTrainingConfig:
    """Everything ``vigil train lungs`` can be told."""

    data_dir: Path
    phantom_dirs: tuple[Path, ...] = ()
    out: Path = DEFAULT_OUT
    epochs: int = 150
    size: int = 256
    seed: int = 0
    max_minutes: float = 25.0
    batch_size: int = 8
    learning_rate: float = 1e-3
    patience: int = 25
    version: str = "1.0.0"
    workers: int = 1
    command: str = "vigil train lungs"


@dataclass(frozen=True)
class ImageScore:
    """One held-out image's Dice and Hausdorff-95 (pixels, at its original size)."""

    id: str
    dice: float
    hd95: float


@dataclass(frozen=True)
class LungTrainingResult:
    """The written bundle, the training log and the held-out scores."""

    model: LoadedModel
    epochs: list[EpochLog]
    best_epoch: int
    stopped_because: str
    scores: list[ImageScore]
    dice: Estimate
    hd95: Estimate
    wall_seconds: float
    counts: dict[str, int] = field(default_factory=dict)


def inference_config(size: int) -> dict[str, Any]:
    """Return inference.json: the UNet and the preprocessing that training also uses."""
    return {
        "imports": ["$import torch"],
        "input_size": [size, size],
        "network_def": {
            "_target_": "monai.networks.nets.UNet",
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 1,
            "channels": list(CHANNELS),
            "strides": list(STRIDES),
            "num_res_units": RES_UNITS,
        },
        "network": "$@network_def",
        # Input: a 2D display-oriented float image of any size (higher = brighter).
        "preprocessing": display_preprocessing(),
        # One (1, H, W) logit map in, the lung probability out.
        "postprocessing": {"_target_": "monai.transforms.Activations", "sigmoid": True},
    }


def build_network() -> torch.nn.Module:
    """Return a fresh UNet with the architecture written into inference.json."""
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=CHANNELS,
        strides=STRIDES,
        num_res_units=RES_UNITS,
    )


def train_lungs(
    config: LungTrainingConfig, on_epoch: Callable[[EpochLog], None] = lambda _: None
) -> LungTrainingResult:
    """Return the result of training, writing and scoring the lung segmenter bundle."""
    started = time.monotonic()
    torch.set_num_threads(2)
    set_determinism(seed=config.seed)
    split = split_ids([row["id"] for row in read_manifest(config.data_dir)])
    if not split.train or not split.validation or not split.test:
        raise TrainingDataError(f"{config.data_dir}: too few images for a train/val/test split")
    preprocess = ConfigParser(inference_config(config.size)).get_parsed_content("preprocessing")

    def prepare(images: Iterable[LungImage]) -> list[Sample]:
        # Shrink each image as it is read: full-size phantoms would not all fit in memory.
        return [
            {
                "image": torch.as_tensor(preprocess(img.image)),
                "label": mask_to_input_size(torch.from_numpy(img.mask), config.size),
            }
            for img in images
        ]

    train = prepare(load_real(config.data_dir, split.train))
    counts = {"real_train": len(train)}
    held_out = {*split.test, *split.validation}
    for phantom_dir in config.phantom_dirs:
        phantoms = prepare(load_phantoms(phantom_dir, skip_backgrounds=held_out))
        counts[f"phantoms:{phantom_dir.name}"] = len(phantoms)
        skipped = sum(built_on(row, held_out) for row in read_phantom_manifest(phantom_dir))
        if skipped:
            counts[f"phantoms_skipped:{phantom_dir.name}"] = skipped
        train.extend(phantoms)
    validation = prepare(load_real(config.data_dir, split.validation))
    counts["real_validation"] = len(validation)
    counts["real_test"] = len(split.test)

    network = build_network()
    settings = LoopSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        patience=config.patience,
        seed=config.seed,
        deadline=started + config.max_minutes * 60.0 - EVALUATION_RESERVE_S,
        workers=config.workers,
    )
    loop = run_loop(network, train, validation, settings, config.size, on_epoch)
    test_images = list(load_real(config.data_dir, split.test))

    info = lung_bundle_info(config.version, config.size, with_phantoms=bool(config.phantom_dirs))
    inference = inference_config(config.size)
    # Score the bundle as the service will load it, not the in-memory network.
    with tempfile.TemporaryDirectory() as tmp:
        trial = write_bundle(
            Path(tmp) / config.out.name,
            network=network,
            inference_config=inference,
            info=info,
            model_card="(being scored)\n",
        )
        scores = evaluate(trial, test_images)
    dice_estimate = bootstrap([s.dice for s in scores], seed=config.seed)
    hd95_estimate = bootstrap([s.hd95 for s in scores], seed=config.seed)
    wall = time.monotonic() - started
    facts = CardFacts(
        split=split,
        manifest=read_manifest(config.data_dir),
        counts=counts,
        epochs=loop.epochs,
        best_epoch=loop.best_epoch,
        stopped_because=loop.stopped_because,
        dice=dice_estimate,
        hd95=hd95_estimate,
        scores=[(s.id, s.dice, s.hd95) for s in scores],
        size=config.size,
        seed=config.seed,
        wall_minutes=wall / 60.0,
        command=config.command,
        machine=f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        phantom_dirs=[p.name for p in config.phantom_dirs],
    )
    model = write_bundle(
        config.out,
        network=network,
        inference_config=inference,
        info=info,
        model_card=lung_model_card(facts),
        docs={
            "training_curves.png": training_curves_png(
                [e.loss for e in loop.epochs], [e.val_dice for e in loop.epochs]
            )
        },
    )
    return LungTrainingResult(
        model=model,
        epochs=loop.epochs,
        best_epoch=loop.best_epoch,
        stopped_because=loop.stopped_because,
        scores=scores,
        dice=dice_estimate,
        hd95=hd95_estimate,
        wall_seconds=time.monotonic() - started,
        counts=counts,
    )


def evaluate(model: LoadedModel, images: Sequence[LungImage]) -> list[ImageScore]:
    """Return Dice and HD95 of ``segment_lungs`` on each image, at the image's own size."""
    scores = []
    for img in images:
        predicted = segment_lungs(model, img.image)
        scores.append(
            ImageScore(
                id=img.id, dice=dice(predicted, img.mask), hd95=hausdorff95(predicted, img.mask)
            )
        )
    return scores
