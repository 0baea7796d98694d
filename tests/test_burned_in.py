"""The burned-in marker and text detector: on hand-made images and on phantoms whose
manifest says where the marker and the site label are."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from service.audit.burned_in import Box, boxes_mask, detect_burned_in, median_filter, parse_box
from service.dicom.render import display_image
from service.training.phantom.generator import PhantomOptions, generate


def test_a_white_letter_on_air_is_found_and_bright_bone_is_not() -> None:
    image = np.zeros((200, 200), dtype=np.uint8)
    image[40:190, 30:170] = 150  # body
    image[60:180, 95:105] = 235  # a bright but broad spine: not a mark
    image[8:24, 10:14] = 255  # an "L" on the air above the shoulder
    image[20:24, 10:20] = 255
    [box] = detect_burned_in(image)
    assert box.row0 <= 8 and box.row1 >= 24 and box.col0 <= 10 and box.col1 >= 20
    assert box.area < 0.02 * image.size


def test_no_marks_no_boxes() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 140, size=(128, 128), dtype=np.uint8)
    assert detect_burned_in(image) == []


def test_box_helpers() -> None:
    assert parse_box("1,2,5,8") == Box(1, 2, 5, 8)
    assert parse_box("") is None
    assert Box(0, 0, 10, 10).iou(Box(5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert boxes_mask((4, 4), [Box(1, 1, 3, 2)]).sum() == 2


def test_markers_and_site_labels_are_found_where_the_manifest_says(tmp_path: Path) -> None:
    generate(PhantomOptions(n=16, seed=5, size=384), tmp_path, workers=1)
    found = missed = 0
    for row in csv.DictReader((tmp_path / "manifest.csv").open()):
        ds = pydicom.dcmread(tmp_path / row["dicom_path"])
        boxes = detect_burned_in(display_image(ds, ds.pixel_array))
        for truth in filter(None, (parse_box(row["marker_box"]), parse_box(row["text_box"]))):
            if any(box.iou(truth) > 0.2 for box in boxes):
                found += 1
            else:
                missed += 1
    assert found >= 8, "the phantoms should hold markers and labels to find"
    assert found / (found + missed) >= 0.9


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("shape", [(128, 128), (96, 130), (4, 9)])
def test_median_filter_is_scipys(size: int, shape: tuple[int, int]) -> None:
    image = np.random.default_rng(size).integers(0, 256, shape).astype(np.float32)
    assert np.array_equal(median_filter(image, size), ndimage.median_filter(image, size=size))


def test_median_filter_needs_an_odd_size() -> None:
    with pytest.raises(ValueError, match="odd size"):
        median_filter(np.zeros((8, 8), np.float32), 4)
