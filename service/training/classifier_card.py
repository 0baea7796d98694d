"""A region classifier's model card (docs/README.md): data, intended use, metrics, limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.training.classifier_eval import ECE_BINS, BinResult, Evaluation
from service.training.classifier_loop import SLIVER, STRIDE, EpochLog
from service.training.metrics import Estimate

if TYPE_CHECKING:  # classifier.py imports this module
    from service.training.classifier import ClassifierTrainingConfig


@dataclass(frozen=True)
class CardFacts:
    """What the model card reports about one training run."""

    name: str
    config: ClassifierTrainingConfig
    widths: Sequence[int]
    counts: Mapping[str, int]
    epochs: Sequence[EpochLog]
    best_epoch: int
    stopped_because: str
    evaluation: Evaluation
    operating_point_rule: str
    wall_minutes: float
    machine: str


def classifier_model_card(facts: CardFacts) -> str:
    """Return the model card's Markdown."""
    c, e = facts.config, facts.evaluation
    best = facts.epochs[facts.best_epoch - 1] if facts.best_epoch else None
    a = c.augmentation
    augmentation = (
        f"rotation ±{a.rotate_deg:g}°, shift ±{a.translate:.0%}, zoom ±{a.zoom:.0%} (p 0.8); "
        f"gamma {max(1 - a.contrast, 0.05):.2f}–{1 + a.contrast:.2f}, brightness "
        f"±{a.brightness:g}, Gaussian noise σ {a.noise:g} (each p {a.probability:g})"
        if any((a.rotate_deg, a.translate, a.zoom, a.contrast, a.brightness, a.noise))
        else "none"
    )
    region = (
        f"on (weight {c.region_weight:g}): per-cell BCE on the region logits; a "
        f"{STRIDE}×{STRIDE}-pixel input cell holding lesion (phantom lesion masks) is positive, "
        f"cells of lesion-free images negative, cells with under {SLIVER:.0%} lesion ignored"
        if c.region_weight > 0
        else "off (image labels only)"
    )
    data_lines = [f"- `{command}`" for command in c.data_commands] or [
        f"- phantom folder `{c.data_dir}`"
        + (f", validation `{c.val_dir}`" if c.val_dir else "")
        + (f", test `{c.test_dir}`" if c.test_dir else "")
    ]
    split_note = (
        "Validation and test come from their own folders (different seeds: no patient, "
        "site or lesion shared with training)."
        if c.val_dir and c.test_dir
        else "Images without their own folder are split 70/15/15 by a hash of the image id."
    )
    n = facts.counts
    lines = [
        f"# {facts.name}: region classifier (demo)",
        "",
        f"> **{c.disclaimer}**",
        ">",
        "> Every output of this model carries that sentence. It has never seen a real patient.",
        "",
        f"{c.description} One forward pass gives the probability that the image shows a "
        f"finding ({', '.join(c.labels)}: a nodule or an ill-defined opacity) and a per-region "
        f"probability map at 1/16 of the {c.size}×{c.size} input.",
        "",
        "## Intended use",
        "",
        c.intended_use,
        "",
        "## Model",
        "",
        f"- `RegionClassifier` (MONAI residual units, widths {'-'.join(map(str, facts.widths))}, "
        f"stride 16) → dropout {c.dropout:g} → 1×1 conv → per-cell logits → log-sum-exp pooling "
        "(sharpness 4) → image logit.",
        f"- Calibration: temperature T = {e.temperature:.3f} fitted on the validation logits "
        "(minimum NLL) and built into the network (`temperature` in inference.json): image "
        "and region logits are divided by T, so the service's probabilities are the calibrated "
        "ones.",
        f"- Operating point: probability ≥ {e.threshold:.3f} ({facts.operating_point_rule}); "
        "written to inference.json as `operating_point`.",
        "",
        "## Training data",
        "",
        "Synthetic phantom chest radiographs written as DICOM by `vigil phantom` (default lesion "
        "mix unless the command says otherwise), decoded exactly as the service decodes "
        "(modality LUT, the file's VOI window, MONOCHROME1 inverted) and preprocessed by this "
        "bundle's own inference.json:",
        "",
        *data_lines,
        "",
        f"{split_note} Images: training {n['train']} ({n['train_positives']} with lesions), "
        f"validation {n['validation']} ({n['validation_positives']}), test {n['test']} "
        f"({n['test_positives']}).",
        "",
        "## Training",
        "",
        f"- Command: `{c.command}` (seed {c.seed}); {facts.machine}; wall time "
        f"{facts.wall_minutes:.1f} min for the whole command (data generation included).",
        f"- Image BCE + region loss, AdamW (learning rate {c.learning_rate:g}, cosine decay; "
        f"weight decay {c.weight_decay:g}; L1 {c.l1:g}), batch {c.batch_size}, "
        f"{'bf16 autocast' if c.bf16 else 'float32'}"
        + (f"; started from `{c.init_from}`" if c.init_from else "")
        + ("; backbone frozen" if c.freeze_backbone else "")
        + ".",
        f"- Region loss: {region}.",
        f"- Augmentation: {augmentation}.",
        f"- {len(facts.epochs)} epochs; stopped: {facts.stopped_because}. Best validation AUROC "
        + (
            f"{best.val_auroc:.4f} at epoch {best.epoch} (those weights are shipped)."
            if best
            else "n/a."
        ),
        "- Curves: [training_curves.png](training_curves.png) (image BCE and AUROC per epoch, "
        "train vs validation; train AUROC is on the augmented batches in training mode).",
        "",
        f"## Metrics (held-out test set, {e.images} images, {e.positives} with lesions)",
        "",
        "Scored on the written bundle loaded through the registry. 95 % CIs: percentile "
        "bootstrap over images (2000 resamples; AUROC resamples positives and negatives "
        "separately).",
        "",
        "| metric | value | 95 % CI | images |",
        "|---|---|---|---|",
        _row("AUROC", e.auroc),
        _row(f"sensitivity at p ≥ {e.threshold:.3f}", e.sensitivity),
        _row(f"specificity at p ≥ {e.threshold:.3f}", e.specificity),
        f"| ECE ({ECE_BINS} bins), calibrated | {e.ece:.4f} | | {e.images} |",
        f"| ECE ({ECE_BINS} bins), before temperature scaling | {e.ece_uncalibrated:.4f} | "
        f"| {e.images} |",
        _row(f"pointing game (tolerance {e.pointing_tolerance_mm:.1f} mm)", e.pointing),
        "",
        "Pointing game: on each positive image the maximum of the probability map (resampled to "
        "the image as the service does) hits when it lies within half a map cell's diagonal of "
        "a lesion pixel; the map's maximum is a cell centre, and a lesion anywhere in that cell "
        "is within that distance.",
        "",
        "AUROC by the conspicuity of a positive image's most visible lesion (highest "
        "contrast-to-noise ratio) and by its largest lesion, each bin against all negatives:",
        "",
        "| bin | positives | AUROC | 95 % CI |",
        "|---|---|---|---|",
        *[_bin_row(b) for b in (*e.cnr_bins, *e.size_bins)],
        "",
        "## Limits",
        "",
        "- Synthetic training data only: phantoms have simplified anatomy, noise and lesions. "
        "Nothing here says how the model would do on real radiographs; it is not for clinical "
        "use.",
        "- One finding class (nodule or opacity); no other pathology, devices or lateral views.",
        "- The metrics are on phantoms from the same generator: they measure the pipeline, not "
        "medical performance. Subtle lesions (CNR < 1, < 10 mm) are the hard cases: see the "
        "bins above.",
        "- The region map is coarse (one value per 16×16 input pixels).",
        "",
    ]
    return "\n".join(lines)


def _row(name: str, estimate: Estimate | None) -> str:
    if estimate is None:
        return f"| {name} | n/a | | 0 |"
    return (
        f"| {name} | {estimate.mean:.3f} | {estimate.low:.3f}–{estimate.high:.3f} | {estimate.n} |"
    )


def _bin_row(result: BinResult) -> str:
    if result.auroc is None:
        return f"| {result.name} | 0 | n/a | |"
    a = result.auroc
    return f"| {result.name} | {result.positives} | {a.mean:.3f} | {a.low:.3f}–{a.high:.3f} |"
