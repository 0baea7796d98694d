"""Explanation maps: they peak on the evidence, are not inverted, and leave the model alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from monai.visualize import GradCAM, GradCAMpp
from torch import nn

from service.inference.explain import ExplainMethod, explain, gradcam, gradcampp, occlusion
from service.inference.region_classifier import EXPLAIN_LAYER, ImageLogits, RegionClassifier

ROWS, COLS = 32, 24  # not square, so a transposed map would land somewhere else
SPOT_0 = (5, 6)  # in the top-left quadrant: evidence for label 0
SPOT_1 = (25, 17)  # in the bottom-right quadrant: evidence for label 1


class QuadrantFeatures(nn.Module):
    """Channel k = brightness pooled over 4 × 4 cells, kept only in quadrant k (TL, BR)."""

    def __init__(self) -> None:
        super().__init__()
        masks = torch.zeros(2, ROWS // 4, COLS // 4)
        masks[0, : ROWS // 8, : COLS // 8] = 1.0
        masks[1, ROWS // 8 :, COLS // 8 :] = 1.0
        self.masks = masks  # fixed, not learnt; a plain attribute is enough on the CPU
        self.pool = nn.AvgPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pool(x)) * self.masks


class QuadrantNet(nn.Module):
    """Label k's logit is the mean of feature channel k: only quadrant k's brightness counts."""

    def __init__(self) -> None:
        super().__init__()
        self.features = QuadrantFeatures()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.features(x)
        return 10.0 * features.mean(dim=(2, 3)) - 1.0


def two_spots() -> torch.Tensor:
    x = torch.zeros(1, ROWS, COLS)
    for row, col in (SPOT_0, SPOT_1):
        x[0, row - 1 : row + 2, col - 1 : col + 2] = 1.0
    return x


def peak(values: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(col)


def near(point: tuple[int, int], target: tuple[int, int], tolerance: int) -> bool:
    return abs(point[0] - target[0]) <= tolerance and abs(point[1] - target[1]) <= tolerance


@pytest.mark.parametrize("method", [gradcam, gradcampp])
def test_cam_peaks_on_the_labels_own_evidence_and_is_not_inverted(method) -> None:
    net = QuadrantNet()
    x = two_spots()
    for label, spot, other in ((0, SPOT_0, SPOT_1), (1, SPOT_1, SPOT_0)):
        cam = method(net, x, layer="features", label_index=label)
        assert cam.shape == (ROWS, COLS) and cam.dtype == np.float32
        # The 4 × 4 cells blur the spot by up to a cell; a flip or transpose would miss by far.
        assert near(peak(cam), spot, tolerance=4)
        # The other label's evidence gets nothing, and the background less than the spot:
        # MONAI's default postprocessing would have made the spot the minimum.
        assert cam[other] == 0.0
        assert cam[spot] > 10 * np.median(cam) + 1e-6


def test_gradcam_of_the_region_classifier_has_the_inputs_size_and_is_non_negative() -> None:
    torch.manual_seed(0)
    model = RegionClassifier(labels=2)
    cam = gradcam(model, torch.randn(1, 96, 64), layer=EXPLAIN_LAYER, label_index=1)
    assert cam.shape == (96, 64) and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0.0


def test_gradcam_batches_each_image_on_its_own() -> None:
    torch.manual_seed(1)
    model = RegionClassifier()
    batch = torch.randn(3, 1, 64, 64)
    together = gradcam(model, batch, layer=EXPLAIN_LAYER)
    assert together.shape == (3, 64, 64)
    alone = gradcam(model, batch[1], layer=EXPLAIN_LAYER)
    np.testing.assert_allclose(together[1], alone, rtol=1e-4, atol=1e-7)


def test_explaining_leaves_the_model_as_it_was() -> None:
    model = RegionClassifier().train()
    gradcampp(model, torch.randn(1, 1, 64, 64), layer=EXPLAIN_LAYER)
    assert model.training
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_maps_equal_monais_with_identity_postprocessing() -> None:
    torch.manual_seed(3)
    model = RegionClassifier().eval()
    x = torch.randn(1, 1, 64, 80)
    ours = gradcam(model, x, layer=EXPLAIN_LAYER)
    ours_pp = gradcampp(model, x, layer=EXPLAIN_LAYER)
    assert ours.max() > 0  # a blank map would agree with anything
    # MONAI leaves hooks on the module it wraps, so it gets a copy.
    wrapped = ImageLogits(copy.deepcopy(model))
    layer = f"model.{EXPLAIN_LAYER}"
    monai_cam = GradCAM(wrapped, target_layers=layer, postprocessing=lambda m: m)
    theirs = monai_cam(x, class_idx=0)[0, 0].detach().numpy()
    np.testing.assert_allclose(ours[0], theirs, rtol=1e-4, atol=1e-6 * theirs.max())
    monai_pp = GradCAMpp(wrapped, target_layers=layer, postprocessing=lambda m: m)
    theirs_pp = monai_pp(x, class_idx=0)[0, 0].detach().numpy()
    with torch.no_grad():
        score = model(x).image_logits[0, 0].exp().item()
    # Vigil leaves out the paper's exp(score) factor (see gradcampp's docstring).
    np.testing.assert_allclose(
        ours_pp[0] * score, theirs_pp, rtol=1e-3, atol=1e-5 * theirs_pp.max()
    )


def test_bad_layer_or_label_is_a_clear_error() -> None:
    model = RegionClassifier()
    x = torch.randn(1, 1, 32, 32)
    with pytest.raises(ValueError, match="not a module"):
        gradcam(model, x, layer="backbone.nope")
    with pytest.raises(ValueError, match="label_index 1"):
        gradcam(model, x, layer=EXPLAIN_LAYER, label_index=1)
    with pytest.raises(ValueError, match="label_index 2"):
        occlusion(model, x, label_index=2)


class SpotDetector(nn.Module):
    """The logit rises with the brightness inside a small window around one pixel."""

    def __init__(self, rows: int, cols: int, spot: tuple[int, int]) -> None:
        super().__init__()
        window = torch.zeros(rows, cols)
        window[spot[0] - 2 : spot[0] + 3, spot[1] - 2 : spot[1] + 3] = 1.0
        self.window = window / window.sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (8.0 * (x[:, 0] * self.window).sum(dim=(1, 2)) - 2.0)[:, None]


def test_occlusion_importance_is_highest_where_the_evidence_is() -> None:
    rows, cols, spot = 48, 64, (12, 44)
    x = torch.zeros(1, rows, cols)
    x[0, spot[0] - 2 : spot[0] + 3, spot[1] - 2 : spot[1] + 3] = 1.0
    importance = occlusion(SpotDetector(rows, cols, spot), x)
    assert importance.shape == (rows, cols) and importance.dtype == np.float32
    assert near(peak(importance), spot, tolerance=3)
    # Higher = more important: hiding the spot drops the probability (MONAI's own map is
    # the occluded probability, lowest at the spot).
    assert importance[spot] > 0.1
    assert abs(importance[40, 5]) < 1e-6  # hiding empty background changes nothing


def test_occlusion_takes_one_image_and_names_the_method() -> None:
    model = RegionClassifier()
    with pytest.raises(ValueError, match="one image"):
        occlusion(model, torch.randn(2, 1, 32, 32))
    out = explain(ExplainMethod.OCCLUSION, model, torch.randn(1, 32, 48), layer=EXPLAIN_LAYER)
    assert out.shape == (32, 48) and np.isfinite(out).all()
