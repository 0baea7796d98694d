"""How fast `vigil phantom` writes images at the default size (512², 0.7 mm).

Not a test (pytest does not collect it). Run it by hand from the repository root:

    .venv/bin/python tests/benchmarks/phantom_speed.py               # 200 images, 1 and all cores
    .venv/bin/python tests/benchmarks/phantom_speed.py --n 1000 --workers 2

Each run writes a full set (DICOM, masks, tables) into a fresh temporary folder, so the time
includes file writing. Worker processes start inside the timed region.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from service.training.phantom.generator import PhantomOptions, generate


def main() -> None:
    """Print images per second for each requested worker count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images per run")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument(
        "--workers", type=int, nargs="*", default=sorted({1, os.cpu_count() or 1}),
        help="worker counts to time",
    )  # fmt: skip
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(
        f"{machine}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the runs"
    )
    options = PhantomOptions(n=args.n, seed=0, size=args.size)
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as folder:
            started, cpu_started = time.perf_counter(), time.process_time()
            summary = generate(options, Path(folder), workers=workers)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        # In-process CPU time per image shows the cost even on a machine busy with other work.
        cpu_note = f", {1000 * cpu / args.n:.0f} ms CPU per image" if workers == 1 else ""
        print(
            f"{args.n} images at {args.size}² with {workers} worker(s): {seconds:.1f} s, "
            f"{summary.images / seconds:.1f} images/s{cpu_note}"
        )


if __name__ == "__main__":
    main()
