"""The lung segmenter's metadata and model card (docs/README.md): data, use, metrics, limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.inference.registry import ModelKind
from service.training.bundle import BundleInfo, display_input_format
from service.training.lung_data import TEST_EVERY, VALIDATION_EVERY, Split
from service.training.lung_loop import EpochLog
from service.training.metrics import Estimate

DISCLAIMER = (
    "Lung-field segmentation for research and demonstration, trained on a small public "
    "COVID-19 data set: not for clinical use."
)
DATA_SOURCE = (
    "97 frontal chest radiographs from the COVID-19 Image Data Collection (Cohen et al. 2020; "
    "rows licensed CC BY 3.0, CC BY 4.0 or 'listed as authorized for everyone') with V7 Labs "
    "lung masks (CC BY 4.0, as distributed with torchxrayvision)"
)
PHANTOM_SOURCE = " plus Vigil's synthetic phantom radiographs (vigil phantom)"


@dataclass(frozen=True)
class CardFacts:
    """What the model card reports about one training run."""

    split: Split
    manifest: Sequence[Mapping[str, str]]
    counts: Mapping[str, int]
    epochs: Sequence[EpochLog]
    best_epoch: int
    stopped_because: str
    dice: Estimate
    hd95: Estimate
    scores: Sequence[tuple[str, float, float]]
    size: int
    seed: int
    wall_minutes: float
    command: str
    machine: str
    phantom_dirs: Sequence[str]


def lung_bundle_info(version: str, size: int, *, with_phantoms: bool) -> BundleInfo:
    """Return the metadata of the lung segmenter bundle at input ``size``."""
    return BundleInfo(
        version=version,
        changelog={version: "MONAI UNet lung-field segmenter trained by `vigil train lungs`"},
        task="Lung-field segmentation of frontal chest radiographs",
        description=(
            "2D MONAI UNet that outlines both lung fields (including lung behind the heart) on "
            "PA/AP chest radiographs. It gives the 'relevant region' for Vigil's bias audit."
        ),
        authors="Vigil contributors",
        copyright="Copyright (c) Vigil contributors",
        data_source=DATA_SOURCE + (PHANTOM_SOURCE if with_phantoms else ""),
        data_type="8-bit PNG and DICOM CR, frontal chest radiographs",
        image_classes="single channel radiograph, display-oriented (higher = brighter)",
        label_classes="single channel binary mask: 1 = lung field, 0 = elsewhere",
        pred_classes="single channel logit; sigmoid >= 0.5 = lung field",
        intended_use=(
            "Locating the lung fields to audit where a classifier's heatmaps fall. Research and "
            "demonstration only; not a medical device, not for diagnosis."
        ),
        network_data_format={
            "inputs": {"image": display_input_format(size)},
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": 1,
                    "spatial_shape": [size, size],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": {"0": "lung"},
                }
            },
        },
        kind=ModelKind.LUNG_SEGMENTER,
        labels=("lung",),
        input_size=(size, size),
        preprocessing=(
            "2D image, higher = brighter (MONOCHROME1 inverted); intensities mapped from the "
            f"0.5–99.5 percentiles to [-1, 1] and clipped; whole image resized to {size}×{size} "
            "(area interpolation, aspect ratio not kept). The probability map is resized back "
            "to the image; post-processing keeps the two largest components and fills holes."
        ),
        disclaimer=DISCLAIMER,
    )


def lung_model_card(facts: CardFacts) -> str:
    """Return the model card's Markdown."""
    rows = {row["id"]: row for row in facts.manifest}
    phantoms = sum(n for key, n in facts.counts.items() if key.startswith("phantoms:"))
    skipped = sum(n for key, n in facts.counts.items() if key.startswith("phantoms_skipped:"))
    phantom_text = (
        f"{phantoms} synthetic phantom radiographs from `vigil phantom` "
        f"({', '.join(facts.phantom_dirs)}; lungs = mask > 0) were mixed into training"
        + (
            f"; left out: {skipped} drawn over held-out real images (test or validation)."
            if skipped
            else "."
        )
        if facts.phantom_dirs
        else "No phantom radiographs were used: this model is trained on the real images only."
    )
    best = facts.epochs[facts.best_epoch - 1] if facts.best_epoch else None
    lines = [
        "# vigil-lungs: lung-field segmenter",
        "",
        f"> {DISCLAIMER}",
        "",
        "A MONAI 2D UNet (channels 16-32-64-128-256, strides 2, two residual units per level, "
        f"one output channel) at {facts.size}×{facts.size} input. It outlines both lung fields "
        "on frontal (PA/AP) chest radiographs; `service.inference.lungs.segment_lungs` maps the "
        "result back to the image's size and splits it into the patient's right and left lung.",
        "",
        "## Intended use",
        "",
        "The 'relevant region' for Vigil's bias audit: whether a classifier's heatmap falls inside "
        "the lungs or on markers, text and borders. Research and demonstration only. Not a "
        "medical device; not for diagnosis, treatment or any clinical decision.",
        "",
        "## Training data",
        "",
        f"- Real: {DATA_SOURCE}.",
        f"- Fixed split of the 97 real images by sorted id: every {TEST_EVERY}th id is the "
        f"held-out test set ({len(facts.split.test)} images); of the rest every "
        f"{VALIDATION_EVERY}th is validation for early stopping ({len(facts.split.validation)}), "
        f"the remaining {len(facts.split.train)} are training images.",
        f"- Test ids: {', '.join(facts.split.test)}.",
        f"- Validation ids: {', '.join(facts.split.validation)}.",
        f"- {phantom_text}",
        "- All real images show COVID-19 pneumonia (PA, AP and AP supine): no normal chests, "
        "no children, few sources.",
        "",
        "## Training",
        "",
        f"- Command: `{facts.command}` (seed {facts.seed}); {facts.machine}; "
        f"wall time {facts.wall_minutes:.1f} min.",
        "- To retrain (phantoms first, then this model) see `models/README.md`.",
        "- DiceCE loss, Adam (learning rate 1e-3, halved on validation plateaus), batch 8; "
        "random rotation ±12°, zoom ±15 %, shift ±8 %, gamma, intensity scale/shift, noise, blur.",
        f"- {len(facts.epochs)} epochs; stopped: {facts.stopped_because}. Best validation Dice "
        + (
            f"{best.val_dice:.3f} at epoch {best.epoch} (those weights are shipped)."
            if best
            else "n/a."
        ),
        "- Curves: [training_curves.png](training_curves.png) (loss, validation Dice per epoch).",
        "",
        "## Metrics (held-out real test split)",
        "",
        "Scored through the registry on the written bundle, at each image's original size "
        "(≤ 768 px on the longer side), after post-processing. Pixel spacing is unknown, so "
        "Hausdorff-95 is in pixels. 95 % CIs: percentile bootstrap over images (2000 resamples).",
        "",
        "| metric | mean | 95 % CI | images |",
        "|---|---|---|---|",
        f"| Dice | {facts.dice.mean:.3f} | {facts.dice.low:.3f}–{facts.dice.high:.3f} "
        f"| {facts.dice.n} |",
        f"| Hausdorff-95 (pixels) | {facts.hd95.mean:.1f} | {facts.hd95.low:.1f}–"
        f"{facts.hd95.high:.1f} | {facts.hd95.n} |",
        "",
        "<details><summary>Per image</summary>",
        "",
        "| id | view | Dice | HD95 (px) |",
        "|---|---|---|---|",
        *[
            f"| {i} | {rows.get(i, {}).get('view', '')} | {d:.3f} | {h:.1f} |"
            for i, d, h in facts.scores
        ],
        "",
        "</details>",
        "",
        "## Limits",
        "",
        "- Small training set (tens of adult COVID-19 radiographs): expect worse results on "
        "children, lateral views, devices-heavy ICU films, and other populations or detectors.",
        "- Dense consolidation can be left out of the mask; the mask includes lung behind the "
        "heart only as far as the training masks did.",
        "- Left/right splitting assumes a frontal view displayed in the usual orientation.",
        "- The metrics come from about 20 images: the confidence intervals are wide.",
        "",
        "## Licences and attributions",
        "",
        "- Code: Apache-2.0 (Vigil). The weights are derived from CC BY data: redistribute them "
        "with this model card, which carries the attributions below.",
        "- Images: COVID-19 Image Data Collection — J. P. Cohen, P. Morrison, L. Dao, K. Roth, "
        'T. Q. Duong, M. Ghassemi, "COVID-19 Image Data Collection: Prospective Predictions Are '
        "the Future\", 2020. Each image's own licence and source publication are listed below.",
        "- Lung masks: V7 Labs COVID-19 X-ray lung annotations, CC BY 4.0, as distributed with "
        "the torchxrayvision package (Apache-2.0).",
        "",
        "<details><summary>Image credits (id, licence, source)</summary>",
        "",
        "| id | licence | source |",
        "|---|---|---|",
        *[f"| {row['id']} | {row.get('licence', '')} | {_source(row)} |" for row in facts.manifest],
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def _source(row: Mapping[str, str]) -> str:
    doi = row.get("doi", "").strip()
    if doi:
        return f"doi:{doi}"
    return row.get("url", "").strip()
