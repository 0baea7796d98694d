"""Quality and speed of the shipped model bundles, one function per model.

Not a test (pytest does not collect it). Run it by hand from the repository root:

    .venv/bin/python tests/benchmarks/models.py              # every model
    .venv/bin/python tests/benchmarks/models.py lungs        # one model

vigil-lungs: Dice and Hausdorff-95 (mean, 95 % bootstrap CI) on the held-out real test split at
each image's original size, through the registry exactly as the service runs it; then the
forward-pass time per image at the network's input size and the whole ``segment_lungs`` time.

vigil-cxr-demo: on 1,000 fresh phantoms with the default lesion mix (seed 9001, generated on the
first run into var/benchmarks/ and reused), AUROC (95 % CI), sensitivity and specificity at the
bundle's operating point, ECE, the region map's pointing game, and AUROC per CNR and lesion-size
bin; then the forward pass at the input size against a MONAI DenseNet121 at 224×224, both
median of 50 batch-1 runs after warm-up, in the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from monai.networks.nets import DenseNet121

from service.inference.lungs import segment_lungs
from service.inference.registry import LoadedModel, ModelRegistry
from service.training.classifier import operating_threshold
from service.training.classifier_data import display_pixels, load_set
from service.training.classifier_eval import BinResult, evaluate
from service.training.classifier_recipes import prepare_sets
from service.training.lung_data import (
    default_data_dir,
    load_real,
    read_manifest,
    split_ids,
)
from service.training.lungs import evaluate as evaluate_lungs
from service.training.metrics import bootstrap
from service.training.phantom.generator import PhantomOptions

REPO = Path(__file__).resolve().parents[2]
TIMING_RUNS = 20
CLASSIFIER = "vigil-cxr-demo"
# Never used for training or the model card's test set (seeds 101-103).
CLASSIFIER_TEST = PhantomOptions(n=1000, seed=9001)
CLASSIFIER_RUNS = 50


def forward_ms(model: LoadedModel, runs: int = TIMING_RUNS) -> tuple[float, float]:
    """Return the median and the fastest forward pass (ms) on one image at the input size."""
    x = torch.randn(1, 1, *model.input_size)
    times = []
    with torch.no_grad():
        model.network(x)  # warm-up: first call allocates
        for _ in range(runs):
            started = time.perf_counter()
            model.network(x)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times)


def bench_lungs(registry: ModelRegistry, data_dir: Path) -> None:
    """Print vigil-lungs' held-out Dice/HD95 with CIs and its speed."""
    model = registry.get("vigil-lungs")
    print(f"vigil-lungs {model.version} sha256 {model.sha256[:16]}… input {model.input_size}")
    split = split_ids([row["id"] for row in read_manifest(data_dir)])
    images = list(load_real(data_dir, split.test))
    started = time.perf_counter()
    scores = evaluate_lungs(model, images)
    per_image = (time.perf_counter() - started) / len(images) * 1000
    dice = bootstrap([s.dice for s in scores])
    hd95 = bootstrap([s.hd95 for s in scores])
    print(f"  held-out real test split: {dice.n} images ({data_dir})")
    print(f"  Dice   {dice.format(3)}   min {min(s.dice for s in scores):.3f}")
    print(f"  HD95   {hd95.format(1)} px   max {max(s.hd95 for s in scores):.1f} px")
    median, fastest = forward_ms(model)
    print(
        f"  forward pass {model.input_size[0]}x{model.input_size[1]}, batch 1: "
        f"median {median:.1f} ms, best {fastest:.1f} ms"
    )
    full = []
    for img in images[:5]:
        started = time.perf_counter()
        segment_lungs(model, img.image)
        full.append((time.perf_counter() - started) * 1000)
    print(
        f"  segment_lungs at original size (pre + forward + resize + post): "
        f"median {statistics.median(full):.1f} ms; with metrics {per_image:.0f} ms/image"
    )
    verdict = "meets" if dice.mean >= 0.90 else "MISSES"
    print(f"  acceptance Dice >= 0.90 on the held-out real split: {verdict}")


def median_forward_ms(network: torch.nn.Module, shape: tuple[int, ...], runs: int) -> float:
    """Return the median time (ms) of ``runs`` forward passes of a random input of ``shape``."""
    network.eval()
    x = torch.randn(*shape)
    times = []
    with torch.no_grad():
        for _ in range(3):
            network(x)  # warm-up: first calls allocate and pick kernels
        for _ in range(runs):
            started = time.perf_counter()
            network(x)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_classifier(registry: ModelRegistry, _lung_data: Path) -> None:
    """Print vigil-cxr-demo's held-out phantom scores and its speed against DenseNet121."""
    model = registry.get(CLASSIFIER)
    size = model.input_size[0]
    print(f"{CLASSIFIER} {model.version} sha256 {model.sha256[:16]}… input {model.input_size}")
    print(f"  {model.disclaimer}")
    name = f"{CLASSIFIER}-test"
    prepared = prepare_sets(
        REPO / "var" / "benchmarks",
        {name: CLASSIFIER_TEST},
        workers=2,
        on_progress=lambda message: print(f"  {message}"),
    )
    folder = prepared.folders[name]
    data = load_set(folder, size, workers=2)
    # The cached inputs are the bundle's own preprocessing of the service's display image.
    drift = 0.0
    for k, image_id in enumerate(data.ids[:5]):
        x = model.preprocess(display_pixels(folder / f"dicom/{image_id}.dcm"))
        drift = max(drift, float((x[0] - torch.from_numpy(data.inputs[k]).float()).abs().max()))
    threshold = operating_threshold(model)
    temperature = float(getattr(model.network, "temperature", 1.0))
    e = evaluate(model.network, data, threshold=threshold, temperature=temperature)
    print(
        f"  held-out phantoms: {e.images} images, {e.positives} with lesions "
        f"({prepared.commands[0]}; default lesion mix); cached inputs within {drift:.1e} of "
        "the bundle's preprocessing"
    )
    print(f"  AUROC        {e.auroc.format(3)}")
    print(f"  sensitivity  {e.sensitivity.format(3)}   at the operating point p ≥ {threshold:.3f}")
    print(f"  specificity  {e.specificity.format(3)}   (bundle's inference.json)")
    print(
        f"  ECE (15 bins) {e.ece:.4f} calibrated (T = {temperature:.3f}), "
        f"{e.ece_uncalibrated:.4f} before temperature scaling"
    )
    if e.pointing is not None:
        print(
            f"  pointing game {e.pointing.format(3)} on positives "
            f"(hit = map maximum within {e.pointing_tolerance_mm:.1f} mm of a lesion)"
        )
    for title, bins in (("AUROC by CNR", e.cnr_bins), ("AUROC by lesion size", e.size_bins)):
        print(f"  {title} (positives in the bin vs all {e.images - e.positives} negatives):")
        for b in bins:
            print(f"    {_bin_text(b)}")
    torch.set_num_threads(2)
    ours = median_forward_ms(model.network, (1, 1, size, size), CLASSIFIER_RUNS)
    densenet = DenseNet121(spatial_dims=2, in_channels=1, out_channels=1)
    theirs = median_forward_ms(densenet, (1, 1, 224, 224), CLASSIFIER_RUNS)
    print(
        f"  forward pass, batch 1, {torch.get_num_threads()} threads, median of "
        f"{CLASSIFIER_RUNS}: {CLASSIFIER} at {size}x{size} {ours:.1f} ms; MONAI DenseNet121 at "
        f"224x224 {theirs:.1f} ms; ratio {ours / theirs:.2f}"
    )
    checks = [
        ("AUROC >= 0.95", e.auroc.mean >= 0.95),
        ("ECE <= 0.05", e.ece <= 0.05),
        ("pointing game >= 0.90", e.pointing is not None and e.pointing.mean >= 0.90),
        ("forward <= 50 ms", ours <= 50.0),
    ]
    verdicts = [f"{check} {'meets' if ok else 'MISSES'}" for check, ok in checks]
    print("  acceptance: " + "; ".join(verdicts))


def _bin_text(result: BinResult) -> str:
    if result.auroc is None:
        return f"{result.name:<10} no positives"
    return f"{result.name:<10} {result.positives:4d} positives  AUROC {result.auroc.format(3)}"


BENCHES: dict[str, Callable[[ModelRegistry, Path], None]] = {
    "lungs": bench_lungs,
    "classifier": bench_classifier,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"any of {', '.join(BENCHES)} [all]")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--data", type=Path, default=None, help="real lung data folder")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    unknown = set(args.models) - set(BENCHES)
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {list(BENCHES)}")
    torch.set_num_threads(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    registry = ModelRegistry.scan(args.models_dir)
    for name, reason in registry.failures.items():
        print(f"  bundle {name} failed to load: {reason}")
    for name in args.models or list(BENCHES):
        BENCHES[name](registry, args.data or default_data_dir())


if __name__ == "__main__":
    main()
