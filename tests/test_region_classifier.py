"""The region classifier: shapes, stride, and log-sum-exp pooling with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from service.inference.region_classifier import RegionClassifier, lse_pool


def test_lse_pool_of_a_constant_map_is_that_constant() -> None:
    logits = torch.full((2, 1, 4, 4), 1.5)
    assert torch.allclose(lse_pool(logits, sharpness=4.0), torch.full((2, 1), 1.5))


def test_lse_pool_lies_between_mean_and_max_and_tends_to_max() -> None:
    logits = torch.zeros(1, 1, 4, 4)
    logits[0, 0, 1, 2] = 8.0
    mean, top = logits.mean().item(), 8.0
    gentle = lse_pool(logits, sharpness=0.01).item()
    sharp = lse_pool(logits, sharpness=50.0).item()
    assert mean < gentle < sharp < top
    assert gentle == pytest.approx(mean, abs=0.05)
    assert sharp == pytest.approx(top - math.log(16) / 50.0, abs=1e-4)


def test_one_pass_gives_image_and_region_logits_at_stride_16() -> None:
    model = RegionClassifier(labels=2).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 256, 192))
    assert out.image_logits.shape == (3, 2)
    assert out.region_logits.shape == (3, 2, 16, 12)
    pooled = lse_pool(out.region_logits, model.sharpness)
    assert torch.allclose(out.image_logits, pooled)


def test_a_region_change_moves_its_own_cell_most() -> None:
    torch.manual_seed(0)
    model = RegionClassifier().eval()
    image = torch.zeros(1, 1, 128, 128)
    with torch.no_grad():
        before = model(image).region_logits
        image[..., 96:112, 16:32] = 5.0  # bottom-left cell block (rows 6-7, columns 1)
        after = model(image).region_logits
    change = (after - before).abs()[0, 0]
    row, col = divmod(int(change.argmax()), change.shape[1])
    assert 5 <= row <= 7 and 0 <= col <= 2
