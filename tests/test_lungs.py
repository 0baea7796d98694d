"""Lung fields: mask post-processing, the segmenter pipeline, the trainer and the shipped bundle."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from service.cli.main import cli
from service.inference.lungs import (
    clean_lung_mask,
    fill_holes,
    keep_largest_components,
    segment_lungs,
    split_lungs,
)
from service.inference.registry import LoadedModel, ModelRegistry
from service.training.bundle import write_bundle
from service.training.lung_card import lung_bundle_info
from service.training.lung_data import (
    default_data_dir,
    dicom_display_pixels,
    load_phantoms,
    load_real,
    read_manifest,
    split_ids,
)
from service.training.lungs import inference_config
from service.training.metrics import bootstrap, dice, hausdorff95
from tests.factories import make_cr

REPO = Path(__file__).resolve().parents[1]


def box(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """A bool mask with the given (top, left, bottom, right) boxes set."""
    mask = np.zeros(shape, dtype=bool)
    for top, left, bottom, right in boxes:
        mask[top:bottom, left:right] = True
    return mask


def ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inside: np.ndarray = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    return inside


def chest(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A bright 'body' with two dark elliptic 'lungs' (jittered), and the lung mask."""
    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    for side in (0.3, 0.7):
        cy = h * rng.uniform(0.45, 0.55)
        cx = w * (side + rng.uniform(-0.03, 0.03))
        mask |= ellipse(shape, cy, cx, h * rng.uniform(0.25, 0.32), w * rng.uniform(0.12, 0.16))
    image = np.where(mask, 60.0, 190.0) + rng.normal(0, 8, shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


# --- post-processing: tiny masks with known answers ---------------------------------------


def test_keeps_the_two_largest_components() -> None:
    mask = box((20, 30), (1, 1, 11, 11), (1, 15, 9, 23), (15, 25, 17, 27))
    assert np.array_equal(
        keep_largest_components(mask, 2), box((20, 30), (1, 1, 11, 11), (1, 15, 9, 23))
    )


def test_drops_a_speck_far_smaller_than_the_lung() -> None:
    mask = box((40, 40), (0, 0, 30, 30), (35, 35, 36, 36))
    assert np.array_equal(keep_largest_components(mask, 2), box((40, 40), (0, 0, 30, 30)))


def test_empty_mask_stays_empty() -> None:
    assert not clean_lung_mask(np.zeros((8, 8), dtype=bool)).any()


def test_fills_holes() -> None:
    ring = box((9, 9), (1, 1, 8, 8))
    ring[3:6, 3:6] = False
    assert np.array_equal(fill_holes(ring), box((9, 9), (1, 1, 8, 8)))


def test_two_blobs_split_into_right_lung_on_the_image_left() -> None:
    mask = box((20, 30), (2, 2, 18, 12), (2, 17, 18, 28))
    lungs = split_lungs(mask)
    assert np.array_equal(lungs.right, box((20, 30), (2, 2, 18, 12)))
    assert np.array_equal(lungs.left, box((20, 30), (2, 17, 18, 28)))
    assert np.array_equal(lungs.both, mask)


def test_touching_lungs_are_cut_at_the_narrowest_column() -> None:
    # Two lungs joined by a one-pixel-high bridge at columns 12-17.
    mask = box((20, 30), (2, 2, 18, 12), (2, 18, 18, 28), (16, 12, 17, 18))
    lungs = split_lungs(mask)
    assert lungs.right[:, :12].sum() == mask[:, :12].sum()
    assert lungs.left[:, 18:].sum() == mask[:, 18:].sum()
    assert not (lungs.right & lungs.left).any()
    assert np.array_equal(lungs.both, mask)


def test_a_single_lung_stays_on_its_side() -> None:
    mask = box((20, 30), (2, 17, 18, 28))
    lungs = split_lungs(mask)
    assert not lungs.right.any()
    assert np.array_equal(lungs.left, mask)


# --- the segmenter pipeline, with a network whose answer is known ---------------------------


class DarkIsLung(torch.nn.Module):
    """Calls every darker-than-middle pixel lung: a stand-in network with a known answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -10.0 * x


@pytest.fixture
def dark_is_lung(tmp_path: Path) -> LoadedModel:
    config = inference_config(32)
    config["network_def"] = {"_target_": "tests.test_lungs.DarkIsLung"}
    return write_bundle(
        tmp_path / "dark-is-lung",
        network=DarkIsLung(),
        inference_config=config,
        info=lung_bundle_info("0.0.1", 32, with_phantoms=False),
        model_card="# stand-in\n",
    )


def test_segment_lungs_returns_a_clean_mask_of_the_image_size(dark_is_lung: LoadedModel) -> None:
    shape = (90, 120)
    truth = ellipse(shape, 45, 35, 30, 20) | ellipse(shape, 45, 85, 30, 20)
    image = np.where(truth, 30.0, 200.0)
    image[40:46, 32:38] = 200.0  # a bright spot inside a lung: a hole to fill
    image[80:84, 4:8] = 30.0  # a dark speck outside the lungs: a third component to drop

    mask = segment_lungs(dark_is_lung, image)

    assert mask.shape == shape and mask.dtype == bool
    assert mask[40:46, 32:38].all()
    assert not mask[78:86, 2:10].any()
    assert dice(mask, truth) > 0.95
    lungs = split_lungs(mask)
    assert lungs.right[:, :60].sum() > 0.9 * truth[:, :60].sum()
    assert not lungs.right[:, 60:].any() and not lungs.left[:, :60].any()


# --- metrics -------------------------------------------------------------------------------


def test_dice_and_hausdorff_on_known_masks() -> None:
    a = box((40, 40), (10, 10, 20, 20))
    b = box((40, 40), (10, 13, 20, 23))
    assert dice(a, a) == 1.0
    assert dice(a, b) == pytest.approx(2 * 70 / 200)
    assert hausdorff95(a, b) == pytest.approx(3.0)
    assert hausdorff95(a, np.zeros_like(a)) == pytest.approx(np.hypot(40, 40))


def test_bootstrap_interval_brackets_the_mean() -> None:
    estimate = bootstrap([0.8, 0.9, 0.95, 0.85, 0.9], seed=1)
    assert estimate.mean == pytest.approx(0.88)
    assert estimate.low < estimate.mean < estimate.high
    assert bootstrap([0.9, 0.9]).low == bootstrap([0.9, 0.9]).high == pytest.approx(0.9)


# --- data ----------------------------------------------------------------------------------


def test_the_split_is_fixed_every_fifth_id_held_out() -> None:
    ids = [f"{i:04d}" for i in range(97)]
    split = split_ids(list(reversed(ids)))
    assert split.test == tuple(ids[::5]) and len(split.test) == 20
    assert len(split.validation) == 11 and len(split.train) == 66
    assert not set(split.train) & (set(split.test) | set(split.validation))


def write_real_set(folder: Path, count: int, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    with (folder / "manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "mask", "view", "licence", "doi", "url"])
        for i in range(count):
            image, mask = chest((size, size + 8 * (i % 3)), rng)
            Image.fromarray(image).save(folder / f"images/{i:04d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"masks/{i:04d}.png")
            writer.writerow(
                [
                    f"{i:04d}",
                    f"images/{i:04d}.png",
                    f"masks/{i:04d}.png",
                    "PA",
                    "CC BY 4.0",
                    "",
                    f"https://example.org/{i}",
                ]
            )


def write_phantom_set(folder: Path, count: int, size: int = 72) -> None:
    """`vigil phantom` output: MONOCHROME1 12-bit CR (lungs stored high), 1/2 lung labels.
    The third phantom is drawn over real image 0000 (a held-out test image)."""
    rng = np.random.default_rng(1)
    (folder / "dicom").mkdir(parents=True)
    (folder / "masks/lungs").mkdir(parents=True)
    with (folder / "manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "dicom_path", "label", "background"])
        for i in range(count):
            image, mask = chest((size, size), rng)
            ds = make_cr(rows=size, columns=size, photometric="MONOCHROME1")
            ds.PixelData = (4095 - image.astype(np.uint16) * 16).astype(np.uint16).tobytes()
            ds.save_as(folder / f"dicom/ph{i}.dcm", enforce_file_format=True)
            labels = np.where(mask, 1, 0).astype(np.uint8)
            labels[:, size // 2 :] *= 2
            Image.fromarray(labels).save(folder / f"masks/lungs/ph{i}.png")
            background = "0000.png" if i == 2 else "phantom"
            writer.writerow([f"ph{i}", f"dicom/ph{i}.dcm", "0", background])


def test_phantoms_load_display_oriented_with_both_lungs(tmp_path: Path) -> None:
    write_phantom_set(tmp_path / "ph", 2)
    phantoms = list(load_phantoms(tmp_path / "ph"))
    assert [p.id for p in phantoms] == ["ph0", "ph1"]
    for p in phantoms:
        assert p.mask.shape == p.image.shape == (72, 72)
        assert p.mask[:, 36:].any() and p.mask[:, :36].any()  # label 2 counts as lung too
        # MONOCHROME1 stores lungs high; display orientation makes them the dark part again.
        assert p.image[p.mask].mean() < p.image[~p.mask].mean()
    monochrome1 = dicom_display_pixels(tmp_path / "ph/dicom/ph0.dcm")
    assert np.array_equal(monochrome1, phantoms[0].image)


def test_phantoms_drawn_over_held_out_images_are_left_out(tmp_path: Path) -> None:
    write_phantom_set(tmp_path / "ph", 3)
    kept = [p.id for p in load_phantoms(tmp_path / "ph", skip_backgrounds={"0000", "0005"})]
    assert kept == ["ph0", "ph1"]


# --- the trainer, end to end on a tiny synthetic set --------------------------------------


def test_train_lungs_writes_a_loadable_bundle(tmp_path: Path) -> None:
    write_real_set(tmp_path / "real", 8)
    write_phantom_set(tmp_path / "ph", 3)
    out = tmp_path / "models/vigil-lungs"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "lungs",
            "--data",
            str(tmp_path / "real"),
            "--phantoms",
            str(tmp_path / "ph"),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--size",
            "64",
            "--max-minutes",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "epoch   1/2" in result.output and "epoch   2/2" in result.output
    assert "held-out real test (2 images): Dice" in result.output

    model = ModelRegistry.scan(out.parent).get("vigil-lungs")
    assert model.input_size == (64, 64) and model.version == "1.0.0"
    card = (out / "docs/README.md").read_text()
    assert "| Dice |" in card and "Test ids: 0000, 0005." in card
    assert "2 synthetic phantom radiographs" in card
    assert "left out: 1 drawn over held-out real images" in card
    assert "--phantoms" in card  # the command that made it
    assert (out / "docs/training_curves.png").read_bytes().startswith(b"\x89PNG")
    real = next(load_real(tmp_path / "real", ["0000"]))
    assert segment_lungs(model, real.image).shape == real.image.shape


def test_train_lungs_names_a_missing_data_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "lungs", "--data", str(tmp_path / "none")])
    assert result.exit_code != 0
    assert "no manifest.csv" in result.output


# --- the shipped bundle ----------------------------------------------------------------------


def test_shipped_bundle_segments_held_out_real_images() -> None:
    model = ModelRegistry.scan(REPO / "models").get("vigil-lungs")
    assert (REPO / "models/vigil-lungs/models/model.pt").stat().st_size < 20 * 1024 * 1024
    data = default_data_dir()
    if not (data / "manifest.csv").is_file():
        pytest.skip(f"real lung data not found at {data}")
    ids = split_ids([row["id"] for row in read_manifest(data)]).test[:5]
    scores = [dice(segment_lungs(model, img.image), img.mask) for img in load_real(data, ids)]
    assert np.mean(scores) >= 0.85, scores
