"""One image from start to finish: anatomy (or a real background), lesions, confounders, noise.

Each step draws from its own random stream, so turning one confounder on or off does not
change the patient's anatomy or the noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.training.phantom.acquisition import add_noise, noise_sigma_map, to_display
from service.training.phantom.anatomy import make_anatomy
from service.training.phantom.backgrounds import Background, prepare_background
from service.training.phantom.confounders import (
    Annotations,
    ConfounderStrengths,
    burn,
    plan_annotations,
)
from service.training.phantom.imaging import MAX_STORED, FloatImage, Mask
from service.training.phantom.lesions import (
    Lesion,
    LesionMix,
    PlacementContext,
    draw_count,
    place_lesions,
)
from service.training.phantom.sites import Site

ANNOTATION_CLEARANCE_PX = 3  # lesions keep this far from burned-in boxes
BACKGROUND_NOISE_SHARE = 0.5


@dataclass(frozen=True)
class Streams:
    """Independent random streams for one image."""

    anatomy: np.random.Generator
    lesions: np.random.Generator
    confounders: np.random.Generator
    noise: np.random.Generator

    @staticmethod
    def for_image(seed: int, index: int) -> Streams:
        """Return the streams of image ``index`` (independent of worker count and order)."""
        gens = [np.random.default_rng([seed, index, part]) for part in (1, 2, 3, 4)]
        return Streams(*gens)


@dataclass(frozen=True)
class ImageRequest:
    """What to draw: the decisions already taken for this image."""

    rows: int
    cols: int
    spacing_mm: float
    view: str
    sex: str
    label: int
    site: Site
    strengths: ConfounderStrengths
    mix: LesionMix
    background: Background | None


@dataclass(frozen=True)
class RenderedImage:
    """Display values (MONOCHROME2 polarity, 12-bit units, unrounded) and ground truth."""

    display: FloatImage
    body: Mask
    lungs: npt.NDArray[np.uint8]
    lesion_mask: Mask
    lesions: list[Lesion]
    annotations: Annotations


def render_image(request: ImageRequest, streams: Streams) -> RenderedImage:
    """Return one finished image and its ground truth."""
    shape = (request.rows, request.cols)
    site = request.site
    if request.background is None:
        anatomy = make_anatomy(
            streams.anatomy,
            rows=request.rows,
            cols=request.cols,
            spacing_mm=request.spacing_mm,
            view=request.view,
            sex=request.sex,
        )
        display = to_display(anatomy.density, site, spacing_mm=request.spacing_mm)
        body, lungs, heart, ribs = anatomy.body, anatomy.lungs, anatomy.heart, anatomy.ribs
        sigma = noise_sigma_map(display, site)
        lesion_sigma = sigma
    else:
        real = prepare_background(request.background, request.rows, request.cols)
        span = site.white_level - site.black_level
        fraction = np.power(real.fraction, site.gamma)
        display = (MAX_STORED * (site.black_level + span * fraction)).astype(np.float32)
        body, lungs = real.body, real.lungs
        heart = ribs = np.zeros(shape, dtype=bool)  # unknown in a real image
        # Half the phantom's noise: the real image brings its own, which counts towards the CNR.
        sigma = BACKGROUND_NOISE_SHARE * noise_sigma_map(display, site)
        inherent = MAX_STORED * span * real.noise_fraction
        lesion_sigma = np.sqrt(sigma * sigma + np.float32(inherent * inherent))

    annotations = plan_annotations(
        streams.confounders,
        label=request.label,
        shape=shape,
        spacing_mm=request.spacing_mm,
        strengths=request.strengths,
        site_token=site.token,
    )
    lesions: list[Lesion] = []
    lesion_mask = np.zeros(shape, dtype=bool)
    if request.label:
        context = PlacementContext(
            lungs=lungs,
            allowed=(lungs > 0) & ~annotations.footprint(shape, ANNOTATION_CLEARANCE_PX),
            ribs=ribs,
            heart=heart,
            noise_sigma=lesion_sigma,
            spacing_mm=request.spacing_mm,
        )
        count = draw_count(streams.lesions, request.mix)
        lesions, lesion_mask = place_lesions(
            streams.lesions, display, context, mix=request.mix, count=count
        )

    for physical in (annotations.marker, annotations.border):
        if physical is not None:
            burn(display, physical)
    display = add_noise(display, sigma, streams.noise, spacing_mm=request.spacing_mm)
    if annotations.text is not None:
        burn(display, annotations.text)
    return RenderedImage(
        display=display,
        body=body,
        lungs=lungs,
        lesion_mask=lesion_mask,
        lesions=lesions,
        annotations=annotations,
    )
