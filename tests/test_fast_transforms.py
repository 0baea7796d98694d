"""The registry's stand-ins for MONAI transforms give the same network input as MONAI's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, ScaleIntensityRangePercentiles

from service.inference.fast_transforms import NumpyPercentileScale, with_fast_transforms
from service.inference.registry import load_bundle

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("vigil-cxr-demo", "vigil-lungs")


def monai_preprocessing(bundle: Path) -> Compose:
    parser = ConfigParser(json.loads((bundle / "configs/inference.json").read_text()))
    built = parser.get_parsed_content("preprocessing")
    assert isinstance(built, Compose)
    return built


def images() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [
        rng.integers(0, 256, (512, 430)).astype(np.float32),  # 8-bit display values, ties
        rng.normal(1000.0, 300.0, (300, 512)).astype(np.float32),  # continuous
        np.full((64, 64), 7.0, dtype=np.float32),  # flat: an empty window
    ]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundles_get_the_stand_in_and_the_same_input(name: str) -> None:
    model = load_bundle(REPO / "models" / name)
    reference = monai_preprocessing(REPO / "models" / name)
    assert any(type(t) is ScaleIntensityRangePercentiles for t in reference.transforms)
    for image in images():
        expected = torch.as_tensor(reference(image.copy()))
        got = model.preprocess(image.copy())
        assert got.shape == expected.shape
        assert torch.allclose(got, expected.as_subclass(torch.Tensor), atol=1e-5), name


def test_only_plain_percentile_scaling_is_swapped() -> None:
    relative = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, relative=True)
    plain = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, clip=True)
    swapped = with_fast_transforms(Compose([relative, plain]))
    assert swapped.transforms[0] is relative
    assert isinstance(swapped.transforms[1], NumpyPercentileScale)
    assert swapped.transforms[1].clip and swapped.transforms[1].lower == 1
