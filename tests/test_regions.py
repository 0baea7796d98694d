"""The region table: lung zones by thirds, the grid, and the maximum per region."""

from __future__ import annotations

import numpy as np
import pytest

from service.results.regions import (
    grid_regions,
    lung_label_map,
    lung_zones,
    region_table,
)

ROWS, COLS = 120, 100
ZONE_NAMES = [
    "right upper lung zone",
    "right middle lung zone",
    "right lower lung zone",
    "left upper lung zone",
    "left middle lung zone",
    "left lower lung zone",
]


def ellipse(centre: tuple[int, int], radii: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    inside: np.ndarray = ((rows - centre[0]) / radii[0]) ** 2 + (
        (cols - centre[1]) / radii[1]
    ) ** 2 <= 1
    return inside


def two_lungs() -> np.ndarray:
    """Patient's right lung on the image's left (rows 20-80), left lung lower (rows 40-100)."""
    right = ellipse((50, 28), (30, 18))
    left = ellipse((70, 72), (30, 18))
    return lung_label_map(right, left)


def row_span(mask: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[0]), int(rows[-1])


def test_each_lung_is_cut_into_thirds_of_its_own_height_and_named_by_the_patients_side():
    labels = two_lungs()
    zones = lung_zones(labels)
    assert list(zones) == ZONE_NAMES
    # Patient's right = image-left: every "right" zone is in the left half of the image.
    for name, zone in zones.items():
        cols = np.flatnonzero(zone.any(axis=0))
        assert (cols.max() < COLS // 2) if name.startswith("right") else (cols.min() >= COLS // 2)
    # Right lung spans rows 20-80 (61 rows): thirds of 21, 20 and 20 rows.
    assert row_span(zones["right upper lung zone"]) == (20, 40)
    assert row_span(zones["right middle lung zone"]) == (41, 60)
    assert row_span(zones["right lower lung zone"]) == (61, 80)
    # The left lung sits 20 rows lower, and so do its thirds.
    assert row_span(zones["left upper lung zone"]) == (40, 60)
    assert row_span(zones["left lower lung zone"]) == (81, 100)


def test_zones_cover_each_lung_exactly_once():
    labels = two_lungs()
    count = sum(zone.astype(int) for zone in lung_zones(labels).values())
    np.testing.assert_array_equal(count, (labels > 0).astype(int))


def test_a_missing_lung_gives_only_the_other_lungs_zones():
    labels = two_lungs()
    labels[labels == 2] = 0
    assert list(lung_zones(labels)) == ZONE_NAMES[:3]
    with pytest.raises(ValueError, match="other than 0, 1, 2"):
        lung_zones(np.full((4, 4), 3, np.uint8))


def test_lung_label_map_refuses_overlapping_lungs():
    mask = ellipse((50, 50), (10, 10))
    with pytest.raises(ValueError, match="both lungs"):
        lung_label_map(mask, mask)


def test_grid_is_named_row_by_row_from_the_top_left_and_covers_every_pixel_once():
    grid = grid_regions(7, 10, n=3)
    assert list(grid)[:4] == [
        "grid row 1 col 1",
        "grid row 1 col 2",
        "grid row 1 col 3",
        "grid row 2 col 1",
    ]
    assert len(grid) == 9
    np.testing.assert_array_equal(sum(m.astype(int) for m in grid.values()), np.ones((7, 10)))
    top_right = grid["grid row 1 col 3"]
    assert top_right[0, 9] and not top_right[6, 0]
    assert grid["grid row 3 col 1"][6, 0]
    with pytest.raises(ValueError, match="grid"):
        grid_regions(2, 10, n=3)


def test_a_regions_probability_is_the_highest_value_inside_it():
    labels = two_lungs()
    probability = np.full((ROWS, COLS), 0.05, np.float32)
    probability[70, 28] = 0.9  # one hot pixel, right lower zone
    probability[45, 72] = 0.4  # left upper zone
    probability[5, 5] = 1.0  # outside both lungs: must not count
    table = dict(region_table(probability, lung_zones(labels)))
    assert table["right lower lung zone"] == pytest.approx(0.9)  # the mean would be ~0.05
    assert table["left upper lung zone"] == pytest.approx(0.4)
    assert table["right upper lung zone"] == pytest.approx(0.05)
    grid = region_table(probability, grid_regions(ROWS, COLS))
    assert grid[0][0] == "grid row 1 col 1" and grid[0][1] == pytest.approx(1.0)
    assert [name for name, _ in grid] == list(grid_regions(ROWS, COLS))


def test_region_table_refuses_mismatched_or_empty_regions():
    probability = np.zeros((10, 10), np.float32)
    with pytest.raises(ValueError, match="shape"):
        region_table(probability, {"a": np.ones((10, 11), bool)})
    with pytest.raises(ValueError, match="empty"):
        region_table(probability, {"a": np.zeros((10, 10), bool)})
    # A 0/1 integer mask selects pixels, it does not index rows.
    ints = np.zeros((10, 10), np.uint8)
    ints[9, 9] = 1
    probability[9, 9] = 0.7
    [(name, value)] = region_table(probability, {"corner": ints})
    assert name == "corner" and value == pytest.approx(0.7)
