"""``vigil phantom``: synthetic chest radiographs with ground truth (service/training/phantom)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import click

from service.training.phantom.backgrounds import BackgroundsError
from service.training.phantom.confounders import ConfounderStrengths
from service.training.phantom.dicom_writer import Modality
from service.training.phantom.generator import PhantomOptions, PhantomOptionsError, generate
from service.training.phantom.lesions import LesionMix

UNIT = click.FloatRange(0.0, 1.0)
STRENGTH_HELP = (
    "0 = present on a base share of images whatever the label, 1 = present exactly on "
    "images with lesions"
)


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write (created if missing).",
)
@click.option("--n", "count", type=click.IntRange(min=1), required=True, help="Number of images.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--size",
    type=click.IntRange(32, 4096),
    default=512,
    show_default=True,
    help="Rows and columns.",
)
@click.option(
    "--pixel-spacing",
    type=click.FloatRange(0.05, 10.0),
    default=None,
    help="mm per pixel [default: 358.4 mm / size, 0.7 at 512].",
)
@click.option(
    "--prevalence", type=UNIT, default=0.5, show_default=True, help="Share of images with lesions."
)
@click.option(
    "--modality",
    type=click.Choice([m.value for m in Modality]),
    default="CR",
    show_default=True,
    help="CR Image, or DX Image for processing.",
)
@click.option("--monochrome1-fraction", type=UNIT, default=0.2, show_default=True)
@click.option(
    "--ap-fraction",
    type=UNIT,
    default=0.2,
    show_default=True,
    help="Share of AP (rather than PA) views.",
)
@click.option("--sites", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--site-intensity",
    type=UNIT,
    default=0.5,
    show_default=True,
    help="How differently sites' images look (0 = identical).",
)
@click.option(
    "--site-prevalence",
    type=UNIT,
    default=0.0,
    show_default=True,
    help="How strongly the site gives the label away (1 = completely).",
)
@click.option("--marker-strength", type=UNIT, default=0.0, show_default=True, help=STRENGTH_HELP)
@click.option("--text-strength", type=UNIT, default=0.0, show_default=True, help=STRENGTH_HELP)
@click.option("--border-strength", type=UNIT, default=0.0, show_default=True, help=STRENGTH_HELP)
@click.option(
    "--cnr-range",
    type=(float, float),
    default=(0.5, 5.0),
    show_default=True,
    help="Lesion contrast-to-noise ratios, MIN MAX.",
)
@click.option(
    "--diameter-range",
    type=(float, float),
    default=(5.0, 40.0),
    show_default=True,
    help="Lesion diameters in mm, MIN MAX.",
)
@click.option(
    "--easy-fraction",
    type=UNIT,
    default=0.9,
    show_default=True,
    help="Share drawn above CNR 1.5 / 10 mm (0 = all below where the range allows).",
)
@click.option(
    "--opacity-fraction",
    type=UNIT,
    default=0.35,
    show_default=True,
    help="Share of lesions that are ill-defined opacities rather than nodules.",
)
@click.option(
    "--backgrounds",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of real radiographs (manifest.csv: id,image,mask).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes [default: CPU count]. Output does not depend on it.",
)
@click.option("--quiet", is_flag=True, help="No progress bar; print the summary only.")
def phantom(
    out: Path,
    count: int,
    seed: int,
    size: int,
    pixel_spacing: float | None,
    prevalence: float,
    modality: str,
    monochrome1_fraction: float,
    ap_fraction: float,
    sites: int,
    site_intensity: float,
    site_prevalence: float,
    marker_strength: float,
    text_strength: float,
    border_strength: float,
    cnr_range: tuple[float, float],
    diameter_range: tuple[float, float],
    easy_fraction: float,
    opacity_fraction: float,
    backgrounds: Path | None,
    workers: int | None,
    quiet: bool,
) -> None:
    """Write synthetic chest radiographs as DICOM, with masks and a manifest.

    Same arguments, same bytes. Layout: OUT/manifest.csv, OUT/lesions.csv, OUT/dicom/,
    OUT/masks/{body,lungs,lesions}/.
    """
    options = PhantomOptions(
        n=count,
        seed=seed,
        size=size,
        pixel_spacing_mm=pixel_spacing,
        prevalence=prevalence,
        modality=Modality(modality),
        monochrome1_fraction=monochrome1_fraction,
        ap_fraction=ap_fraction,
        sites=sites,
        site_intensity=site_intensity,
        site_prevalence=site_prevalence,
        strengths=ConfounderStrengths(
            marker=marker_strength, text=text_strength, border=border_strength
        ),
        mix=LesionMix(
            cnr_range=cnr_range,
            diameter_range_mm=diameter_range,
            easy_fraction=easy_fraction,
            opacity_fraction=opacity_fraction,
        ),
        backgrounds=backgrounds,
    )
    try:
        options.validate()
    except PhantomOptionsError as error:
        raise click.UsageError(str(error)) from error
    try:
        with click.progressbar(
            length=count,
            label="Generating phantoms",
            show_pos=True,
            file=io.StringIO() if quiet else None,
        ) as bar:
            summary = generate(
                options, out, workers=workers or os.cpu_count() or 1, on_image=lambda: bar.update(1)
            )
    except BackgroundsError as error:
        raise click.BadParameter(str(error), param_hint="--backgrounds") from error
    rate = summary.images / summary.seconds if summary.seconds > 0 else float("inf")
    click.echo(
        f"Wrote {summary.images} images ({summary.positives} with lesions, {summary.lesions} "
        f"lesions) to {out} in {summary.seconds:.1f} s ({rate:.1f} images/s)"
    )
