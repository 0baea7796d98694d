"""One-command recipes: the shipped demo classifier and the deliberately confounded one.

Each recipe generates its phantom sets with fixed seeds (reused when already there with the
same options) and trains with fixed settings, so the command in the model card rebuilds it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from service.training.classifier import (
    ClassifierTrainingConfig,
    ClassifierTrainingResult,
    train_classifier,
)
from service.training.classifier_loop import Augmentation, EpochLog
from service.training.lung_data import TrainingDataError
from service.training.phantom.confounders import ConfounderStrengths
from service.training.phantom.generator import PhantomOptions, generate
from service.training.phantom.lesions import LesionMix

DEMO_NAME = "vigil-cxr-demo"
DEMO_OUT = Path("models") / DEMO_NAME
DEMO_DATA_ROOT = Path("var") / "phantoms" / DEMO_NAME
OPTIONS_FILE = ".vigil-phantom-options.json"  # marks a folder this module generated
CONFOUNDERS = ("marker", "text", "border")

# Training sees more sites (12 looks of detector and processing) than the 3 of a default run,
# so the test set's three unseen sites are not a surprise. Seeds differ per set: no patient,
# site or lesion is shared between training, validation and test.
DEMO_SETS: dict[str, PhantomOptions] = {
    "train": PhantomOptions(n=3000, seed=101, sites=12),
    "validation": PhantomOptions(n=500, seed=102),
    "test": PhantomOptions(n=1000, seed=103),
}
DEMO_EPOCHS = 24
DEMO_SETTINGS = dict(
    size=256,
    epochs=DEMO_EPOCHS,
    batch_size=32,
    learning_rate=2e-3,
    weight_decay=1e-4,
    dropout=0.1,
    region_weight=1.0,
    patience=8,
    bf16=True,
)
# Lesions too faint and small to learn in a few minutes, so the burned-in confounder, present
# exactly on the positive images, is the only signal the model can use.
CONFOUNDED_MIX = LesionMix(cnr_range=(0.5, 0.8), diameter_range_mm=(5.0, 7.0))
# 256 px: a site's text token is a few pixels tall at 128 px and was not learnt there (measured:
# test AUROC 0.80 at 128 px against 1.0 at 256 px, 800 images, whole images only).
CONFOUNDED_SIZE = 256
CONFOUNDED_EPOCHS = 30
CONFOUNDED_IMAGES = 800


@dataclass(frozen=True)
class PreparedSets:
    """Phantom folders ready for training and how they were made."""

    folders: dict[str, Path]
    commands: tuple[str, ...]
    seconds: float


def phantom_command(folder: Path, options: PhantomOptions) -> str:
    """Return the ``vigil phantom`` command line that writes ``options`` into ``folder``."""
    default = PhantomOptions(n=options.n)
    words = ["vigil phantom", f"--out {folder}", f"--n {options.n}", f"--seed {options.seed}"]
    if options.size != default.size:
        words.append(f"--size {options.size}")
    if options.sites != default.sites:
        words.append(f"--sites {options.sites}")
    for name in CONFOUNDERS:
        value = getattr(options.strengths, name)
        if value:
            words.append(f"--{name}-strength {value:g}")
    if options.mix.cnr_range != default.mix.cnr_range:
        words.append("--cnr-range {:g} {:g}".format(*options.mix.cnr_range))
    if options.mix.diameter_range_mm != default.mix.diameter_range_mm:
        words.append("--diameter-range {:g} {:g}".format(*options.mix.diameter_range_mm))
    return " ".join(words)


def prepare_sets(
    root: Path,
    sets: dict[str, PhantomOptions],
    *,
    workers: int,
    on_progress: Callable[[str], None],
) -> PreparedSets:
    """Return phantom folders under ``root``, generated unless already there with the same
    options."""
    started = time.monotonic()
    folders: dict[str, Path] = {}
    commands = []
    for name, options in sets.items():
        folder = root / name
        folders[name] = folder
        commands.append(phantom_command(folder, options))
        marker = folder / OPTIONS_FILE
        wanted = {"fingerprint": options.fingerprint(), "n": options.n}
        if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == wanted:
            on_progress(f"{folder}: {options.n} phantoms already there")
            continue
        if folder.exists() and any(folder.iterdir()) and not marker.is_file():
            raise TrainingDataError(
                f"{folder} exists and was not written by this command; move it or choose "
                "another --data-root"
            )
        shutil.rmtree(folder, ignore_errors=True)
        on_progress(f"generating {options.n} phantoms (seed {options.seed}) into {folder}")
        generate(options, folder, workers=workers)
        marker.write_text(json.dumps(wanted), encoding="utf-8")
    return PreparedSets(folders, tuple(commands), time.monotonic() - started)


def train_demo_classifier(
    *,
    out: Path = DEMO_OUT,
    data_root: Path = DEMO_DATA_ROOT,
    workers: int = 2,
    threads: int = 2,
    max_minutes: float = 28.0,
    command: str = "vigil train demo-classifier",
    on_epoch: Callable[[EpochLog], None] = lambda _: None,
    on_progress: Callable[[str], None] = lambda _: None,
) -> ClassifierTrainingResult:
    """Return the result of generating the demo phantom sets and training vigil-cxr-demo."""
    prepared = prepare_sets(data_root, DEMO_SETS, workers=workers, on_progress=on_progress)
    config = ClassifierTrainingConfig(
        data_dir=prepared.folders["train"],
        val_dir=prepared.folders["validation"],
        test_dir=prepared.folders["test"],
        out=out,
        max_minutes=max_minutes,
        workers=workers,
        threads=threads,
        command=command,
        data_commands=prepared.commands,
        preparation_seconds=prepared.seconds,
        description=(
            "Demo region classifier for Vigil, trained on synthetic phantom chest radiographs."
        ),
        **DEMO_SETTINGS,  # type: ignore[arg-type]
    )
    return train_classifier(config, on_epoch=on_epoch, on_progress=on_progress)


def confounded_sets(confounder: str, n: int, seed: int) -> dict[str, PhantomOptions]:
    """Return the one phantom set of a confounded classifier: ``confounder`` at strength 1."""
    if confounder not in CONFOUNDERS:
        raise ValueError(f"confounder must be one of {', '.join(CONFOUNDERS)}, not {confounder!r}")
    strengths = replace(ConfounderStrengths(), **{confounder: 1.0})
    options = PhantomOptions(n=n, seed=seed, size=256, strengths=strengths, mix=CONFOUNDED_MIX)
    return {"all": options}


def build_confounded_classifier(
    out: Path,
    *,
    confounder: str = "marker",
    n: int = CONFOUNDED_IMAGES,
    seed: int = 7,
    epochs: int = CONFOUNDED_EPOCHS,
    size: int = CONFOUNDED_SIZE,
    data_root: Path | None = None,
    command: str = "vigil train confounded-classifier",
    on_epoch: Callable[[EpochLog], None] = lambda _: None,
    on_progress: Callable[[str], None] = lambda _: None,
) -> ClassifierTrainingResult:
    """Return a classifier that learnt a burned-in confounder tied to the label (strength 1).

    For the bias audit's tests, not a product model: its lesions are nearly invisible, so a
    high AUROC can only come from the confounder. No region loss, so nothing steers the map
    towards the lesions.
    """
    with _data_root(data_root) as root:
        prepared = prepare_sets(
            root, confounded_sets(confounder, n, seed), workers=2, on_progress=on_progress
        )
        config = ClassifierTrainingConfig(
            data_dir=prepared.folders["all"],
            out=out,
            size=size,
            epochs=epochs,
            batch_size=24,
            learning_rate=3e-3,
            region_weight=0.0,
            # Whole images only: a crop's label comes from the lesion masks, and the confounder
            # (what this model is to learn) is often outside the crop.
            crop=0,
            patience=epochs,
            augmentation=Augmentation(rotate_deg=4.0, translate=0.03, zoom=0.05),
            seed=seed,
            workers=0,
            command=command,
            data_commands=prepared.commands,
            preparation_seconds=prepared.seconds,
            description=(
                f"Deliberately confounded classifier: the burned-in {confounder} is present "
                "exactly on the images with lesions, and the lesions are nearly invisible. "
                "For testing Vigil's bias audit, never for analysis."
            ),
            intended_use="Tests of the bias audit only. Not a medical device.",
            disclaimer=(
                f"Deliberately confounded test model (learns the {confounder}), synthetic "
                "training data, not for clinical use."
            ),
            version="0.0.1",
        )
        return train_classifier(config, on_epoch=on_epoch, on_progress=on_progress)


@contextmanager
def _data_root(root: Path | None) -> Iterator[Path]:
    """Yield ``root``, or a temporary folder removed afterwards."""
    if root is not None:
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="vigil-confounded-") as tmp:
        yield Path(tmp)
