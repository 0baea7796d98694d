"""Overlays sit on the right anatomy: with the shipped demo model and lung segmenter, the peaks
of the Grad-CAM and of the probability map of an analysed phantom fall on its lesion (not on a
mirrored or shifted place), in both photometric interpretations, and the region table's top
zone is the lesion's lung. The images are larger than the working copy, so the maps' way back
to the image's geometry (scaled maps, full-size overlays) is exercised too."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scipy import ndimage

from service.analysis.pipeline import WORKING_SIDE
from service.analysis.results_files import load_map, raw_map_path
from service.app import create_app
from service.auth.roles import Role
from service.results.resize import fitted_shape
from service.settings import Settings
from service.training.phantom.generator import PhantomOptions, generate
from service.training.phantom.lesions import LesionMix
from service.training.phantom.manifest import read_table
from tests.test_analysis_api import analyses_of, wait_done
from tests.test_phantom import lesions_by_image
from tests.test_stow import stow

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = "vigil-cxr-demo"
# One obvious lesion per image, every image positive; half of them stored as MONOCHROME1.
PHANTOMS = PhantomOptions(
    n=4,
    seed=2,
    size=1024,
    prevalence=1.0,
    monochrome1_fraction=0.5,
    mix=LesionMix(cnr_range=(4.0, 5.0), diameter_range_mm=(22.0, 30.0), count_weights=(1.0,)),
)
# Each lesion lies in one lung, so a mirrored or shifted map puts its peak off the lesion.
# The classifier's map has one cell per 16 input pixels (256 px input for a 1024 px image): a
# peak within one cell of the lesion's edge is on the lesion.
TOLERANCE_PX = 64


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("anatomy") / "phantoms"
    generate(PHANTOMS, out)
    return out


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    shipped = settings.model_copy(update={"models_dir": REPO / "models"})
    with TestClient(create_app(shipped)) as client:
        yield client


def test_both_photometric_interpretations_are_in_the_set(phantoms: Path) -> None:
    kinds = {row["photometric"] for row in read_table(phantoms / "manifest.csv")}
    assert kinds == {"MONOCHROME1", "MONOCHROME2"}


def test_heatmap_and_probability_peaks_fall_on_the_lesion(
    api: TestClient, tokens: dict[Role, str], settings: Settings, phantoms: Path
) -> None:
    lesions = lesions_by_image(phantoms)
    for row in read_table(phantoms / "manifest.csv"):
        [lesion] = lesions[row["image_id"]]
        data = (phantoms / row["dicom_path"]).read_bytes()
        assert stow(api, tokens[Role.INTEGRATION], [data]).status_code == 200
        [queued] = analyses_of(api, tokens[Role.CLINICIAN], row["study_uid"])
        result = wait_done(api, tokens[Role.CLINICIAN], queued["id"], timeout=120)
        assert result["status"] == "done", result["failure_reason"]
        assert result["model"]["name"] == DEMO_MODEL

        mask = np.asarray(Image.open(phantoms / "masks/lesions" / f"{row['image_id']}.png")) > 0
        near_lesion = ndimage.distance_transform_edt(~mask) <= TOLERANCE_PX
        header = pydicom.dcmread(phantoms / row["dicom_path"], stop_before_pixels=True)
        rows, cols = int(header.Rows), int(header.Columns)
        for name in ("gradcam", "probability"):
            values = load_map(raw_map_path(settings.results_path, uuid.UUID(queued["id"]), name))
            assert values.shape == fitted_shape((rows, cols), WORKING_SIDE), name
            at = np.unravel_index(int(np.argmax(values)), values.shape)
            peak = (  # the map pixel's centre, in image pixels
                int((at[0] + 0.5) * rows / values.shape[0]),
                int((at[1] + 0.5) * cols / values.shape[1]),
            )
            assert near_lesion[peak], (
                f"{row['photometric']} image {row['image_id']}: {name} peaks at {peak}, lesion "
                f"at ({float(lesion['center_row']):.0f}, {float(lesion['center_col']):.0f})"
            )

            # The overlay drawn at the image's size is most opaque where the map peaks.
            answer = api.get(
                f"/api/v1/analyses/{queued['id']}/overlays/{name}.png",
                headers={"Authorization": f"Bearer {tokens[Role.CLINICIAN]}"},
            )
            assert answer.status_code == 200, answer.text
            alpha = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGBA"))[..., 3]
            assert alpha.shape == (rows, cols)
            assert alpha[peak] >= alpha.max() - 2, (name, alpha[peak], alpha.max())

        # The zone with the highest probability lies in the lesion's lung.
        top = max(result["regions"], key=lambda region: region["probability"])
        assert top["name"].startswith(lesion["lung"]), (top, lesion["lung"])
