"""``vigil train classifier | demo-classifier | confounded-classifier`` (added to ``vigil train``).

Torch and MONAI are imported inside the commands: they take seconds to import, and
``vigil --help`` should not wait for them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from service.errors import VigilError

if TYPE_CHECKING:
    from service.training.classifier import ClassifierTrainingResult
    from service.training.classifier_loop import EpochLog

FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)
NEW_FOLDER = click.Path(file_okay=False, path_type=Path)


@click.command()
@click.option("--data", "data_dir", type=FOLDER, required=True, help="A `vigil phantom` folder.")
@click.option("--val", "val_dir", type=FOLDER, default=None, help="Validation phantom folder.")
@click.option("--test", "test_dir", type=FOLDER, default=None, help="Test phantom folder.")
@click.option("--out", type=NEW_FOLDER, default=None, help="Bundle folder [models/NAME].")
@click.option("--name", default=None, help="Bundle name (its folder name under models/).")
@click.option("--version", default="1.0.0", show_default=True, help="Bundle version.")
@click.option(
    "--size",
    type=click.IntRange(32, 1024),
    default=256,
    show_default=True,
    help="Network input size (square; a multiple of 16).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(2, 1024), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(0, 1, min_open=True), default=2e-3, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0, 1), default=1e-4, show_default=True)
@click.option(
    "--l1",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="L1 penalty on the convolution kernels.",
)
@click.option("--dropout", type=click.FloatRange(0, 0.9), default=0.1, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True)
@click.option(
    "--rotate",
    type=click.FloatRange(0, 45),
    default=8.0,
    show_default=True,
    help="± degrees (0 = off).",
)
@click.option(
    "--translate",
    type=click.FloatRange(0, 0.3),
    default=0.05,
    show_default=True,
    help="± share of the image size.",
)
@click.option(
    "--zoom",
    type=click.FloatRange(0, 0.5),
    default=0.08,
    show_default=True,
    help="± magnification.",
)
@click.option(
    "--contrast",
    type=click.FloatRange(0, 0.9),
    default=0.25,
    show_default=True,
    help="Gamma drawn from [1-c, 1+c].",
)
@click.option(
    "--brightness",
    type=click.FloatRange(0, 0.5),
    default=0.08,
    show_default=True,
    help="± intensity shift (inputs span [-1, 1]).",
)
@click.option(
    "--noise",
    type=click.FloatRange(0, 0.3),
    default=0.02,
    show_default=True,
    help="Gaussian noise standard deviation.",
)
@click.option(
    "--region-loss/--no-region-loss",
    default=True,
    show_default=True,
    help="Per-cell loss from the phantoms' lesion masks.",
)
@click.option(
    "--region-weight", type=click.FloatRange(0, 100, min_open=True), default=1.0, show_default=True
)
@click.option(
    "--region-positive-weight",
    type=click.FloatRange(1, 1000),
    default=10.0,
    show_default=True,
    help="Weight of lesion cells in the region loss.",
)
@click.option(
    "--local-contrast",
    type=click.FloatRange(0, 100),
    default=8.0,
    show_default=True,
    help="Gain of the network's local-contrast input channel (0 = none).",
)
@click.option(
    "--crop",
    type=click.IntRange(0, 1024),
    default=128,
    show_default=True,
    help="Train on random CROP×CROP windows first (a multiple of 16; 0 = whole images only).",
)
@click.option(
    "--crop-epochs",
    type=click.IntRange(min=0),
    default=None,
    help="Epochs on crops before whole images [all but the last 10 %].",
)
@click.option("--init-from", type=FOLDER, default=None, help="Start from this bundle's backbone.")
@click.option("--freeze-backbone", is_flag=True, help="Train the head only (needs --init-from).")
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Stop after this many epochs without a better validation AUROC.",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0.5),
    default=25.0,
    show_default=True,
    help="Stop training early enough to finish the whole command by then.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(0, 32),
    default=1,
    show_default=True,
    help="Processes for decoding and augmentation.",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Torch threads for training.",
)
@click.option(
    "--bf16/--fp32",
    default=False,
    show_default=True,
    help="bfloat16 autocast while training (about 2× faster on CPUs with AVX-512 "
    "BF16; the bundle runs in float32).",
)
def classifier(
    data_dir: Path,
    val_dir: Path | None,
    test_dir: Path | None,
    out: Path | None,
    name: str | None,
    version: str,
    size: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    l1: float,
    dropout: float,
    augment: bool,
    rotate: float,
    translate: float,
    zoom: float,
    contrast: float,
    brightness: float,
    noise: float,
    region_loss: bool,
    region_weight: float,
    region_positive_weight: float,
    local_contrast: float,
    crop: int,
    crop_epochs: int | None,
    init_from: Path | None,
    freeze_backbone: bool,
    patience: int,
    max_minutes: float,
    seed: int,
    workers: int,
    threads: int,
    bf16: bool,
) -> None:
    """Train a region classifier on phantom folders; write its bundle and model card."""
    from service.training.classifier import ClassifierTrainingConfig, train_classifier
    from service.training.classifier_loop import Augmentation

    bundle = _bundle_folder(out, name)
    if size % 16:
        raise click.BadParameter("must be a multiple of 16 (the map's stride)", param_hint="--size")
    if crop % 16 or crop > size:
        raise click.BadParameter(
            f"must be a multiple of 16 and at most --size ({size}); 0 = no crops",
            param_hint="--crop",
        )
    if freeze_backbone and init_from is None:
        raise click.UsageError("--freeze-backbone needs --init-from BUNDLE")
    augmentation = (
        Augmentation(rotate, translate, zoom, contrast, brightness, noise)
        if augment
        else Augmentation.off()
    )
    config = ClassifierTrainingConfig(
        data_dir=data_dir,
        val_dir=val_dir,
        test_dir=test_dir,
        out=bundle,
        size=size,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        weight_decay=weight_decay,
        l1=l1,
        dropout=dropout,
        augmentation=augmentation,
        region_weight=region_weight if region_loss else 0.0,
        region_positive_weight=region_positive_weight,
        local_contrast=local_contrast,
        crop=crop,
        crop_epochs=crop_epochs,
        init_from=init_from,
        freeze_backbone=freeze_backbone,
        patience=patience,
        max_minutes=max_minutes,
        seed=seed,
        version=version,
        workers=workers,
        threads=threads,
        bf16=bf16,
        command=_typed_command(),
    )
    click.echo(f"training {bundle.name} on {data_dir}")
    _run(lambda: train_classifier(config, _epoch_printer(epochs), click.echo), bundle)


@click.command("demo-classifier")
@click.option("--out", type=NEW_FOLDER, default=Path("models/vigil-cxr-demo"), show_default=True)
@click.option(
    "--data-root",
    type=NEW_FOLDER,
    default=Path("var/phantoms/vigil-cxr-demo"),
    show_default=True,
    help="Where the train/validation/test phantoms go "
    "(reused when already generated with the same options).",
)
@click.option("--workers", type=click.IntRange(1, 32), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--max-minutes", type=click.FloatRange(min=1), default=28.0, show_default=True)
def demo_classifier(
    out: Path, data_root: Path, workers: int, threads: int, max_minutes: float
) -> None:
    """Generate the demo phantom sets (fixed seeds) and train vigil-cxr-demo with the shipped
    settings: demo model, synthetic training data, not for clinical use."""
    from service.training.classifier_recipes import DEMO_EPOCHS, train_demo_classifier

    click.echo(f"training {out.name} (demo model, synthetic training data, not for clinical use)")
    _run(
        lambda: train_demo_classifier(
            out=out,
            data_root=data_root,
            workers=workers,
            threads=threads,
            max_minutes=max_minutes,
            command=_typed_command(),
            on_epoch=_epoch_printer(DEMO_EPOCHS),
            on_progress=click.echo,
        ),
        out,
    )


@click.command("confounded-classifier")
@click.option("--out", type=NEW_FOLDER, required=True, help="Bundle folder to write.")
@click.option(
    "--confounder",
    type=click.Choice(["marker", "text", "border"]),
    default="marker",
    show_default=True,
    help="The burned-in object tied to the label.",
)
@click.option(
    "--n",
    "count",
    type=click.IntRange(min=60),
    default=800,
    show_default=True,
    help="Phantom images (split 70/15/15).",
)
@click.option("--seed", type=click.IntRange(min=0), default=7, show_default=True)
@click.option(
    "--data-root",
    type=NEW_FOLDER,
    default=None,
    help="Keep the phantoms here [default: a temporary folder].",
)
def confounded_classifier(
    out: Path, confounder: str, count: int, seed: int, data_root: Path | None
) -> None:
    """Train a deliberately confounded classifier (the confounder is present exactly on the
    positive images, strength 1.0) for the bias audit's tests. Not a product model."""
    from service.training.classifier_recipes import CONFOUNDED_EPOCHS, build_confounded_classifier

    click.echo(f"training {out.name}: confounded by the {confounder} (for bias-audit tests)")
    _run(
        lambda: build_confounded_classifier(
            out,
            confounder=confounder,
            n=count,
            seed=seed,
            data_root=data_root,
            command=_typed_command(),
            on_epoch=_epoch_printer(CONFOUNDED_EPOCHS),
            on_progress=click.echo,
        ),
        out,
    )


COMMANDS = (classifier, demo_classifier, confounded_classifier)


def _bundle_folder(out: Path | None, name: str | None) -> Path:
    """Return the bundle folder from --out and/or --name (they must agree)."""
    if out is None and name is None:
        raise click.UsageError("give --out models/NAME or --name NAME")
    if out is None:
        assert name is not None
        return Path("models") / name
    if name is not None and out.name != name:
        raise click.UsageError(f"--name {name} disagrees with --out {out} (the name is its folder)")
    return out


def _typed_command() -> str:
    """Return the command as typed, for the model card."""
    from service.cli.train_commands import _command_line  # that module imports this one

    return _command_line(click.get_current_context())


def _epoch_printer(epochs: int) -> Callable[[EpochLog], None]:
    """Return a callback that prints one line per epoch."""

    def show(entry: EpochLog) -> None:
        click.echo(
            f"epoch {entry.epoch:3d}/{epochs}  loss {entry.train_loss:.4f}  "
            f"train AUROC {entry.train_auroc:.3f}  val loss {entry.val_loss:.4f}  "
            f"val AUROC {entry.val_auroc:.4f}{' *' if entry.best else '  '}  "
            f"lr {entry.learning_rate:.1e}  {entry.seconds:.0f} s"
        )

    return show


def _run(train: Callable[[], ClassifierTrainingResult], out: Path) -> None:
    """Run a training function and print its summary; expected failures are usage errors."""
    try:
        result = train()
    except VigilError as exc:
        raise click.ClickException(exc.message) from exc
    e = result.evaluation
    click.echo(
        f"best epoch {result.best_epoch} ({result.stopped_because}); temperature "
        f"{result.temperature:.3f}; operating point p ≥ {result.threshold:.3f}"
    )
    click.echo(
        f"test ({e.images} images, {e.positives} with lesions): AUROC {e.auroc.format()}, "
        f"sensitivity {e.sensitivity.mean:.3f}, specificity {e.specificity.mean:.3f}, "
        f"ECE {e.ece:.4f} (before scaling {e.ece_uncalibrated:.4f})"
        + (f", pointing game {e.pointing.format()}" if e.pointing else "")
    )
    click.echo(
        f"wrote {out} (version {result.model.version}, sha256 {result.model.sha256[:12]}…) "
        f"in {result.wall_seconds / 60:.1f} min"
    )
