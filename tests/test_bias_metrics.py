"""Per-image bias metrics on tiny arrays whose answers are known."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.audit.bias_metrics import (
    ImageMarks,
    ImageRegions,
    PeakPlace,
    body_mask,
    border_band,
    fill_with_background,
    heatmap_metrics,
    image_marks,
    image_regions,
    strongest_outside_hotspot,
)
from service.audit.burned_in import Box, boxes_mask
from service.audit.flags import FlagThresholds, bias_flags
from service.audit.per_image import audit_image

SHAPE = (20, 20)


def regions(lungs: np.ndarray, boxes: tuple[Box, ...] = ()) -> ImageRegions:
    body = np.zeros(SHAPE, dtype=bool)
    body[2:18, 2:18] = True
    return ImageRegions(
        relevant=lungs,
        relevant_kind="lungs",
        body=body,
        border=border_band(SHAPE, 0.05),
        burned_in=boxes_mask(SHAPE, boxes),
        boxes=boxes,
    )


def lungs() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[5:15, 4:9] = mask[5:15, 11:16] = True
    return mask


def test_border_band_is_five_percent_of_each_side() -> None:
    band = border_band((100, 40))
    assert band[:5].all() and band[-5:].all() and band[:, :2].all() and band[:, -2:].all()
    assert not band[5:95, 2:38].any()


def test_shares_of_a_heatmap_split_between_lungs_and_a_marker() -> None:
    marker = Box(0, 0, 3, 3)
    heat = np.zeros(SHAPE)
    heat[7, 5] = 3.0  # in a lung
    heat[0, 1] = 1.0  # on the marker, which is on the border, outside the body
    metrics = heatmap_metrics(heat, regions(lungs(), (marker,)))
    assert metrics.relevant_share == pytest.approx(0.75)
    assert metrics.burned_in_share == pytest.approx(0.25)
    assert metrics.border_share == pytest.approx(0.25)
    assert metrics.outside_body_share == pytest.approx(0.25)
    assert metrics.peak is PeakPlace.RELEVANT
    assert (metrics.peak_row, metrics.peak_col) == (7, 5)


@pytest.mark.parametrize(
    ("where", "place"),
    [
        ((1, 1), PeakPlace.MARKER_OR_TEXT),
        ((0, 10), PeakPlace.BORDER),
        ((10, 19), PeakPlace.BORDER),
        ((1, 10), PeakPlace.OUTSIDE_BODY),
        ((10, 6), PeakPlace.RELEVANT),
        ((10, 10), PeakPlace.BODY_ELSEWHERE),
    ],
)
def test_the_peak_is_placed_marker_first(where: tuple[int, int], place: PeakPlace) -> None:
    heat = np.zeros(SHAPE)
    heat[where] = 1.0
    assert heatmap_metrics(heat, regions(lungs(), (Box(0, 0, 3, 3),))).peak is place


def test_negative_values_do_not_count_and_an_empty_map_has_no_shares() -> None:
    heat = -np.ones(SHAPE)
    metrics = heatmap_metrics(heat, regions(lungs()))
    assert metrics.relevant_share == metrics.border_share == 0.0
    assert metrics.peak is PeakPlace.NONE and (metrics.peak_row, metrics.peak_col) == (-1, -1)


def test_an_empty_heatmap_raises_no_flag() -> None:
    image = np.zeros(SHAPE, dtype=np.uint8)
    image[2:18, 2:18] = 150
    lung_labels = lungs().astype(np.uint8)
    audit = audit_image(
        display=image,
        heatmap=np.zeros(SHAPE),
        lung_labels=lung_labels,
        burned_in_attribute="NO",
        probability=0.04,
        rescore=lambda _image: 0.04,
        thresholds=FlagThresholds(),
    )
    assert audit["metrics"]["peak"] == "none"
    assert audit["flags"] == [] and audit["flagged"] is False


def test_share_of_the_hottest_pixels_outside_the_lungs() -> None:
    heat = np.zeros(SHAPE)
    heat[0, :] = 10.0  # 20 hottest pixels (5% of 400) all on the top row, outside the lungs
    assert heatmap_metrics(heat, regions(lungs())).top_outside_relevant_share == 1.0
    heat = np.zeros(SHAPE)
    heat[5:15, 4:6] = 10.0
    assert heatmap_metrics(heat, regions(lungs())).top_outside_relevant_share == 0.0


def test_strongest_outside_hotspot_is_the_connected_hot_area_outside_the_lungs() -> None:
    heat = np.zeros(SHAPE)
    heat[7, 5] = 9.0  # inside: ignored
    heat[1:3, 1:3] = 4.0
    heat[1, 1] = 5.0
    heat[18, 18] = 1.0  # weaker than half the outside peak: not part of the hot spot
    spot = strongest_outside_hotspot(heat, lungs())
    assert spot is not None
    assert spot[1:3, 1:3].all() and spot.sum() == 4
    assert strongest_outside_hotspot(np.where(lungs(), 1.0, 0.0), lungs()) is None


def test_fill_with_background_replaces_the_region_by_its_surroundings() -> None:
    image = np.full((30, 30), 50, dtype=np.uint8)
    image[10:13, 10:13] = 255
    region = image == 255
    filled = fill_with_background(image, region)
    assert (filled == 50).all()
    assert image[11, 11] == 255  # the input is untouched


def test_body_mask_separates_the_body_from_air() -> None:
    image = np.zeros((40, 40), dtype=np.uint8)
    image[5:35, 8:32] = 180
    image[15:20, 15:20] = 10  # a dark lung-like hole inside the body stays body
    body = body_mask(image)
    assert body[5:35, 8:32].all() and body.sum() == 30 * 24


def test_image_regions_fall_back_to_the_body_without_lungs() -> None:
    image = np.zeros((40, 40), dtype=np.uint8)
    image[5:35, 8:32] = 180
    assert image_regions(image, None, ()).relevant_kind == "body"
    empty = np.zeros((40, 40), dtype=bool)
    assert image_regions(image, empty, ()).relevant_kind == "body"


def test_a_bright_box_inside_the_lungs_is_a_finding_not_a_burned_in_label() -> None:
    image = np.zeros((40, 40), dtype=np.uint8)
    image[5:35, 8:32] = 180
    lung_mask = np.zeros((40, 40), dtype=bool)
    lung_mask[10:30, 10:30] = True
    in_lung, corner = Box(15, 15, 20, 20), Box(0, 0, 4, 4)
    regions = image_regions(image, lung_mask, (in_lung, corner))
    assert regions.boxes == (corner,)
    assert regions.burned_in[1, 1] and not regions.burned_in[17, 17]
    # Without lungs nothing says what a box covers: every detected box counts.
    assert image_regions(image, None, (in_lung, corner)).boxes == (in_lung, corner)


def test_flags_name_their_reason_at_the_thresholds() -> None:
    heat = np.zeros(SHAPE)
    heat[0, 1] = 1.0
    metrics = heatmap_metrics(heat, regions(lungs(), (Box(0, 0, 3, 3),)))
    flags = bias_flags(
        metrics,
        FlagThresholds(),
        relevant_kind="lungs",
        lung_finding=True,
        counterfactual_change=0.05,
    )
    assert [f.code for f in flags] == [
        "outside-lungs",
        "peak-on-marker",
        "border",
        "counterfactual",
    ]
    assert "0% of the heatmap lies in the lung fields" in flags[0].reason
    clean = np.zeros(SHAPE)
    clean[7, 5] = 1.0
    ok = heatmap_metrics(clean, regions(lungs()))
    assert (
        bias_flags(
            ok,
            FlagThresholds(),
            relevant_kind="lungs",
            lung_finding=True,
            counterfactual_change=0.049,
        )
        == []
    )


def test_marks_found_beforehand_give_the_same_audit() -> None:
    # The pipeline finds the marks and the body in its helper process, before the lungs.
    image = np.zeros((200, 200), dtype=np.uint8)
    image[40:190, 30:170] = 150  # body
    image[8:24, 10:14] = 255  # an "L" on the air above the shoulder
    image[20:24, 10:20] = 255
    lung_labels = np.zeros(image.shape, dtype=np.uint8)
    lung_labels[60:160, 45:95], lung_labels[60:160, 105:155] = 1, 2
    heat = np.zeros(image.shape, dtype=np.float32)
    heat[10:22, 11:18] = 1.0  # the model looks at the marker
    marks = image_marks(image)
    assert len(marks.boxes) == 1 and marks.body[100, 100] and not marks.body[2, 190]

    def audit(found: ImageMarks | None) -> dict[str, Any]:
        return audit_image(
            display=image,
            heatmap=heat,
            lung_labels=lung_labels,
            burned_in_attribute="NO",
            probability=0.9,
            rescore=lambda _image: 0.2,
            thresholds=FlagThresholds(),
            marks=found,
        )

    found = audit(marks)
    assert found == audit(None)
    assert "peak-on-marker" in [flag["code"] for flag in found["flags"]]
