"""The region classifier: one forward pass gives a per-region probability map and an image
probability (DESIGN.md, "Models").

backbone (MONAI residual units, stride 16) → dropout → 1×1 conv → per-cell logits → log-sum-exp
pooling. Each cell's sigmoid is that region's probability; the pooled logit's sigmoid is the
image's. LSE pooling sits between max (one cell decides) and mean (every cell votes): a finding
in a few cells raises the image score without the rest of the lungs drowning it out.

``temperature`` T (fitted on validation data by training, 1 = none) divides both outputs, so the
bundled probabilities are calibrated: region logits = s / T and image logits = LSE_r(s) / T,
which is also LSE pooling of the scaled region logits with sharpness r·T.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F
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

    def __init__(self, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError("widths needs five entries: stem, three stages, features")
        layers: list[nn.Module] = [
            Convolution(2, in_channels, widths[0], strides=2, kernel_size=5, norm="BATCH")
        ]
        # No dropout inside the units: MONAI's per-unit dropout on the full-resolution maps
        # doubled the training time on the CPU; the head's dropout regularises instead.
        for cin, cout in itertools.pairwise(widths[:4]):
            layers.append(ResidualUnit(2, cin, cout, strides=2, norm="BATCH", act="RELU"))
        self.stem_and_stages = nn.Sequential(*layers)
        self.features = ResidualUnit(2, widths[3], widths[4], strides=1, norm="BATCH", act="RELU")
        self.out_channels = widths[4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.stem_and_stages(x))  # type: ignore[no-any-return]


class LocalContrast(nn.Module):
    """Adds to each channel its local contrast: ``gain`` × (x − its 9×9 local mean).

    Fixed, not learnt: subtle findings are small bumps on a busy background, and handing the
    network the high-pass image made it learn them markedly faster on phantoms (measured).
    """

    WINDOW = 9

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = F.avg_pool2d(
            x, self.WINDOW, stride=1, padding=self.WINDOW // 2, count_include_pad=False
        )
        return torch.cat([x, self.gain * (x - local)], dim=1)


class RegionClassifier(nn.Module):
    """Image → (image logits, per-region logits) in one pass.

    ``local_contrast`` > 0 feeds the backbone each input channel and its local contrast
    (``LocalContrast``) scaled by that gain; 0 feeds the input as it is.
    """

    def __init__(
        self,
        labels: int = 1,
        in_channels: int = 1,
        widths: tuple[int, ...] = (24, 32, 64, 96, 128),
        dropout: float = 0.1,
        sharpness: float = 4.0,
        temperature: float = 1.0,
        local_contrast: float = 0.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.contrast: nn.Module = (
            LocalContrast(local_contrast) if local_contrast > 0 else nn.Identity()
        )
        self.backbone = Backbone(in_channels * (2 if local_contrast > 0 else 1), widths)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv2d(self.backbone.out_channels, labels, kernel_size=1)
        self.sharpness = sharpness
        self.temperature = temperature

    @property
    def stride(self) -> int:
        return 16

    def forward(self, x: torch.Tensor) -> RegionOutput:
        scores = self.head(self.dropout(self.backbone(self.contrast(x))))
        if self.temperature == 1.0:
            return RegionOutput(lse_pool(scores, self.sharpness), scores)
        return RegionOutput(
            lse_pool(scores, self.sharpness) / self.temperature, scores / self.temperature
        )


class ImageLogits(nn.Module):
    """The image logits alone, for tools that expect a plain classifier (Grad-CAM)."""

    def __init__(self, model: RegionClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x).image_logits
        return logits
