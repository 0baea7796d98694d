"""The lung segmenter's training loop: augmentation, DiceCE, Adam, early stopping on val Dice."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

Sample = dict[str, torch.Tensor]
KEYS = ("image", "label")


@dataclass(frozen=True)
class LoopSettings:
    """How long and how hard to train."""

    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int
    deadline: float  # time.monotonic() by which training must have stopped
    workers: int = 1


@dataclass(frozen=True)
class EpochLog:
    """One epoch's mean training loss, validation Dice, learning rate and wall time."""

    epoch: int
    loss: float
    val_dice: float
    learning_rate: float
    seconds: float
    best: bool


@dataclass(frozen=True)
class LoopResult:
    """The per-epoch log, the best epoch (its weights are in the network) and why it stopped."""

    epochs: list[EpochLog]
    best_epoch: int
    best_val_dice: float
    stopped_because: str


def augmentations(size: int, seed: int) -> Compose:
    """Return the random training transforms: pose (rotate, zoom, shift) and intensity."""
    transforms = Compose(
        [
            # Patients are rotated, shifted and magnified differently on every radiograph.
            RandAffined(
                keys=KEYS,
                prob=0.9,
                rotate_range=(math.radians(12),),
                scale_range=(0.15, 0.15),
                translate_range=(0.08 * size, 0.08 * size),
                mode=("bilinear", "nearest"),
                padding_mode=("border", "zeros"),
            ),
            # Exposure, detector and processing differ between sites.
            RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
            RandScaleIntensityd("image", factors=0.15, prob=0.3),
            RandShiftIntensityd("image", offsets=0.15, prob=0.3),
            RandGaussianNoised("image", prob=0.2, std=0.03),
            RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.5, 1.2), sigma_y=(0.5, 1.2)),
            EnsureTyped(keys=KEYS, track_meta=False),
        ]
    )
    transforms.set_random_state(seed=seed)
    return transforms


def mask_to_input_size(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Return a boolean ``(H, W)`` mask resized to a ``(1, size, size)`` 0/1 float label."""
    resized = F.interpolate(mask[None, None].float(), size=(size, size), mode="area")
    return (resized[0] >= 0.5).float()


def batch_dice(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the Dice of each image's thresholded prediction against its label."""
    predicted = logits >= 0.0  # sigmoid(x) >= 0.5
    truth = labels >= 0.5
    overlap = (predicted & truth).flatten(1).sum(1).float()
    total = predicted.flatten(1).sum(1).float() + truth.flatten(1).sum(1).float()
    return torch.where(total > 0, 2 * overlap / total.clamp(min=1), torch.ones_like(total))


def validate(network: torch.nn.Module, samples: Sequence[Sample], batch_size: int) -> float:
    """Return the mean Dice of the network on validation samples at the input size."""
    network.eval()
    scores: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            images = torch.stack([s["image"] for s in chunk])
            labels = torch.stack([s["label"] for s in chunk])
            scores.append(batch_dice(network(images), labels))
    return float(torch.cat(scores).mean()) if scores else 0.0


def train_loop(
    network: torch.nn.Module,
    train: Sequence[Sample],
    validation: Sequence[Sample],
    settings: LoopSettings,
    size: int,
    on_epoch: Callable[[EpochLog], None],
) -> LoopResult:
    """Return the training log; the network ends holding its best-validation weights."""
    loader = DataLoader(
        Dataset(data=list(train), transform=augmentations(size, settings.seed)),
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=len(train) > settings.batch_size,
        num_workers=settings.workers,
        # Augmenting in a worker overlaps it with the forward/backward pass on the other core.
        persistent_workers=settings.workers > 0,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    loss_fn = DiceCELoss(sigmoid=True)
    optimiser = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, mode="max", factor=0.5, patience=max(settings.patience // 3, 1), min_lr=1e-5
    )
    log: list[EpochLog] = []
    best_dice, best_epoch = -1.0, 0
    best_state = copy.deepcopy(network.state_dict())
    stopped = f"reached {settings.epochs} epochs"
    for epoch in range(1, settings.epochs + 1):
        started = time.monotonic()
        network.train()
        losses: list[float] = []
        for batch in loader:
            optimiser.zero_grad()
            loss = loss_fn(network(batch["image"]), batch["label"])
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        val_dice = validate(network, validation, settings.batch_size)
        scheduler.step(val_dice)
        improved = val_dice > best_dice
        if improved:
            best_dice, best_epoch = val_dice, epoch
            best_state = copy.deepcopy(network.state_dict())
        seconds = time.monotonic() - started
        entry = EpochLog(
            epoch=epoch,
            loss=sum(losses) / max(len(losses), 1),
            val_dice=val_dice,
            learning_rate=float(optimiser.param_groups[0]["lr"]),
            seconds=seconds,
            best=improved,
        )
        log.append(entry)
        on_epoch(entry)
        if epoch - best_epoch >= settings.patience:
            stopped = f"no better validation Dice for {settings.patience} epochs"
            break
        if epoch < settings.epochs and time.monotonic() + seconds > settings.deadline:
            stopped = f"time limit (after {epoch} epochs)"
            break
    network.load_state_dict(best_state)
    network.eval()
    return LoopResult(
        epochs=log, best_epoch=best_epoch, best_val_dice=best_dice, stopped_because=stopped
    )
