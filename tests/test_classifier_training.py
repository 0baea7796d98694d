"""The region classifier's trainer: metrics with known answers, data decoding, a tiny training
run that learns, the written bundle (calibrated through the registry), and CLI errors."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from service.cli.main import cli
from service.inference.geometry import InputGeometry
from service.inference.region_classifier import RegionClassifier, lse_pool
from service.inference.registry import ModelRegistry
from service.training.classifier import (
    ClassifierTrainingConfig,
    ClassifierTrainingResult,
    operating_threshold,
    train_classifier,
)
from service.training.classifier_data import (
    display_pixels,
    load_set,
    read_manifest,
    split_by_id,
)
from service.training.classifier_eval import (
    CNR_BINS,
    auroc,
    auroc_estimate,
    binned_auroc,
    expected_calibration_error,
    fit_temperature,
    nll,
    pointing_hit,
    pointing_tolerance_px,
    probability_map,
    sigmoid,
    youden_threshold,
)
from service.training.classifier_loop import region_targets
from service.training.classifier_recipes import phantom_command
from service.training.phantom.generator import PhantomOptions, generate
from service.training.phantom.lesions import LesionMix

# --- metrics with known answers ----------------------------------------------------------------


def test_auroc_of_perfect_inverted_and_tied_scorers() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    truth = labels.astype(float)
    assert auroc(truth, labels) == 1.0
    assert auroc(-truth, labels) == 0.0
    assert auroc(np.zeros(6), labels) == 0.5  # ties count half
    # One inversion among 3×3 pairs.
    assert auroc(np.array([0.1, 0.2, 0.7, 0.9, 0.8, 0.95]), labels) == pytest.approx(8 / 9)
    assert math.isnan(auroc(np.ones(3), np.ones(3)))


def test_auroc_confidence_interval_brackets_the_estimate_and_narrows_with_data() -> None:
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, n)
        return labels + rng.normal(0, 1.0, n), labels

    small = auroc_estimate(*sample(60))
    large = auroc_estimate(*sample(2000))
    assert small.low <= small.mean <= small.high
    assert large.low <= large.mean <= large.high
    assert large.high - large.low < (small.high - small.low) / 2
    assert 0.68 < large.mean < 0.80  # d' = 1 gives AUROC Φ(1/√2) ≈ 0.76


def test_ece_is_zero_when_calibrated_and_large_when_overconfident() -> None:
    # 10 images at p = 0.2 with 2 positives, 10 at p = 0.8 with 8: perfectly calibrated.
    p = np.r_[np.full(10, 0.2), np.full(10, 0.8)]
    y = np.r_[np.ones(2), np.zeros(8), np.ones(8), np.zeros(2)]
    assert expected_calibration_error(p, y) == pytest.approx(0.0)
    # Saying 0.99 / 0.01 for the same images: off by 0.19 everywhere.
    sure = np.r_[np.full(10, 0.01), np.full(10, 0.99)]
    assert expected_calibration_error(sure, y) == pytest.approx(0.19)


def test_temperature_scaling_undoes_overconfidence() -> None:
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2.0, 4000)
    labels = (rng.random(4000) < sigmoid(true_logits)).astype(float)
    overconfident = 3.0 * true_logits
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert nll(overconfident, labels, temperature) < nll(overconfident, labels) - 0.1
    before = expected_calibration_error(sigmoid(overconfident), labels)
    after = expected_calibration_error(sigmoid(overconfident / temperature), labels)
    assert after < before / 2


def test_youden_threshold_separates_separable_scores() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    threshold = youden_threshold(p, y)
    assert 0.3 < threshold <= 0.6
    assert ((p >= threshold) == (y == 1)).all()


def test_binned_auroc_scores_each_bin_against_all_negatives() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.15, 0.9, 0.8])
    labels = np.array([0, 0, 0, 1, 1, 1])
    cnr = np.array([np.nan, np.nan, np.nan, 0.7, 4.0, 2.5])  # a faint, a clear, a middling
    bins = {b.name: b for b in binned_auroc(scores, labels, cnr, CNR_BINS)}
    assert bins["CNR < 1"].positives == 1 and bins["CNR < 1"].negatives == 3
    assert bins["CNR < 1"].auroc is not None and bins["CNR < 1"].auroc.mean == pytest.approx(1 / 3)
    assert bins["CNR ≥ 3.5"].auroc is not None and bins["CNR ≥ 3.5"].auroc.mean == 1.0
    assert bins["CNR 1–2"].positives == 0 and bins["CNR 1–2"].auroc is None


def test_pointing_game_hits_within_half_a_cell_diagonal() -> None:
    geometry = InputGeometry.fit((512, 512), (256, 256))
    tolerance = pointing_tolerance_px(geometry)
    assert tolerance == pytest.approx(16 * math.sqrt(2))  # cells are 32 px at 512
    mask = np.zeros((512, 512), dtype=bool)
    mask[300:310, 100:110] = True
    near = np.zeros((512, 512))
    near[300 + 15, 110 + 15] = 1.0  # 21 px diagonally from the lesion's corner
    far = np.zeros((512, 512))
    far[100, 400] = 1.0
    assert pointing_hit(near, mask, tolerance)
    assert not pointing_hit(far, mask, tolerance)
    assert not pointing_hit(near, np.zeros_like(mask), tolerance)


def test_a_cell_on_the_lesion_always_hits() -> None:
    # Any lesion pixel inside the map's top cell is within the tolerance of the map's peak.
    geometry = InputGeometry.fit((512, 384), (256, 256))
    cells = np.full((16, 16), -5.0)
    cells[9, 3] = 4.0
    prob_map = probability_map(cells, geometry)
    assert prob_map.shape == (512, 384)
    # Cell (9, 3) covers rows 288-319 and columns 72-95 of the original image.
    for r, c in ((288, 72), (288, 95), (319, 72), (319, 95)):  # its corner pixels
        mask = np.zeros((512, 384), dtype=bool)
        mask[r, c] = True
        assert pointing_hit(prob_map, mask, pointing_tolerance_px(geometry))


# --- network: the temperature --------------------------------------------------------------------


def test_temperature_divides_image_and_region_logits_exactly() -> None:
    torch.manual_seed(0)
    plain = RegionClassifier(dropout=0.0).eval()
    cooled = RegionClassifier(dropout=0.0, temperature=2.5).eval()
    cooled.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        a, b = plain(x), cooled(x)
    assert torch.allclose(b.image_logits, a.image_logits / 2.5, atol=1e-6)
    assert torch.allclose(b.region_logits, a.region_logits / 2.5, atol=1e-6)
    # Equivalently LSE pooling of the scaled map with sharpness r·T.
    assert torch.allclose(b.image_logits, lse_pool(b.region_logits, 4.0 * 2.5), atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        RegionClassifier(temperature=0.0)


# --- data ----------------------------------------------------------------------------------------


EASY = LesionMix(cnr_range=(15.0, 25.0), diameter_range_mm=(30.0, 45.0), opacity_fraction=0.0)


@pytest.fixture(scope="module")
def easy_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phantoms at 128² with large, bright nodules: learnable in a few epochs."""
    folder = tmp_path_factory.mktemp("easy") / "phantoms"
    generate(PhantomOptions(n=160, seed=5, size=128, mix=EASY), folder, workers=1)
    return folder


def test_decoding_matches_the_service_and_the_cache_is_reused(easy_phantoms: Path) -> None:
    from service.analysis.pipeline import decode
    from service.analysis.tasks import Job

    row = read_manifest(easy_phantoms)[0]
    path = easy_phantoms / row["dicom_path"]
    # decode() reads only the image path; the job's other fields do not matter here.
    job = Job(**{**{f.name: None for f in fields(Job)}, "image_path": path})  # type: ignore[arg-type]
    np.testing.assert_array_equal(display_pixels(path), decode(job).display)

    messages: list[str] = []
    first = load_set(easy_phantoms, 64, on_progress=messages.append)
    second = load_set(easy_phantoms, 64, on_progress=messages.append)
    assert "decoding" in messages[0] and "from the cache" in messages[1]
    np.testing.assert_array_equal(first.inputs, second.inputs)
    assert (
        first.inputs.shape == (160, 64, 64)
        and -1.0 <= first.inputs.min() < 0 < first.inputs.max() <= 1.0
    )
    # Lesion coverage only on positives, and every positive has some.
    has_cover = first.cover.reshape(160, -1).max(axis=1) > 0
    np.testing.assert_array_equal(has_cover, first.labels == 1)


def test_split_by_id_is_stable_disjoint_and_about_70_15_15() -> None:
    ids = [f"{i:06d}" for i in range(2000)]
    split = split_by_id(ids)
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert sum(len(p) for p in parts) == 2000 and not (parts[0] & parts[1] | parts[1] & parts[2])
    assert 0.66 < len(split.train) / 2000 < 0.74 and 0.12 < len(split.test) / 2000 < 0.18
    # Adding images never moves the ones already there.
    again = split_by_id(ids[:1000])
    assert set(again.test) == {i for i in split.test if i < 1000}


def test_region_targets_mark_lesion_cells_and_ignore_slivers() -> None:
    cover = torch.zeros(1, 1, 32, 32)
    cover[0, 0, 2:10, 2:10] = 1.0  # well inside cell (0, 0)
    cover[0, 0, 20, 31] = 0.5  # a sliver in cell (1, 1): 0.2 % of it
    targets, weights = region_targets(cover)
    assert targets[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert weights[0, 0].tolist() == [[1.0, 1.0], [1.0, 0.0]]


def test_phantom_command_names_the_non_default_options() -> None:
    options = PhantomOptions(n=50, seed=3, size=256, sites=12)
    assert phantom_command(Path("x"), options) == (
        "vigil phantom --out x --n 50 --seed 3 --size 256 --sites 12"
    )


# --- a tiny training run -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(
    easy_phantoms: Path, tmp_path_factory: pytest.TempPathFactory
) -> ClassifierTrainingResult:
    out = tmp_path_factory.mktemp("models") / "vigil-tiny"
    config = ClassifierTrainingConfig(
        data_dir=easy_phantoms,
        out=out,
        size=128,
        epochs=6,
        batch_size=16,
        learning_rate=2e-3,
        crop=64,
        patience=6,
        workers=0,
        threads=2,
        seed=0,
        version="0.0.1",
    )
    return train_classifier(config)


def test_a_tiny_run_learns(tiny_run: ClassifierTrainingResult) -> None:
    epochs = tiny_run.epochs
    assert epochs[-1].train_loss < epochs[0].train_loss
    assert max(e.val_auroc for e in epochs) > 0.7
    assert tiny_run.evaluation.auroc.mean > 0.7


def test_the_bundle_loads_and_gives_the_calibrated_probabilities(
    tiny_run: ClassifierTrainingResult, easy_phantoms: Path
) -> None:
    out = tiny_run.model.path
    registry = ModelRegistry.scan(out.parent)
    model = registry.get(out.name)
    assert model.disclaimer == "Demo model, synthetic training data, not for clinical use."
    # The service's path: display image → bundle preprocessing → network.
    row = read_manifest(easy_phantoms)[0]
    x = model.preprocess(display_pixels(easy_phantoms / row["dicom_path"]).astype(np.float32))
    network = model.network
    assert isinstance(network, RegionClassifier)
    temperature = network.temperature
    assert temperature == pytest.approx(tiny_run.temperature)
    with torch.no_grad():
        calibrated = network(x[None])
        network.temperature = 1.0
        raw = network(x[None])
        network.temperature = temperature
    p = torch.sigmoid(calibrated.image_logits)
    assert torch.allclose(p, torch.sigmoid(raw.image_logits / temperature), atol=1e-6)
    assert operating_threshold(model) == pytest.approx(tiny_run.threshold)
    card = (out / "docs" / "README.md").read_text(encoding="utf-8")
    assert "Demo model, synthetic training data, not for clinical use." in card
    assert "AUROC" in card and "pointing game" in card and "temperature" in card.lower()
    with Image.open(out / "docs" / "training_curves.png") as curves:
        assert curves.size[0] > 400
    numbers = json.loads((out / "docs" / "evaluation.json").read_text(encoding="utf-8"))
    assert numbers["test"]["auroc"]["mean"] == pytest.approx(tiny_run.evaluation.auroc.mean)


def test_transfer_learning_keeps_the_frozen_backbone_and_trains_a_new_head(
    tiny_run: ClassifierTrainingResult, easy_phantoms: Path, tmp_path: Path
) -> None:
    config = ClassifierTrainingConfig(
        data_dir=easy_phantoms,
        out=tmp_path / "vigil-transfer",
        size=128,
        epochs=1,
        batch_size=16,
        crop=0,
        patience=1,
        workers=0,
        threads=2,
        seed=1,
        version="0.0.1",
        init_from=tiny_run.model.path,
        freeze_backbone=True,
    )
    result = train_classifier(config)
    source = tiny_run.model.network.state_dict()
    target = result.model.network.state_dict()
    backbone = [key for key in source if key.startswith("backbone.")]
    assert backbone and all(torch.equal(source[key], target[key]) for key in backbone)
    assert not torch.equal(source["head.weight"], target["head.weight"])


# --- the command line ----------------------------------------------------------------------------


def test_cli_names_a_missing_data_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["train", "classifier", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 2
    assert "--data" in result.output and "does not exist" in result.output


def test_cli_refuses_bad_values_with_the_option_named(tmp_path: Path) -> None:
    def run(*extra: str) -> str:
        result = CliRunner().invoke(
            cli,
            ["train", "classifier", "--data", str(tmp_path), "--out", str(tmp_path / "m"), *extra],
        )
        assert result.exit_code == 2, result.output
        return result.output

    assert "--size" in run("--size", "100") and "multiple of 16" in run("--size", "100")
    assert "--lr" in run("--lr", "0")
    assert "--dropout" in run("--dropout", "1.5")
    assert "--crop" in run("--crop", "40")
    assert "--init-from" in run("--freeze-backbone")


def test_cli_says_when_a_folder_is_not_a_phantom_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["train", "classifier", "--data", str(tmp_path), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "manifest.csv" in result.output and "vigil phantom" in result.output


def test_cli_needs_out_or_name_and_they_must_agree(tmp_path: Path) -> None:
    base = ["train", "classifier", "--data", str(tmp_path)]
    assert "--out" in CliRunner().invoke(cli, base).output
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "a"), "--name", "b"])
    assert result.exit_code == 2 and "disagrees" in result.output
