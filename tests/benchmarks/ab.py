"""Interleaved A/B: Vigil at two revisions, or Vigil and Orthanc, side by side, same load.

Not a test (pytest does not collect it). Run it by hand from the repository root:

    .venv/bin/python -m tests.benchmarks.ab --base HEAD~3      # the working tree vs HEAD~3
    .venv/bin/python -m tests.benchmarks.ab --orthanc      # the working tree vs Orthanc
    .venv/bin/python -m tests.benchmarks.ab --base dd9d93a --blocks 12 --loads wado,qido,me

Why: this kind of host drifts (shared cores, steal time): the same server measured a few
minutes apart moves by 20% or more, so two runs of ``ingest.py`` do not tell whether a
change helped. Here both servers run at once, each on its own fresh SQLite archive, and the
load alternates between them in short blocks, the order flipping every block; each figure
is the median over the blocks, and the ratio compares the two medians. Server CPU is read
from /proc in 10 ms ticks: keep --per and --calls large enough for it to mean something.

With ``--orthanc`` the base is Debian's Orthanc with its DICOMweb plugin, on SQLite made as
durable as Vigil's (synchronous=FULL, as in ``ingest.py``): the comparison behind the
benchmark's SQLite ratios (which ``ingest.py`` also makes side by side, in blocks), with
loads of your choosing.

Both servers share the machine's memory: pages one releases are soon reused by the other.
On this host a page of cache taken from memory not used lately costs a host fault, and
Vigil releases its files' pages once they are on disk (``writeback.release_cached_pages``),
so here Orthanc's writes can land in pages Vigil released. ``ingest.py`` runs its targets
side by side too, so the same holds there. How much it matters is not known: a 3 s pause
before each block (time for freed memory to go back to the host) left Orthanc's CPU per
512² instance where it was (3.6 ms, 4 client threads; 2026-11-29).

The base revision is checked out in a temporary git worktree and served with this virtual
environment: its dependencies must be the ones installed here.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.benchmarks.ingest import (
    QIDO_HEADERS,
    REPO,
    WADO_HEADERS,
    Endpoint,
    InstanceFactory,
    LatencyProbe,
    StowRun,
    Synthetic,
    orthanc_binary,
    orthanc_sqlite,
    qido_check,
    stow,
    tree_cpu_seconds,
    vigil_server,
    wado_check,
    wait_until_quiet,
)

LOADS = ("stow1", "stow4", "wado", "qido", "me")


@dataclass
class Side:
    """One server under comparison and its per-block figures, by load."""

    label: str
    endpoint: Endpoint
    kept: Synthetic  # an instance stored before timing, for the reads
    speed: dict[str, list[float]] = field(default_factory=dict)  # inst/s, or ms per call
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # server CPU per item
    # STOW loads: the machine's idle share, and how busy the server's busiest thread was
    idle: dict[str, list[float]] = field(default_factory=dict)
    busiest: dict[str, list[float]] = field(default_factory=dict)

    def add(self, load: str, speed: float, cpu_ms: float) -> None:
        self.speed.setdefault(load, []).append(speed)
        self.cpu_ms.setdefault(load, []).append(cpu_ms)

    def add_threads(self, load: str, run: StowRun) -> None:
        self.idle.setdefault(load, []).append(run.machine.idle_share)
        self.busiest.setdefault(load, []).append(run.busiest_thread_share)


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """Check a revision out in a temporary git worktree; remove it afterwards."""
    with tempfile.TemporaryDirectory(prefix="vigil-ab-") as folder:
        path = Path(folder) / "tree"
        git = ["git", "-C", str(REPO)]
        subprocess.run([*git, "worktree", "add", "--detach", str(path), revision], check=True)
        try:
            yield path
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=False)


def get_block(
    endpoint: Endpoint,
    url: str,
    headers: dict[str, str],
    calls: int,
    check: Callable[[httpx.Response], str | None],
) -> tuple[float, float]:
    """Return the median latency (ms) of `calls` GETs and the server CPU (ms) per call."""
    probe = LatencyProbe(endpoint, url, headers, check)
    try:
        if (unavailable := probe.warm_up()) is not None:  # the connection is open by then
            raise RuntimeError(f"{url}: {unavailable}")
        cpu = tree_cpu_seconds(endpoint.pid)
        probe.block(calls)
        cpu = tree_cpu_seconds(endpoint.pid) - cpu
    finally:
        probe.close()
    if probe.failures:
        raise RuntimeError(f"{url}: {probe.failures[0]}")
    return statistics.median(probe.times) * 1000, cpu / calls * 1000


def _me_check(response: httpx.Response) -> str | None:
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def run_block(side: Side, load: str, factory: InstanceFactory, args: argparse.Namespace) -> None:
    endpoint = side.endpoint
    if load.startswith("stow"):
        run = stow(endpoint, factory.batch(args.per, args.side), int(load.removeprefix("stow")))
        if run.failures:
            raise RuntimeError(f"{side.label}: {run.failures[0]}")
        side.add(load, run.rate, run.server_cpu / run.instances * 1000)
        side.add_threads(load, run)
        return
    item, dicomweb = side.kept, endpoint.dicomweb
    if load == "wado":
        url = f"{dicomweb}/studies/{item.study}/series/{item.series}/instances/{item.sop}"
        figures = get_block(endpoint, url, WADO_HEADERS, args.calls, wado_check(item.size))
    elif load == "qido":
        url = f"{dicomweb}/studies?PatientID={item.patient_id}"
        figures = get_block(endpoint, url, QIDO_HEADERS, args.calls, qido_check)
    else:
        url = dicomweb.removesuffix("/dicomweb") + "/api/v1/me"
        figures = get_block(endpoint, url, {}, args.calls, _me_check)
    side.add(load, *figures)


def report(base: Side, head: Side, loads: list[str], *, against_orthanc: bool = False) -> None:
    print(
        "\nmedians over blocks; ratio = head/base (rate: higher is better; latency and CPU: "
        f"lower is better)\n{'load':8} {'base':>24} {'head':>24}  ratio"
    )
    for load in loads:
        stow_load = load.startswith("stow")
        unit = "inst/s" if stow_load else "ms"
        cells = []
        for side in (base, head):
            speed, cpu = statistics.median(side.speed[load]), statistics.median(side.cpu_ms[load])
            cells.append(f"{speed:7.1f} {unit}, CPU {cpu:5.2f} ms")
        name = "rate" if stow_load else "latency"
        ratios = f"{name} {_ratio(head.speed[load], base.speed[load])}, "
        ratios += f"CPU {_ratio(head.cpu_ms[load], base.cpu_ms[load])}"
        print(f"{load:8} {cells[0]:>24} {cells[1]:>24}  {ratios}")
    if against_orthanc:
        # As ingest.py reports it: throughput Vigil/Orthanc, latency Orthanc/Vigil.
        goal = [
            f"{load} {_ratio(head.speed[load], base.speed[load])}"
            if load.startswith("stow")
            else f"{load} {_ratio(base.speed[load], head.speed[load])}"
            for load in loads
        ]
        print(f"\nVigil/Orthanc as ingest.py reports it (>= 1.0 meets the goal): {', '.join(goal)}")
    if stow_loads := [load for load in loads if load.startswith("stow")]:
        # A server whose busiest thread is on CPU nearly all the time while the machine
        # idles waits for that thread (its event loop, say): more CPUs would not help it.
        print("\nSTOW medians: machine idle; server's busiest thread on CPU (share of the time)")
        for load in stow_loads:
            cells = [
                f"idle {statistics.median(side.idle[load]):.0%}, "
                f"busiest thread {statistics.median(side.busiest[load]):.0%}"
                for side in (base, head)
            ]
            print(f"{load:8} {cells[0]:>34} {cells[1]:>34}")
    print("\nper block (base | head):")
    for load in loads:
        values = [" ".join(f"{v:.1f}" for v in s.speed[load]) for s in (base, head)]
        print(f"  {load:8} {values[0]} | {values[1]}")


def _ratio(head: list[float], base: list[float]) -> str:
    below = statistics.median(base)
    # CPU comes in 10 ms ticks: a short block can read 0.
    return f"{statistics.median(head) / below:.2f}" if below > 0 else "n/a"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", help="git revision to compare with")
    base.add_argument(
        "--orthanc", action="store_true", help="compare with Orthanc on SQLite instead"
    )
    parser.add_argument("--head", help="git revision to compare (default: the working tree)")
    parser.add_argument("--blocks", type=int, default=8, help="blocks per load (default 8)")
    parser.add_argument("--per", type=int, default=60, help="STOW instances per block")
    parser.add_argument(
        "--side", type=int, default=512, help="rows and columns of the STOW instances (512)"
    )
    parser.add_argument("--calls", type=int, default=100, help="GETs per block")
    parser.add_argument(
        "--loads",
        help=f"comma-separated, of {', '.join(LOADS)} (default: all; with --orthanc all but me)",
    )
    for side in ("base", "head"):
        parser.add_argument(
            f"--{side}-workers",
            type=int,
            default=1,
            help=f"`vigil serve --workers N` for the {side} (default 1; server CPU counts all)",
        )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    chosen = args.loads or ",".join(load for load in LOADS if not (args.orthanc and load == "me"))
    loads = [load.strip() for load in chosen.split(",") if load.strip()]
    if unknown := set(loads) - set(LOADS):
        raise SystemExit(f"unknown loads: {', '.join(sorted(unknown))}")
    if args.orthanc and "me" in loads:
        raise SystemExit("the load 'me' is Vigil's own route: leave it out with --orthanc")
    if args.orthanc and orthanc_binary() is None:
        raise SystemExit("Orthanc or its DICOMweb plugin is not installed")
    factory = InstanceFactory(int(time.time()) % 100_000)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-ab-")))
        base_tree = None if args.orthanc else stack.enter_context(worktree(args.base))
        head_tree = stack.enter_context(worktree(args.head)) if args.head else REPO
        sides: list[Side] = []
        base_label = "base Orthanc" if args.orthanc else f"base {args.base}"
        trees = [
            (base_label, base_tree, args.base_workers),
            (f"head {args.head or 'tree'}", head_tree, args.head_workers),
        ]
        for label, tree, workers in trees:
            if workers > 1:
                label += f" ({workers} workers)"
            folder = workdir / label.split()[0]
            folder.mkdir()
            server = (
                orthanc_sqlite(folder, "Orthanc SQLite", True)
                if tree is None
                else vigil_server(folder, "SQLite", None, None, workers, tree=tree)
            )
            endpoint = stack.enter_context(server)
            warm = stow(endpoint, factory.batch(10, 512), 1)
            if warm.failures:
                raise SystemExit(f"{label}: warm-up store failed: {warm.failures[0]}")
            sides.append(Side(label, endpoint, factory.batch(1, 512)[0]))
        for side in sides:
            stow(side.endpoint, [side.kept], 1)
            wait_until_quiet(side.endpoint.pid)
        print(f"{sides[0].label} vs {sides[1].label}: {args.blocks} blocks of each load")
        for block in range(args.blocks):
            order = sides if block % 2 == 0 else sides[::-1]
            for load in loads:
                for side in order:
                    run_block(side, load, factory, args)
            print(f"  block {block + 1} of {args.blocks} done", flush=True)
        report(sides[0], sides[1], loads, against_orthanc=args.orthanc)


if __name__ == "__main__":
    main()
