"""`vigil phantom`: determinism, DICOM headers, and ground truth that matches the pixels."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from PIL import Image

from service.cli.main import cli
from service.training.phantom.backgrounds import load_backgrounds, prepare_background
from service.training.phantom.confounders import ConfounderStrengths
from service.training.phantom.dicom_writer import DX_IMAGE_FOR_PROCESSING, Modality
from service.training.phantom.generator import PhantomOptions, generate
from service.training.phantom.manifest import (
    LESION_COLUMNS,
    MANIFEST_COLUMNS,
    parse_box,
    read_table,
)

CXR_LUNGS = Path(os.environ.get("VIGIL_CXR_LUNGS_DIR", "/work/shared/data/cxr-lungs-ccby"))
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
PROMISED_COLUMNS = [
    "image_id", "dicom_path", "patient_id", "patient_name", "sex", "age", "study_date",
    "study_uid", "series_uid", "sop_uid", "site", "manufacturer", "manufacturer_model_name",
    "institution_name", "station_name", "view_position", "photometric", "rows", "columns",
    "pixel_spacing_mm", "label", "n_lesions", "marker_text", "marker_box", "text_token",
    "text_box", "border_artifact", "border_box", "background", "seed",
]  # fmt: skip
SMALL = PhantomOptions(n=24, seed=7, size=160, prevalence=0.6, monochrome1_fraction=0.3)


def make_set(root: Path, options: PhantomOptions, workers: int = 1) -> Path:
    generate(options, root, workers=workers)
    return root


def display(out: Path, row: dict[str, str]) -> np.ndarray:
    """Pixels in MONOCHROME2 polarity (bright = dense), whatever the file's photometric."""
    ds = pydicom.dcmread(out / row["dicom_path"])
    pixels = ds.pixel_array.astype(np.int32)
    return 4095 - pixels if ds.PhotometricInterpretation == "MONOCHROME1" else pixels


def mask(out: Path, kind: str, image_id: str) -> np.ndarray:
    return np.asarray(Image.open(out / "masks" / kind / f"{image_id}.png"))


def lesions_by_image(out: Path) -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = {}
    for lesion in read_table(out / "lesions.csv"):
        grouped.setdefault(lesion["image_id"], []).append(lesion)
    return grouped


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_set(tmp_path_factory.mktemp("phantom"), SMALL)


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path: Path) -> None:
    options = PhantomOptions(n=6, seed=3, size=96, monochrome1_fraction=0.5)
    one = all_files(make_set(tmp_path / "one", options, workers=1))
    two = all_files(make_set(tmp_path / "two", options, workers=2))
    assert len(one) == 2 + 4 * 6
    assert one == two


def test_a_different_seed_gives_different_images_and_uids(tmp_path: Path) -> None:
    options = PhantomOptions(n=3, seed=3, size=96)
    first = make_set(tmp_path / "a", options)
    second = make_set(tmp_path / "b", replace(options, seed=4))
    for a, b in zip(
        read_table(first / "manifest.csv"), read_table(second / "manifest.csv"), strict=True
    ):
        assert a["sop_uid"] != b["sop_uid"] and a["study_uid"] != b["study_uid"]
        assert not np.array_equal(display(first, a), display(second, b))
        assert not np.array_equal(
            mask(first, "lungs", a["image_id"]), mask(second, "lungs", b["image_id"])
        )


def test_tables_have_the_promised_columns_in_order(small_set: Path) -> None:
    assert list(MANIFEST_COLUMNS) == PROMISED_COLUMNS
    with (small_set / "manifest.csv").open() as handle:
        assert handle.readline().strip().split(",") == PROMISED_COLUMNS
    with (small_set / "lesions.csv").open() as handle:
        assert tuple(handle.readline().strip().split(",")) == LESION_COLUMNS
    rows = read_table(small_set / "manifest.csv")
    assert [r["image_id"] for r in rows] == [f"{i:06d}" for i in range(SMALL.n)]
    assert all(r["dicom_path"] == f"dicom/{r['image_id']}.dcm" for r in rows)


def test_dicom_files_carry_the_promised_attributes(small_set: Path) -> None:
    for row in read_table(small_set / "manifest.csv"):
        ds = pydicom.dcmread(small_set / row["dicom_path"])
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == CR_IMAGE_STORAGE and ds.Modality == "CR"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (
            16,
            12,
            11,
            0,
        )
        assert ds.PhotometricInterpretation == row["photometric"]
        pixels = ds.pixel_array
        assert pixels.shape == (160, 160) and pixels.max() <= 4095
        assert pixels.max() - pixels.min() > 1000  # a real image, not a flat field
        spacing = float(row["pixel_spacing_mm"])
        assert [float(v) for v in ds.PixelSpacing] == [spacing, spacing]
        assert [float(v) for v in ds.ImagerPixelSpacing] == [spacing, spacing]
        assert 0 < float(ds.WindowCenter) < 4095 and float(ds.WindowWidth) > 0
        assert ds.BodyPartExamined == "CHEST" and ds.ViewPosition == row["view_position"]
        assert ds.StudyDescription == f"CHEST {row['view_position']}"
        assert list(ds.PatientOrientation) == ["L", "F"]
        assert (ds.Manufacturer, ds.ManufacturerModelName) == (
            row["manufacturer"],
            row["manufacturer_model_name"],
        )
        assert (ds.InstitutionName, ds.StationName) == (
            row["institution_name"],
            row["station_name"],
        )
        assert (str(ds.PatientName), ds.PatientID, ds.PatientSex) == (
            row["patient_name"],
            row["patient_id"],
            row["sex"],
        )
        assert ds.PatientAge == f"{int(row['age']):03d}Y" and ds.PatientBirthDate
        assert ds.StudyDate == row["study_date"] and ds.StudyTime and ds.AccessionNumber
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
            row["study_uid"],
            row["series_uid"],
            row["sop_uid"],
        )
        burned = bool(row["marker_text"] or row["text_token"])
        assert ds.BurnedInAnnotation == ("YES" if burned else "NO")
        for kind in ("body", "lungs", "lesions"):
            assert mask(small_set, kind, row["image_id"]).shape == pixels.shape
    photometrics = {r["photometric"] for r in read_table(small_set / "manifest.csv")}
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}
    assert len({r["study_uid"] for r in read_table(small_set / "manifest.csv")}) == SMALL.n


def test_monochrome1_files_are_the_same_image_inverted(tmp_path: Path) -> None:
    options = PhantomOptions(n=3, seed=5, size=96, monochrome1_fraction=0.0)
    plain = make_set(tmp_path / "m2", options)
    inverted = make_set(tmp_path / "m1", replace(options, monochrome1_fraction=1.0))
    for a, b in zip(
        read_table(plain / "manifest.csv"), read_table(inverted / "manifest.csv"), strict=True
    ):
        m2 = pydicom.dcmread(plain / a["dicom_path"])
        m1 = pydicom.dcmread(inverted / b["dicom_path"])
        assert (m2.PhotometricInterpretation, m1.PhotometricInterpretation) == (
            "MONOCHROME2",
            "MONOCHROME1",
        )
        assert np.array_equal(m1.pixel_array.astype(int), 4095 - m2.pixel_array.astype(int))
        assert int(m1.WindowCenter) == 4095 - int(m2.WindowCenter)


def test_dx_modality_writes_dx_for_processing(tmp_path: Path) -> None:
    options = PhantomOptions(n=1, seed=1, size=64, modality=Modality.DX, monochrome1_fraction=0)
    out = make_set(tmp_path, options)
    ds = pydicom.dcmread(out / "dicom/000000.dcm")
    assert ds.SOPClassUID == DX_IMAGE_FOR_PROCESSING and ds.Modality == "DX"
    assert ds.PresentationIntentType == "FOR PROCESSING"
    assert ds.PixelIntensityRelationship == "LOG" and ds.ImageLaterality == "U"
    assert ds.PresentationLUTShape == "IDENTITY" and "WindowCenter" not in ds


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("modality", [Modality.CR, Modality.DX])
def test_dciodvfy_finds_no_errors(tmp_path: Path, modality: Modality) -> None:
    options = PhantomOptions(n=2, seed=6, size=64, modality=modality, monochrome1_fraction=0.5)
    out = make_set(tmp_path, replace(options, strengths=ConfounderStrengths(marker=1.0)))
    for path in sorted((out / "dicom").glob("*.dcm")):
        result = subprocess.run(
            ["dciodvfy", str(path)], capture_output=True, text=True, check=False
        )
        report = result.stdout + result.stderr
        assert "Error" not in report, report


def test_lesions_lie_inside_the_stated_lung(small_set: Path) -> None:
    grouped = lesions_by_image(small_set)
    assert grouped, "the set should contain lesions"
    for image_id, lesions in grouped.items():
        lungs = mask(small_set, "lungs", image_id)
        lesion_mask = mask(small_set, "lesions", image_id) > 0
        assert lesion_mask.any() and not (lesion_mask & (lungs == 0)).any()
        for lesion in lesions:
            row, col = int(float(lesion["center_row"])), int(float(lesion["center_col"]))
            assert lungs[row, col] == {"right": 1, "left": 2}[lesion["lung"]]
            assert lesion_mask[row, col]


def test_lesion_mask_is_the_union_of_the_listed_lesions(small_set: Path) -> None:
    yy, xx = np.mgrid[0:160, 0:160]
    for image_id, lesions in lesions_by_image(small_set).items():
        lesion_mask = mask(small_set, "lesions", image_id) > 0
        near_any = np.zeros_like(lesion_mask)
        expected_area = 0.0
        for lesion in lesions:
            radius = float(lesion["diameter_px"]) / 2
            distance = np.hypot(yy - float(lesion["center_row"]), xx - float(lesion["center_col"]))
            # Outlines wobble by up to 36 % (opacities); nothing lies farther out.
            near_any |= distance <= radius * 1.4 + 1
            expected_area += np.pi * max(radius, 0.75) ** 2
        assert not (lesion_mask & ~near_any).any()
        assert 0.5 * expected_area <= lesion_mask.sum() <= 1.6 * expected_area + 4


def test_lesion_sizes_and_contrasts_are_in_range_and_recorded(small_set: Path) -> None:
    rows = read_table(small_set / "lesions.csv")
    spacing = float(read_table(small_set / "manifest.csv")[0]["pixel_spacing_mm"])
    for lesion in rows:
        assert 5.0 - 1e-6 <= float(lesion["diameter_mm"]) <= 40.0 + 1e-6
        assert float(lesion["diameter_px"]) == pytest.approx(
            float(lesion["diameter_mm"]) / spacing, abs=0.02
        )
        assert 0.5 - 1e-6 <= float(lesion["cnr"]) <= 5.0 + 1e-6
        assert float(lesion["contrast"]) > 0
        assert lesion["kind"] in {"nodule", "opacity"} and lesion["lung"] in {"right", "left"}
        assert lesion["overlaps_rib"] in {"0", "1"} and lesion["overlaps_heart"] in {"0", "1"}
    assert {lesion["lung"] for lesion in rows} == {"right", "left"}


def test_a_lesion_brightens_the_image_by_its_recorded_contrast(tmp_path: Path) -> None:
    # Same seed, prevalence 1 vs 0 at one site: only the lesions differ (noise included).
    options = PhantomOptions(n=4, seed=2, size=128, sites=1, prevalence=1.0, monochrome1_fraction=0)
    with_lesions = make_set(tmp_path / "pos", options)
    without = make_set(tmp_path / "neg", replace(options, prevalence=0.0))
    grouped = lesions_by_image(with_lesions)
    for a, b in zip(
        read_table(with_lesions / "manifest.csv"), read_table(without / "manifest.csv"), strict=True
    ):
        difference = display(with_lesions, a) - display(without, b)
        lesions = grouped[a["image_id"]]
        # The peak pixel sits up to half a pixel off a lesion's centre: within 2 % (or 2 units).
        peak = max(float(x["contrast"]) for x in lesions)
        assert difference.max() == pytest.approx(peak, rel=0.02, abs=2)
        changed = difference != 0
        assert not (changed & (mask(with_lesions, "lungs", a["image_id"]) == 0)).any()


def test_label_agrees_with_lesion_count_and_mask(small_set: Path) -> None:
    grouped = lesions_by_image(small_set)
    rows = read_table(small_set / "manifest.csv")
    for row in rows:
        n = int(row["n_lesions"])
        assert n == len(grouped.get(row["image_id"], []))
        assert row["label"] == str(int(n > 0))
        assert (mask(small_set, "lesions", row["image_id"]) > 0).any() == (n > 0)
    assert {row["label"] for row in rows} == {"0", "1"}


def test_body_mask_contains_the_lungs_and_the_right_lung_is_on_the_left(small_set: Path) -> None:
    for row in read_table(small_set / "manifest.csv"):
        body = mask(small_set, "body", row["image_id"]) > 0
        lungs = mask(small_set, "lungs", row["image_id"])
        assert set(np.unique(lungs)) == {0, 1, 2}
        assert not ((lungs > 0) & ~body).any()
        assert not body[0, 0] and not body[0, -1]  # air above the shoulders
        cols = np.arange(lungs.shape[1])[None, :]
        assert (cols * (lungs == 1)).sum() / (lungs == 1).sum() < lungs.shape[1] / 2
        assert (cols * (lungs == 2)).sum() / (lungs == 2).sum() > lungs.shape[1] / 2
        pixels = display(small_set, row)
        assert pixels[lungs > 0].mean() < pixels[body & (lungs == 0)].mean()  # lungs are dark


def test_prevalence_and_confounder_strengths_are_respected(tmp_path: Path) -> None:
    strengths = ConfounderStrengths(marker=1.0, text=0.0, border=1.0)
    options = PhantomOptions(n=300, seed=11, size=48, prevalence=0.3, strengths=strengths)
    rows = read_table(make_set(tmp_path, options, workers=2) / "manifest.csv")
    positives = [r for r in rows if r["label"] == "1"]
    negatives = [r for r in rows if r["label"] == "0"]
    assert 0.22 <= len(positives) / len(rows) <= 0.38
    # Strength 1: present exactly on the positives.
    assert all(bool(r["marker_text"]) == (r["label"] == "1") for r in rows)
    assert all(bool(r["border_artifact"]) == (r["label"] == "1") for r in rows)
    # Strength 0: present on about half of each group, whatever the label.
    for group in (positives, negatives):
        assert 0.35 <= sum(bool(r["text_token"]) for r in group) / len(group) <= 0.65


def test_site_prevalence_strength_one_lets_the_site_give_the_label_away(tmp_path: Path) -> None:
    options = PhantomOptions(n=40, seed=12, size=48, sites=2, site_prevalence=1.0)
    rows = read_table(make_set(tmp_path, options) / "manifest.csv")
    assert {r["label"] for r in rows if r["site"] == "site-1"} == {"1"}
    assert {r["label"] for r in rows if r["site"] == "site-2"} == {"0"}
    assert len({r["manufacturer"] for r in rows}) == 2


def test_marker_sits_in_its_box_and_is_bright(tmp_path: Path) -> None:
    # Strength 0.5 vs 0 changes only which images carry a marker; every other draw is the same,
    # so where the marker disappears the images differ only inside its box.
    base = PhantomOptions(n=16, seed=9, size=128, prevalence=0.0, monochrome1_fraction=0.5)
    present = make_set(tmp_path / "a", base)
    changed = make_set(tmp_path / "b", replace(base, strengths=ConfounderStrengths(marker=0.5)))
    compared = 0
    for a, b in zip(
        read_table(present / "manifest.csv"), read_table(changed / "manifest.csv"), strict=True
    ):
        if not a["marker_text"]:
            assert not b["marker_text"]
            continue
        box = parse_box(a["marker_box"])
        assert box is not None
        r0, c0, r1, c1 = box
        pixels = display(present, a)
        assert pixels[r0:r1, c0:c1].max() >= 0.9 * 4095
        assert r1 <= 64  # top of the image
        assert (c0 >= 64) if a["marker_text"] == "L" else (c1 <= 64)
        if not b["marker_text"]:
            differs = pixels != display(changed, b)
            inside = np.zeros_like(differs)
            inside[r0:r1, c0:c1] = True
            assert differs.any() and not (differs & ~inside).any()
            compared += 1
    assert compared >= 2


def test_marker_strength_one_puts_markers_on_exactly_the_positive_images(tmp_path: Path) -> None:
    options = PhantomOptions(n=20, seed=4, size=96, strengths=ConfounderStrengths(marker=1.0))
    rows = read_table(make_set(tmp_path, options) / "manifest.csv")
    for row in rows:
        assert bool(row["marker_text"]) == (row["label"] == "1")
        if row["marker_text"]:
            box = parse_box(row["marker_box"])
            assert box is not None
            r0, c0, r1, c1 = box
            assert display(tmp_path, row)[r0:r1, c0:c1].max() >= 0.9 * 4095


@pytest.mark.skipif(not (CXR_LUNGS / "manifest.csv").is_file(), reason="cxr-lungs-ccby not present")
def test_backgrounds_get_lesions_inside_their_real_lung_masks(tmp_path: Path) -> None:
    options = PhantomOptions(n=4, seed=1, size=128, prevalence=1.0, backgrounds=CXR_LUNGS)
    out = make_set(tmp_path, options)
    entries = {entry.name: entry for entry in load_backgrounds(CXR_LUNGS)}
    grouped = lesions_by_image(out)
    for row in read_table(out / "manifest.csv"):
        assert row["background"] in entries and row["label"] == "1"
        real = prepare_background(entries[row["background"]], 128, 128)
        lungs = mask(out, "lungs", row["image_id"])
        assert np.array_equal(lungs, real.lungs)
        lesion_mask = mask(out, "lesions", row["image_id"]) > 0
        assert lesion_mask.any() and not (lesion_mask & (real.lungs == 0)).any()
        assert not ((lungs > 0) & (mask(out, "body", row["image_id"]) == 0)).any()
        assert len(grouped[row["image_id"]]) == int(row["n_lesions"])


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["phantom", *args])
    return result.exit_code, result.output


def test_cli_writes_a_set_and_prints_a_summary(tmp_path: Path) -> None:
    code, output = run_cli("--out", str(tmp_path), "--n", "3", "--size", "64", "--workers", "1")
    assert code == 0, output
    assert "Wrote 3 images" in output
    assert len(read_table(tmp_path / "manifest.csv")) == 3


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--n", "0"], "--n"),
        (["--n", "2", "--marker-strength", "1.5"], "--marker-strength"),
        (["--n", "2", "--prevalence", "-0.1"], "--prevalence"),
        (["--n", "2", "--cnr-range", "5", "1"], "CNR range"),
        (["--n", "2", "--modality", "MR"], "--modality"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, args: list[str], complaint: str) -> None:
    code, output = run_cli("--out", str(tmp_path / "out"), *args)
    assert code == 2
    assert complaint in output
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_cli_rejects_a_backgrounds_folder_without_a_manifest(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = run_cli("--out", str(tmp_path / "out"), "--n", "1", "--backgrounds", str(empty))
    assert code == 2
    assert "manifest.csv" in output and "--backgrounds" in output
