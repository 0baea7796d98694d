"""The phantom generator's pure parts, on tiny inputs whose answers are known."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from service.training.phantom.anatomy import make_anatomy
from service.training.phantom.backgrounds import estimate_noise, split_lungs
from service.training.phantom.confounders import (
    ConfounderStrengths,
    burn,
    plan_annotations,
    presence_probability,
)
from service.training.phantom.imaging import blur
from service.training.phantom.lesions import (
    LesionMix,
    PlacementContext,
    background_deviation,
    draw_log_mixture,
    place_lesions,
)
from service.training.phantom.patients import draw_patient
from service.training.phantom.sites import make_sites, site_prevalence


@pytest.mark.parametrize("sigma", [0.7, 2.0, 9.0])
def test_blur_keeps_flat_images_flat_and_spreads_an_impulse_by_sigma(sigma: float) -> None:
    flat = np.full((50, 70), 7.0, dtype=np.float32)
    assert np.allclose(blur(flat, sigma), 7.0, atol=1e-4)
    impulse = np.zeros((121, 121), dtype=np.float32)
    impulse[60, 60] = 1.0
    spread = blur(impulse, sigma)
    assert spread.sum() == pytest.approx(1.0, abs=1e-3)
    cols = np.arange(121) - 60
    measured = np.sqrt((spread.sum(axis=0) * cols**2).sum())
    # Wide blurs run on a block-averaged copy, which adds the block's own spread.
    assert measured == pytest.approx(sigma, rel=0.05 if sigma <= 3 else 0.2)


def test_presence_probability_interpolates_from_independent_to_tied() -> None:
    for label in (0, 1):
        assert presence_probability(label=label, strength=0.0, base_rate=0.3) == pytest.approx(0.3)
    assert presence_probability(label=1, strength=1.0, base_rate=0.3) == 1.0
    assert presence_probability(label=0, strength=1.0, base_rate=0.3) == 0.0
    assert presence_probability(label=1, strength=0.5, base_rate=0.3) == pytest.approx(0.65)
    assert presence_probability(label=0, strength=0.5, base_rate=0.3) == pytest.approx(0.15)


def test_site_prevalence_alternates_between_the_extremes_at_full_strength() -> None:
    assert [site_prevalence(k, 4, 0.5, 1.0) for k in range(4)] == [1.0, 0.0, 1.0, 0.0]
    assert [site_prevalence(k, 3, 0.4, 0.5) for k in range(3)] == pytest.approx([0.7, 0.2, 0.4])
    assert site_prevalence(0, 1, 0.4, 1.0) == 0.4


def test_sites_look_alike_at_zero_intensity_and_differ_at_one() -> None:
    same = make_sites(count=3, seed=1, prevalence=0.5, intensity=0.0, prevalence_strength=0.0)
    assert len({(s.black_level, s.gamma, s.noise_sigma) for s in same}) == 1
    assert len({s.institution for s in same}) == 3
    varied = make_sites(count=3, seed=1, prevalence=0.5, intensity=1.0, prevalence_strength=0.0)
    assert len({s.noise_sigma for s in varied}) == 3


def test_log_mixture_puts_the_easy_share_above_the_floor() -> None:
    rng = np.random.default_rng(0)
    draws = np.array([draw_log_mixture(rng, (0.5, 5.0), 1.5, 0.9) for _ in range(4000)])
    assert draws.min() >= 0.5 and draws.max() <= 5.0
    assert (draws >= 1.5).mean() == pytest.approx(0.9, abs=0.02)
    narrow = [draw_log_mixture(rng, (2.0, 3.0), 1.5, 0.9) for _ in range(100)]
    assert min(narrow) >= 2.0 and max(narrow) <= 3.0


def test_lesions_stay_in_allowed_lung_and_peak_at_cnr_times_their_background() -> None:
    lungs = np.zeros((120, 120), dtype=np.uint8)
    lungs[10:110, 10:55] = 1
    lungs[10:110, 65:110] = 2
    allowed = lungs > 0
    allowed[10:40, :] = False  # as if a burned-in box covered the top of both lungs
    context = PlacementContext(
        lungs=lungs,
        allowed=allowed,
        ribs=np.zeros_like(allowed),
        heart=np.zeros_like(allowed),
        noise_sigma=np.full((120, 120), 10.0, dtype=np.float32),
        spacing_mm=1.0,
    )
    mix = LesionMix(cnr_range=(3.0, 3.0), diameter_range_mm=(8.0, 20.0))
    image = np.zeros((120, 120), dtype=np.float32)
    lesions, union = place_lesions(np.random.default_rng(1), image, context, mix=mix, count=3)
    assert len(lesions) == 3
    assert not ((image > 0) & ~allowed).any()
    assert not (union & ~allowed).any()
    # On a flat background only the noise counts: the first lesion peaks at CNR × σ. Later
    # ones may lie beside an earlier one, whose edge then adds to their background.
    assert lesions[0].contrast == pytest.approx(30.0)
    assert image.max() == pytest.approx(max(lesion.contrast for lesion in lesions), abs=0.5)
    for lesion in lesions:
        assert lesion.contrast >= 30.0 - 1e-4 and lesion.cnr == pytest.approx(3.0)
        side = lungs[int(lesion.center_row), int(lesion.center_col)]
        assert lesion.lung == {1: "right", 2: "left"}[int(side)]
        assert union[int(lesion.center_row), int(lesion.center_col)]


def test_cnr_counts_the_anatomy_behind_a_lesion_as_well_as_the_quantum_noise() -> None:
    lungs = np.ones((80, 80), dtype=np.uint8)
    context = PlacementContext(
        lungs=lungs,
        allowed=lungs > 0,
        ribs=np.zeros((80, 80), dtype=bool),
        heart=np.zeros((80, 80), dtype=bool),
        noise_sigma=np.full((80, 80), 3.0, dtype=np.float32),
        spacing_mm=1.0,
    )
    # Stripes of 0 and 8 (ribs and gaps): standard deviation 4 over any box of whole periods.
    image = np.zeros((80, 80), dtype=np.float32)
    image[:, ::2] = 8.0
    mix = LesionMix(cnr_range=(2.0, 2.0), diameter_range_mm=(10.0, 10.0))
    lesions, _ = place_lesions(np.random.default_rng(3), image, context, mix=mix, count=1)
    assert len(lesions) == 1
    # √(3² + 4²) = 5 (the box may hold one unpaired stripe: within 2 %).
    assert lesions[0].contrast == pytest.approx(2.0 * 5.0, rel=0.02)
    assert (
        background_deviation(np.zeros((4, 4), np.float32), (slice(0, 4), slice(0, 4)), 3.0) == 3.0
    )


def test_a_lesion_that_cannot_fit_is_shrunk_or_dropped() -> None:
    lungs = np.zeros((60, 60), dtype=np.uint8)
    lungs[20:28, 20:28] = 1  # 8 px across at 1 mm/px: room for 5–7 mm only
    context = PlacementContext(
        lungs=lungs,
        allowed=lungs > 0,
        ribs=np.zeros((60, 60), dtype=bool),
        heart=np.zeros((60, 60), dtype=bool),
        noise_sigma=np.ones((60, 60), dtype=np.float32),
        spacing_mm=1.0,
    )
    mix = LesionMix(diameter_range_mm=(5.0, 40.0), opacity_fraction=0.0)
    image = np.zeros((60, 60), dtype=np.float32)
    lesions, union = place_lesions(np.random.default_rng(3), image, context, mix=mix, count=1)
    assert all(5.0 <= lesion.diameter_mm <= 8.0 for lesion in lesions)
    assert not (union & (lungs == 0)).any()


def test_split_lungs_cuts_at_the_gap_between_them() -> None:
    mask = np.zeros((40, 100), dtype=bool)
    mask[5:35, 10:42] = True
    mask[5:35, 50:90] = True
    labels = split_lungs(mask)
    assert set(np.unique(labels[:, :46][mask[:, :46]])) == {1}
    assert set(np.unique(labels[:, 46:][mask[:, 46:]])) == {2}


def test_noise_estimate_recovers_white_noise() -> None:
    noise = np.random.default_rng(0).normal(0.0, 0.05, (200, 200)).astype(np.float32)
    assert estimate_noise(noise + 0.5, np.ones((200, 200), dtype=bool)) == pytest.approx(
        0.05, rel=0.05
    )


def test_patients_are_exactly_their_age_on_the_study_date() -> None:
    for index in range(300):
        patient = draw_patient(
            np.random.default_rng([1, index]), seed=1, index=index, ap_fraction=0.2
        )
        born = dt.datetime.strptime(patient.birth_date, "%Y%m%d").date()
        study = dt.datetime.strptime(patient.study_date, "%Y%m%d").date()
        age = study.year - born.year - ((study.month, study.day) < (born.month, born.day))
        assert age == patient.age and 18 <= age <= 95
        assert patient.view in {"PA", "AP"} and patient.name.count("^") == 1


def test_anatomy_masks_nest_and_the_heart_leans_to_the_patients_left() -> None:
    anatomy = make_anatomy(
        np.random.default_rng(5), rows=256, cols=256, spacing_mm=1.4, view="PA", sex="F"
    )
    lungs = anatomy.lungs
    assert not ((lungs > 0) & ~anatomy.body).any()
    heart_cols = np.nonzero(anatomy.heart)[1]
    assert heart_cols.mean() > 128  # the patient's left is the image's right
    assert (anatomy.ribs & (lungs > 0)).sum() > 0.2 * (lungs > 0).sum()
    # Lungs hold air: lower density than the mediastinum between them.
    assert anatomy.density[lungs > 0].mean() < anatomy.density[100:140, 124:132].mean()


def test_annotations_burn_bright_pixels_inside_their_boxes() -> None:
    strengths = ConfounderStrengths(marker=1.0, text=1.0, border=1.0)
    annotations = plan_annotations(
        np.random.default_rng(2), label=1, shape=(256, 256), spacing_mm=1.4,
        strengths=strengths, site_token="NGH XR1",
    )  # fmt: skip
    image = np.zeros((256, 256), dtype=np.float32)
    for item in (annotations.marker, annotations.text, annotations.border):
        assert item is not None
        burn(image, item)
        r0, c0, r1, c1 = item.box
        assert image[r0:r1, c0:c1].max() > 0.8 * 4095
    assert annotations.marker is not None and annotations.marker.text in {"L", "R"}
    outside = np.ones_like(image, dtype=bool)
    for item in (annotations.marker, annotations.text, annotations.border):
        assert item is not None
        outside[item.slices()] = False
    assert not image[outside].any()


def test_marker_and_text_keep_clear_of_the_border_artifact() -> None:
    strengths = ConfounderStrengths(marker=1.0, text=1.0, border=1.0)
    for seed in range(40):
        annotations = plan_annotations(
            np.random.default_rng(seed), label=1, shape=(200, 200), spacing_mm=1.8,
            strengths=strengths, site_token="NGH XR1",
        )  # fmt: skip
        assert annotations.border is not None
        b0, b1, b2, b3 = annotations.border.box
        for item in (annotations.marker, annotations.text):
            assert item is not None
            r0, c0, r1, c1 = item.box
            assert r1 <= b0 or r0 >= b2 or c1 <= b1 or c0 >= b3, (seed, item.box, (b0, b1, b2, b3))
