"""The region classifier's training loop: MONAI augmentation, image BCE plus an optional region
loss from lesion masks, AdamW (weight decay, optional L1), early stopping on validation AUROC.

The region loss: every 16×16-pixel cell of the input that holds lesion is a positive cell, every
cell of a lesion-free image a negative one; cells touched by under 1 % lesion (slivers of a
lesion next door) are left out. It teaches the map where findings are, which the image label
alone only hints at (the pointing game depends on it); ``region_weight`` 0 switches it off.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import DataLoader
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandShiftIntensityd,
    Transform,
)
from torch.utils.data import Dataset

from service.inference.region_classifier import RegionClassifier
from service.training.classifier_data import COVER_SCALE, ClassifierSet
from service.training.classifier_eval import auroc, predict

STRIDE = 16
SLIVER = 0.01  # cells with less lesion than this (but some) are ambiguous: no region loss
KEYS = ("image", "cover")
Sample = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Augmentation:
    """Random training transforms, each off at magnitude 0."""

    rotate_deg: float = 8.0  # ± rotation
    translate: float = 0.05  # ± shift, share of the image size
    zoom: float = 0.08  # ± magnification
    contrast: float = 0.25  # gamma drawn from [1 − c, 1 + c]
    brightness: float = 0.08  # ± intensity shift (inputs span [-1, 1])
    noise: float = 0.02  # Gaussian noise standard deviation
    probability: float = 0.5  # chance each intensity transform is applied

    @classmethod
    def off(cls) -> Augmentation:
        """Return an augmentation that changes nothing."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def transforms(self, size: int, crop: int = 0) -> Compose:
        """Return the MONAI transforms for ``{"image", "cover"}`` samples of ``size``², ending
        with a random ``crop``² window when ``crop`` is set."""
        steps: list[Transform] = []
        out = crop or size
        if crop or self.rotate_deg or self.translate or self.zoom:
            # Patients are posed and magnified differently on every radiograph; the lesion
            # coverage moves with the image so the region targets stay on the lesion. For
            # crops the same resampling cuts the window (a shift of up to the margin puts it
            # anywhere), so only crop² pixels are computed.
            shift = (size - out) / 2 + self.translate * size
            steps.append(
                RandAffined(
                    keys=KEYS,
                    prob=1.0 if crop else 0.8,
                    rotate_range=(math.radians(self.rotate_deg),),
                    translate_range=(shift, shift),
                    scale_range=(self.zoom, self.zoom),
                    spatial_size=(out, out),
                    mode=("bilinear", "bilinear"),
                    padding_mode=("border", "zeros"),
                )
            )
        # Exposure, detector and processing differ between sites.
        if self.contrast:
            gamma = (max(1.0 - self.contrast, 0.05), 1.0 + self.contrast)
            steps.append(RandAdjustContrastd("image", prob=self.probability, gamma=gamma))
        if self.brightness:
            steps.append(
                RandShiftIntensityd("image", offsets=self.brightness, prob=self.probability)
            )
        if self.noise:
            steps.append(RandGaussianNoised("image", prob=self.probability, std=self.noise))
        steps.append(EnsureTyped(keys=KEYS, track_meta=False))
        return Compose(steps)


@dataclass(frozen=True)
class LoopSettings:
    """How long and how hard to train."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    l1: float
    patience: int
    seed: int
    deadline: float  # time.monotonic() by which training must have stopped
    region_weight: float = 1.0  # 0 = no region loss
    region_positive_weight: float = 10.0  # lesion cells are ~1 % of cells: weigh them up
    freeze_backbone: bool = False
    bf16: bool = False
    workers: int = 1
    augmentation: Augmentation = field(default_factory=Augmentation)
    crop: int = 0  # train on random crop² windows (0 = whole images)
    crop_epochs: int = 0  # epochs on crops before whole images


@dataclass(frozen=True)
class EpochLog:
    """One epoch: training and validation losses (image BCE) and AUROCs, and timing."""

    epoch: int
    train_loss: float  # the loss optimised (image BCE + region loss + L1)
    train_image_loss: float
    train_auroc: float  # on the epoch's augmented batches, in training mode
    val_loss: float
    val_auroc: float
    learning_rate: float
    seconds: float
    best: bool


@dataclass(frozen=True)
class LoopResult:
    """The per-epoch log, the best epoch (its weights are in the network) and why it stopped."""

    epochs: list[EpochLog]
    best_epoch: int
    best_val_auroc: float
    stopped_because: str


class AugmentedSet(Dataset[Sample]):
    """Training samples drawn from a ClassifierSet's arrays, augmented on the fly."""

    def __init__(self, data: ClassifierSet, transform: Compose) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Sample:
        sample = {
            "image": torch.from_numpy(self.data.inputs[index][None].astype(np.float32)),
            "cover": torch.from_numpy(self.data.cover[index][None].astype(np.float32))
            / COVER_SCALE,
        }
        out: Sample = self.transform(sample)
        out["label"] = torch.tensor([float(self.data.labels[index])])
        return out


def region_targets(cover: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-cell targets (1 = lesion in the cell) and weights (0 = ambiguous sliver)."""
    share = F.avg_pool2d(cover, STRIDE)
    targets = (share > 0).float()
    weights = ((share == 0) | (share >= SLIVER)).float()
    return targets, weights


def train_loop(
    network: RegionClassifier,
    train: ClassifierSet,
    validation: ClassifierSet,
    settings: LoopSettings,
    on_epoch: Callable[[EpochLog], None],
) -> LoopResult:
    """Return the training log; the network ends holding its best-validation weights."""
    torch.manual_seed(settings.seed)
    loader = _loader(train, settings, crop=0)
    crop_loader = _loader(train, settings, crop=settings.crop) if settings.crop else loader
    # channels_last halves the convolutions' time on this CPU (measured), same numbers.
    network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if settings.freeze_backbone:
        network.backbone.requires_grad_(False)
    decayed = [p for p in network.parameters() if p.requires_grad and p.ndim > 1]
    others = [p for p in network.parameters() if p.requires_grad and p.ndim <= 1]
    # Weight decay and L1 act on convolution kernels, not on norm scales and biases.
    optimiser = torch.optim.AdamW(
        [
            {"params": decayed, "weight_decay": settings.weight_decay},
            {"params": others, "weight_decay": 0.0},
        ],
        lr=settings.learning_rate,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=settings.epochs, eta_min=settings.learning_rate * 0.02
    )
    log: list[EpochLog] = []
    best = (-1.0, math.inf)  # validation AUROC, then validation loss as the tie-break
    best_epoch = 0
    best_state = copy.deepcopy(network.state_dict())
    stopped = f"reached {settings.epochs} epochs"
    for epoch in range(1, settings.epochs + 1):
        started = time.monotonic()
        learning_rate = float(optimiser.param_groups[0]["lr"])
        cropped = bool(settings.crop) and epoch <= settings.crop_epochs
        losses, image_losses, scores, labels = _train_epoch(
            network, crop_loader if cropped else loader, optimiser, decayed, settings, cropped
        )
        scheduler.step()
        val_logits, _ = predict(network, validation.inputs, settings.batch_size * 2)
        val_labels = validation.labels.astype(np.float32)
        val_loss = float(
            F.binary_cross_entropy_with_logits(
                torch.from_numpy(val_logits[:, 0]), torch.from_numpy(val_labels)
            )
        )
        val_auroc = auroc(val_logits[:, 0], val_labels)
        # AUROC near 1 stops moving; then a better-calibrated (lower-loss) epoch wins.
        improved = val_auroc > best[0] + 1e-4 or (
            val_auroc >= best[0] - 1e-4 and val_loss < best[1]
        )
        if improved:
            best, best_epoch = (max(val_auroc, best[0]), val_loss), epoch
            best_state = copy.deepcopy(network.state_dict())
        seconds = time.monotonic() - started
        entry = EpochLog(
            epoch=epoch,
            train_loss=float(np.mean(losses)) if losses else math.nan,
            train_image_loss=float(np.mean(image_losses)) if image_losses else math.nan,
            train_auroc=auroc(np.asarray(scores), np.asarray(labels)),
            val_loss=val_loss,
            val_auroc=val_auroc,
            learning_rate=learning_rate,
            seconds=seconds,
            best=improved,
        )
        log.append(entry)
        on_epoch(entry)
        if epoch - best_epoch >= settings.patience:
            stopped = f"no better validation AUROC for {settings.patience} epochs"
            break
        if epoch < settings.epochs and time.monotonic() + seconds > settings.deadline:
            stopped = f"time limit (after {epoch} epochs)"
            break
    network.load_state_dict(best_state)
    network.to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    return LoopResult(
        epochs=log, best_epoch=best_epoch, best_val_auroc=best[0], stopped_because=stopped
    )


def _loader(train: ClassifierSet, settings: LoopSettings, crop: int) -> DataLoader:
    transforms = settings.augmentation.transforms(train.size, crop)
    transforms.set_random_state(seed=settings.seed)
    return DataLoader(
        AugmentedSet(train, transforms),
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=len(train) > settings.batch_size,
        num_workers=settings.workers,
        # Augmenting in a worker overlaps it with the forward/backward pass on the other core.
        persistent_workers=settings.workers > 0,
        generator=torch.Generator().manual_seed(settings.seed),
    )


def _train_epoch(
    network: RegionClassifier,
    loader: DataLoader,
    optimiser: torch.optim.Optimizer,
    decayed: list[torch.nn.Parameter],
    settings: LoopSettings,
    cropped: bool,
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Return one epoch's losses, image losses, image logits and labels (per batch/image)."""
    network.train()
    if settings.freeze_backbone:
        network.backbone.eval()  # frozen means its batch-norm statistics stay put too
    losses: list[float] = []
    image_losses: list[float] = []
    scores: list[float] = []
    labels: list[float] = []
    for batch in loader:
        x = batch["image"].contiguous(memory_format=torch.channels_last)
        y = batch["label"]
        if cropped:
            # A crop's label is whether it holds lesion (more than a sliver of one cell).
            targets, weights = region_targets(batch["cover"])
            y = (targets * weights).flatten(1).amax(dim=1, keepdim=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
            out = network(x)
        image_logits = out.image_logits.float()
        image_loss = F.binary_cross_entropy_with_logits(image_logits, y)
        loss = image_loss
        if settings.region_weight > 0:
            targets, weights = region_targets(batch["cover"])
            weights = weights * (1.0 + (settings.region_positive_weight - 1.0) * targets)
            region_loss = F.binary_cross_entropy_with_logits(
                out.region_logits.float(), targets, weight=weights
            )
            loss = loss + settings.region_weight * region_loss
        if settings.l1 > 0:
            loss = loss + settings.l1 * torch.stack([p.abs().sum() for p in decayed]).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        optimiser.step()
        losses.append(float(loss.detach()))
        image_losses.append(float(image_loss.detach()))
        scores.extend(image_logits.detach()[:, 0].tolist())
        labels.extend(y[:, 0].tolist())
    return losses, image_losses, scores, labels
