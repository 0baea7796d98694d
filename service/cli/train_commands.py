"""``vigil train lungs|classifier``: MONAI training that writes model bundles into models/."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from click.core import ParameterSource

from service.cli.train_classifier_commands import COMMANDS as CLASSIFIER_COMMANDS
from service.errors import VigilError


@click.group()
def train() -> None:
    """Train models and write them as MONAI bundles."""


for _command in CLASSIFIER_COMMANDS:
    train.add_command(_command)


@train.command()
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Real radiographs with lung masks [default: $VIGIL_CXR_LUNGS_DIR or the shared set].",
)
@click.option(
    "--phantoms",
    "phantom_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A `vigil phantom` output folder to mix into training (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("models/vigil-lungs"),
    show_default=True,
    help="Bundle folder to write (replaced only once the new bundle validates).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=150, show_default=True)
@click.option(
    "--size",
    type=click.IntRange(min=32),
    default=256,
    show_default=True,
    help="Network input size (square; a multiple of 16).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0.1),
    default=25.0,
    show_default=True,
    help="Stop training early enough to finish the whole command by then.",
)
def lungs(
    data_dir: Path | None,
    phantom_dirs: tuple[Path, ...],
    out: Path,
    epochs: int,
    size: int,
    seed: int,
    max_minutes: float,
) -> None:
    """Train the lung-field UNet and write the bundle with its model card and metrics."""
    # Imported here: torch and MONAI take seconds to import, and `vigil --help` should not wait.
    from service.training.lung_data import default_data_dir
    from service.training.lung_loop import EpochLog
    from service.training.lungs import LungTrainingConfig, train_lungs

    if size % 16:
        raise click.BadParameter(
            "must be a multiple of 16 (four stride-2 levels)", param_hint="--size"
        )

    def show(entry: EpochLog) -> None:
        click.echo(
            f"epoch {entry.epoch:3d}/{epochs}  loss {entry.loss:.4f}  "
            f"val Dice {entry.val_dice:.4f}{' *' if entry.best else '  '}  "
            f"lr {entry.learning_rate:.0e}  {entry.seconds:.1f} s"
        )

    config = LungTrainingConfig(
        data_dir=data_dir or default_data_dir(),
        phantom_dirs=phantom_dirs,
        out=out,
        epochs=epochs,
        size=size,
        seed=seed,
        max_minutes=max_minutes,
        command=_command_line(click.get_current_context()),
    )
    click.echo(
        f"training {out.name} on {config.data_dir}"
        + (f" + phantoms {', '.join(map(str, phantom_dirs))}" if phantom_dirs else "")
    )
    try:
        result = train_lungs(config, on_epoch=show)
    except VigilError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(
        f"best epoch {result.best_epoch} ({result.stopped_because}); "
        f"held-out real test ({result.dice.n} images): Dice {result.dice.format()}, "
        f"HD95 {result.hd95.format(1)} px"
    )
    click.echo(
        f"wrote {out} (version {result.model.version}, sha256 {result.model.sha256[:12]}…) "
        f"in {result.wall_seconds / 60:.1f} min"
    )


def _command_line(ctx: click.Context) -> str:
    """Return the command as typed (options given on the command line), for the model card."""
    words = ctx.command_path.split()
    for param in ctx.command.params:
        if (
            param.name is None
            or ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE
        ):
            continue
        flag = param.opts[0]
        value = ctx.params[param.name]
        for item in value if isinstance(value, tuple) else (value,):
            words += [flag, shlex.quote(str(item))]
    return " ".join(words)
