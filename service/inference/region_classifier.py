"""The region classifier: one forward pass gives a per-region probability map and an image
probability (DESIGN.md, "Models").

backbone (MONAI residual units, stride 16) → 1×1 conv → per-cell logits → log-sum-exp pooling.
Each cell's sigmoid is that region's probability; the pooled logit's sigmoid is the image's.
LSE pooling sits between max (one cell decides) and mean (every cell votes): a finding in a
few cells raises the image score without the rest of the lungs drowning it out.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
from monai.networks.blocks.convolutions import Convolution, ResidualUnit
from torch import nn

# The layer Grad-CAM explains by default: the backbone's last block (module path).
EXPLAIN_LAYER = "backbone.features"


class RegionOutput(NamedTuple):
    image_logits: torch.Tensor  # (batch, labels)
    region_logits: torch.Tensor  # (batch, labels, rows, columns)


def lse_pool(region_logits: torch.Tensor, sharpness: float) -> torch.Tensor:
    """Return log-mean-exp pooling of (batch, labels, h, w) logits over space: (batch, labels).

    ``sharpness`` r → ∞ tends to max pooling, r → 0 to mean pooling.
    """
    flat = region_logits.flatten(start_dim=2)
    count = torch.tensor(flat.shape[-1], dtype=flat.dtype, device=flat.device)
    return (torch.logsumexp(sharpness * flat, dim=-1) - torch.log(count)) / sharpness


class Backbone(nn.Module):
    """Residual CNN with an overall stride of 16: a stride-2 stem, three stride-2 stages and
    a stride-1 block whose output Grad-CAM reads."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError("widths needs five entries: stem, three stages, features")
        layers: list[nn.Module] = [
            Convolution(2, in_channels, widths[0], strides=2, kernel_size=5, norm="BATCH")
        ]
        for cin, cout in itertools.pairwise(widths[:4]):
            layers.append(
                ResidualUnit(2, cin, cout, strides=2, norm="BATCH", act="RELU", dropout=dropout)
            )
        self.stem_and_stages = nn.Sequential(*layers)
        self.features = ResidualUnit(
            2, widths[3], widths[4], strides=1, norm="BATCH", act="RELU", dropout=dropout
        )
        self.out_channels = widths[4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.stem_and_stages(x))  # type: ignore[no-any-return]


class RegionClassifier(nn.Module):
    """Image → (image logits, per-region logits) in one pass."""

    def __init__(
        self,
        labels: int = 1,
        in_channels: int = 1,
        widths: tuple[int, ...] = (24, 32, 64, 96, 128),
        dropout: float = 0.1,
        sharpness: float = 4.0,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(in_channels, widths, dropout)
        self.head = nn.Conv2d(self.backbone.out_channels, labels, kernel_size=1)
        self.sharpness = sharpness

    @property
    def stride(self) -> int:
        return 16

    def forward(self, x: torch.Tensor) -> RegionOutput:
        region_logits = self.head(self.backbone(x))
        return RegionOutput(lse_pool(region_logits, self.sharpness), region_logits)


class ImageLogits(nn.Module):
    """The image logits alone, for tools that expect a plain classifier (Grad-CAM)."""

    def __init__(self, model: RegionClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x).image_logits
        return logits
