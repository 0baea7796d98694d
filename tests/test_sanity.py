"""The model sanity check (cascading randomisation): it passes for a model whose Grad-CAM
follows what it learnt and fails for a stand-in whose map ignores its weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from fastapi.testclient import TestClient
from torch import nn

from service.audit.sanity import (
    cascade_blocks,
    randomise,
    sanity_check,
    spearman_abs,
    ssim,
)
from service.auth.roles import Role
from service.cli.main import cli
from service.inference.registry import LoadedModel
from service.settings import Settings, get_settings
from service.training.bundle import write_bundle
from service.training.classifier_bundle import classifier_bundle_info, classifier_inference_config
from tests.conftest import bearer
from tests.factories import make_cr
from tests.model_bundles import TEST_CLASSIFIER, WIDTHS, write_test_classifier
from tests.test_tokens_at_rest import cli_env

SIZE = 64


def blob_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return n 8-bit images (a bright body, noise) and labels: odd ones carry a bright spot,
    the finding the model learns."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    body = 90 * np.exp(-(((rows - 32) / 28) ** 2 + ((cols - 32) / 22) ** 2))
    images = np.empty((n, SIZE, SIZE), dtype=np.uint8)
    labels = np.zeros(n, dtype=np.float32)
    for i in range(n):
        image = 40 + body + rng.normal(0, 12, (SIZE, SIZE))
        if i % 2:
            r, c = rng.integers(12, SIZE - 12, 2)
            image += 110 * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 4.0**2))
            labels[i] = 1
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return images, labels


def inputs_of(model: LoadedModel, images: np.ndarray) -> torch.Tensor:
    return torch.stack([model.preprocess(image.astype(np.float32)) for image in images])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The tiny test classifier, trained for a few seconds to find the bright spot, as a
    bundle."""
    models = tmp_path_factory.mktemp("models")
    model = write_test_classifier(models, size=SIZE)
    images, labels = blob_images(256, seed=0)
    x, y = inputs_of(model, images), torch.from_numpy(labels)
    network = model.network
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(network.parameters(), 3e-3)
    network.train()
    for _step in range(100):
        batch = torch.randint(0, len(y), (32,))
        loss = F.binary_cross_entropy_with_logits(network(x[batch]).image_logits[:, 0], y[batch])
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    network.eval()
    return write_bundle(
        models / TEST_CLASSIFIER,
        network=network,
        inference_config=classifier_inference_config(SIZE, labels=1, widths=WIDTHS, dropout=0.0),
        info=classifier_bundle_info(
            version="0.0.2",
            size=SIZE,
            labels=["lesion"],
            description="Tiny classifier trained on bright spots",
            data_source="synthetic spots",
            intended_use="tests only",
        ),
        model_card="# tiny\n",
    )


class FixedBlob(nn.Module):
    """An "explain layer" whose output is the same blob whatever its weight (only scaled)."""

    blob: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
        self.register_buffer(
            "blob", torch.exp(-((rows - 5) ** 2 + (cols - 9) ** 2) / 8)[None, None]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blob.expand(x.shape[0], -1, -1, -1) * self.scale.abs()


class FixedHeatmap(nn.Module):
    """A classifier stand-in whose Grad-CAM ignores its weights: the head only ever weights
    the fixed blob positively, so every map is the blob."""

    def __init__(self) -> None:
        super().__init__()
        self.features = FixedBlob()
        self.head = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activation = self.features(x)
        logits: torch.Tensor = (F.softplus(self.head.weight) * activation).mean(dim=(2, 3))
        return logits.flatten(1)


def test_similarity_measures_on_known_maps() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((32, 32))
    assert spearman_abs(a, a * 3) == pytest.approx(1.0)
    assert spearman_abs(a, -a) == pytest.approx(1.0)  # absolute values: the sign is ignored
    assert spearman_abs(a, 1 - a) == pytest.approx(-1.0)
    assert spearman_abs(a, np.zeros_like(a)) == 0.0  # a map with nothing left in it
    assert np.isnan(spearman_abs(np.zeros_like(a), a))
    assert ssim(a, a * 2) == pytest.approx(1.0)  # each map is scaled to 0..1 first
    assert ssim(a, rng.random((32, 32))) < 0.2


def test_blocks_go_from_the_head_down_and_randomising_is_reproducible() -> None:
    from service.inference.region_classifier import RegionClassifier

    network = RegionClassifier(widths=WIDTHS)
    assert cascade_blocks(network) == [
        "head", "backbone.features", "backbone.stem_and_stages.3",
        "backbone.stem_and_stages.2", "backbone.stem_and_stages.1", "backbone.stem_and_stages.0",
    ]  # fmt: skip
    assert cascade_blocks(FixedHeatmap()) == ["head", "features"]
    first, second = RegionClassifier(widths=WIDTHS), RegionClassifier(widths=WIDTHS)
    randomise(first.head, seed=3)
    randomise(second.head, seed=3)
    assert torch.equal(first.head.weight, second.head.weight)


def test_a_trained_model_passes(trained: LoadedModel) -> None:
    images, labels = blob_images(16, seed=9)
    x = inputs_of(trained, images[labels == 1])
    before = {k: v.clone() for k, v in trained.network.state_dict().items()}
    result = sanity_check(trained.network, x, layer="backbone.features")
    assert result.passed, result.reason
    # Decided at the end of the cascade, with every block re-initialised.
    blocks = tuple(cascade_blocks(trained.network))
    assert result.decisive_step == len(blocks) and result.steps[-1].randomised == blocks
    assert result.steps[-1].mean_spearman < 0.5 and result.skipped == 0
    # The trained network itself is untouched (a copy was randomised).
    assert all(torch.equal(v, trained.network.state_dict()[k]) for k, v in before.items())


def test_a_model_whose_maps_ignore_its_weights_fails() -> None:
    images, _labels = blob_images(6, seed=1)
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    result = sanity_check(FixedHeatmap(), x, layer="features")
    assert not result.passed
    assert all(step.mean_spearman > 0.99 and step.mean_ssim > 0.99 for step in result.steps)
    assert "stay similar" in result.reason and result.as_json()["passed"] is False


def write_dicoms(folder: Path, images: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        ds = make_cr(rows=SIZE, columns=SIZE)
        ds.PixelData = (image.astype(np.uint16) * 16).tobytes()
        pydicom.dcmwrite(folder / f"{i}.dcm", ds, enforce_file_format=True)
    return folder


def test_cli_checks_a_bundle_and_stores_the_result_by_sha256(
    trained: LoadedModel, settings: Settings, client: TestClient, tokens: dict[Role, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    images, labels = blob_images(12, seed=5)
    folder = write_dicoms(tmp_path / "images", images[labels == 1])
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli,
            ["audit", "sanity", str(trained.path), "--images", str(folder), "--n", "6"],
            env=cli_env(settings),
        )
        missing = CliRunner().invoke(cli, ["audit", "sanity", "nope"], env=cli_env(settings))
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output and "← decisive" in result.output
    assert missing.exit_code != 0 and "no bundle folder nope" in missing.output
    stored = client.get(
        "/api/v1/audit/sanity", params={"sha256": trained.sha256},
        headers=bearer(tokens[Role.AUDITOR]),
    ).json()  # fmt: skip
    [check] = stored
    assert check["passed"] and check["images"] == 6 and check["model_version"] == "0.0.2"
    assert check["result"]["steps"][0]["block"] == "head"
    other = client.get("/api/v1/audit/sanity", params={"sha256": "0" * 64},
                       headers=bearer(tokens[Role.ADMIN]))  # fmt: skip
    assert other.json() == []
