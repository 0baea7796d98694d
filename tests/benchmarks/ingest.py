"""STOW-RS, QIDO-RS and WADO-RS speed of Vigil, and of Debian's Orthanc beside it where installed.

Not a test (pytest does not collect it). Run it by hand from the repository root:

    .venv/bin/python tests/benchmarks/ingest.py              # full run: ~4 min on 2 cores
    .venv/bin/python tests/benchmarks/ingest.py --rounds 3   # best of 3, on a busy machine
    .venv/bin/python tests/benchmarks/ingest.py --small 100 --large 10 --skip-postgres

Each target is a fresh server process on a free loopback port with an empty archive in a
temporary folder: Vigil on its embedded SQLite, Vigil on PostgreSQL, and, where the Debian
packages are installed, Orthanc (`orthanc`, `orthanc-dicomweb`; `orthanc-postgresql` for its
PostgreSQL index). Both products answer a store only once the instance's file and its index
row are fsynced. Stock Orthanc runs its SQLite index with PRAGMA SYNCHRONOUS=NORMAL (a commit
is not fsynced), so a small LD_PRELOAD shim switches it to FULL, the setting Vigil uses.
After a short warm-up load, each server's processes are left to finish their start-up work
(Vigil's analysis helper process loads its model for a few seconds of CPU) before anything
is timed: the figures are steady-state ones.

The targets on one index back end (Vigil and Orthanc on SQLite; then both on PostgreSQL) run
at once and take turns: each measurement is split into blocks (``--blocks``, default 5) and
the targets take the blocks in an order that rotates. On a shared host the speed of the
machine drifts by a third or more from one minute to the next (steal time; memory the host
has to fault back in), so measuring one target after the other compared the minutes more
than the servers. Both servers' memory is shared: pages Vigil releases after its fsync can
be reused by Orthanc's writes (how much that matters is not known: see ``ab.py``); no
correction is made for it.

Each STOW line also says how the machine's CPUs spent that target's blocks (user, system,
idle, I/O wait, steal, from /proc/stat): whether a server is held back by the machine (no CPU
left idle) or by its own structure (CPUs idle while clients wait for it); and the share of the
time its busiest thread was on a CPU (from /proc/<pid>/task): near 100%, that one thread (an
event loop, say) is what the server waits for.

Ratios are Vigil/Orthanc for throughput and Orthanc/Vigil for latency: a ratio of at least
1.0 means Vigil is at least as fast.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import numpy.typing as npt
import psycopg
import pydicom
from psycopg import sql
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from sqlalchemy.engine import URL, make_url

REPO = Path(__file__).resolve().parents[2]
CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
BOUNDARY = "vigil-bench-boundary"
INSTANCES_PER_STUDY = 10
_T = TypeVar("_T")
# Identity encoding on every request: compressing answers would measure zlib, not the servers.
STOW_HEADERS = {
    "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
    "Accept": "application/dicom+json",
    "Accept-Encoding": "identity",
}
QIDO_HEADERS = {"Accept": "application/dicom+json", "Accept-Encoding": "identity"}
WADO_HEADERS = {
    "Accept": 'multipart/related; type="application/dicom"',
    "Accept-Encoding": "identity",
}
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
ORTHANC_PLUGINS = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = ORTHANC_PLUGINS / "libOrthancDicomWeb.so"
POSTGRESQL_INDEX_PLUGIN = ORTHANC_PLUGINS / "libOrthancPostgreSQLIndex.so"
SHIM_MARKER = "vigil-bench shim: SQLite PRAGMA SYNCHRONOUS=NORMAL replaced by FULL"
SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
typedef int (*exec_fn)(void *, const char *, void *, void *, char **);
int sqlite3_exec(void *db, const char *sql, void *cb, void *arg, char **err) {
  static exec_fn real = NULL;
  if (real == NULL) real = (exec_fn)dlsym(RTLD_NEXT, "sqlite3_exec");
  if (sql != NULL && strcasestr(sql, "SYNCHRONOUS=NORMAL") != NULL) {
    fprintf(stderr, "%s\n", "MARKER");
    sql = "PRAGMA SYNCHRONOUS=FULL;";
  }
  return real(db, sql, cb, arg, err);
}
""".replace("MARKER", SHIM_MARKER)


# ----------------------------------------------------------------------------- synthetic data


@dataclass(frozen=True)
class Synthetic:
    """One instance ready to send: its UIDs, its file size and the whole STOW body."""

    study: str
    series: str
    sop: str
    patient_id: str
    size: int
    body: bytes


class InstanceFactory:
    """Build 16-bit CR instances (12 bits stored): a smooth chest-like phantom plus noise."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._tag = f"{seed:x}-{os.getpid():x}"
        self._bases: dict[int, npt.NDArray[np.int16]] = {}
        self._studies = 0

    def batch(self, count: int, side: int) -> list[Synthetic]:
        """Return `count` new instances of side × side pixels, ten per study and patient."""
        out: list[Synthetic] = []
        for start in range(0, count, INSTANCES_PER_STUDY):
            self._studies += 1
            study, series = generate_uid(), generate_uid()
            patient_id = f"BENCH-{self._tag}-{self._studies:05d}"
            for number in range(1, min(INSTANCES_PER_STUDY, count - start) + 1):
                out.append(self._instance(side, study, series, patient_id, number))
        return out

    def _instance(
        self, side: int, study: str, series: str, patient_id: str, number: int
    ) -> Synthetic:
        base = self._bases.get(side)
        if base is None:
            base = self._bases[side] = _phantom(side)
        noise = self._rng.integers(-48, 49, size=base.shape, dtype=np.int16)
        pixels = np.clip(base + noise, 0, 4095).astype(np.uint16)
        ds = _cr_dataset(study, series, patient_id, number, pixels)
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        data = buffer.getvalue()
        body = (
            f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
        return Synthetic(study, series, ds.SOPInstanceUID, patient_id, len(data), body)


def _phantom(side: int) -> npt.NDArray[np.int16]:
    """Return a chest-like 12-bit image: bright body, two darker lung fields, ribs, black border."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    image = 2200.0 + 900.0 * y
    for centre in (0.3, 0.7):
        lung = ((x - centre) / 0.17) ** 2 + ((y - 0.45) / 0.3) ** 2
        image -= 1300.0 * np.exp(-(lung**2))
    image += 120.0 * np.sin(y * 60.0) * (np.abs(x - 0.5) > 0.1)
    border = (x < 0.03) | (x > 0.97) | (y < 0.03) | (y > 0.97)
    image[border] = 0.0
    phantom: npt.NDArray[np.int16] = image.astype(np.int16)
    return phantom


def _cr_dataset(
    study: str, series: str, patient_id: str, number: int, pixels: npt.NDArray[np.uint16]
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName, ds.PatientSex = patient_id, "Bench^Synthetic", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240115", "101500", ""
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    return ds


# ----------------------------------------------------------------------------- servers


@dataclass
class Endpoint:
    """A running server under test."""

    name: str
    product: str
    backend: str
    dicomweb: str  # base URL of the DICOMweb root, without a trailing slash
    auth: dict[str, str]
    version: str
    durability: list[str]
    pid: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running(
    command: list[str], env: dict[str, str], log_path: Path, ready_url: str, cwd: Path = REPO
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server process, wait until `ready_url` answers 200, stop it (SIGTERM) at the end."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited early:\n{_tail(log_path)}")
                try:
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} not ready in 90 s:\n{_tail(log_path)}")
                time.sleep(0.2)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Postgres:
    """The PostgreSQL server given by --postgres-url; benchmarks use databases of their own."""

    url: URL

    def connect(self, database: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.url.host,
            port=self.url.port or 5432,
            user=self.url.username,
            password=self.url.password or None,
            dbname=database or self.url.database,
            autocommit=True,
        )

    @contextmanager
    def database(self, name: str) -> Iterator[str]:
        """Create an empty database `name` (dropping a leftover), yield its URL, drop it."""
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with self.connect() as conn:
            conn.execute(drop)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield self.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with self.connect() as conn:
                conn.execute(drop)

    def describe(self) -> str:
        with self.connect() as conn:
            values = [
                str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
            ]
        return (
            f"PostgreSQL {values[0]}, synchronous_commit={values[1]}, fsync={values[2]}, "
            f"wal_sync_method={values[3]} (a commit waits for its WAL flush)"
        )


@contextmanager
def vigil_server(
    workdir: Path,
    backend: str,
    database_url: str | None,
    postgres: Postgres | None,
    workers: int = 1,
    tree: Path = REPO,
) -> Iterator[Endpoint]:
    """Serve Vigil; ``tree`` is the checkout whose code runs (another revision's worktree, for
    an A/B), with this virtual environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    if tree != REPO:
        env["PYTHONPATH"] = str(tree)  # ahead of the editable install of this checkout
    env |= {
        "VIGIL_VAR_DIR": str(workdir / "var"),
        "VIGIL_HOST": "127.0.0.1",
        "VIGIL_PORT": str(port),
        "VIGIL_ENVIRONMENT": "development",
        "VIGIL_FSYNC": "true",
        # The archive alone, as Orthanc is: the benchmark's CR chest PA instances would each
        # start an analysis on arrival (the shipped model is found) and share the CPU with it.
        "VIGIL_AUTO_ANALYSE": "false",
    }
    if database_url:
        env["VIGIL_DATABASE_URL"] = database_url
    vigil = str(Path(sys.executable).parent / "vigil")
    created = subprocess.run(
        [vigil, "tokens", "create", "--role", "integration", "--name", "benchmark"],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    token = created.stdout.strip().splitlines()[-1]
    index = (
        postgres.describe()
        if postgres
        else "SQLite WAL, synchronous=FULL (the WAL is fsynced at every commit)"
    )
    read_log = (
        "flushed, as every PostgreSQL commit"
        if postgres
        else "not waiting for its flush: VIGIL_DURABLE_READ_LOG=false, the default"
    )
    durability = [
        "file: written to .incoming/, fsync(file), rename into <study>/<series>/, "
        "fsync(series folder) and of each new parent folder",
        f"index: {index}",
        "commits: an instance's index rows and access-log row in one commit before its answer"
        + (
            ""
            if postgres
            else "; instances of concurrent requests that arrive together share one (group commit)"
        ),
        f"reads: each QIDO/WADO call commits an access-log row before answering ({read_log})",
        "every call: its bearer token is looked up in the database",
        "analyses on arrival: off (VIGIL_AUTO_ANALYSE=false)",
        f"server processes: {workers}",
    ]
    log_path = workdir / "vigil.log"
    command = [vigil, "serve", "--workers", str(workers)]
    ready = f"http://127.0.0.1:{port}/healthz"
    with running(command, env, log_path, ready, cwd=tree) as proc:
        yield Endpoint(
            name=f"Vigil {backend}",
            product="Vigil",
            backend=backend,
            dicomweb=f"http://127.0.0.1:{port}/dicomweb",
            auth={"Authorization": f"Bearer {token}"},
            version=_vigil_version(),
            durability=durability,
            pid=proc.pid,
        )


def _vigil_version() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = " + uncommitted changes" if git("status", "--porcelain") else ""
    return f"git {git('rev-parse', '--short', 'HEAD') or '?'}{dirty}"


def orthanc_binary() -> str | None:
    found = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    return found if Path(found).exists() and DICOMWEB_PLUGIN.exists() else None


def build_sqlite_full_shim(workdir: Path) -> Path | None:
    """Compile the LD_PRELOAD shim that turns Orthanc's SQLite SYNCHRONOUS=NORMAL into FULL."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source, library = workdir / "sqlite_full.c", workdir / "sqlite_full.so"
    source.write_text(SHIM_SOURCE)
    done = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
        capture_output=True,
    )
    return library if done.returncode == 0 else None


@contextmanager
def orthanc_server(
    workdir: Path,
    backend: str,
    *,
    name: str,
    shim: Path | None,
    postgres: Postgres | None = None,
    database: str = "",
) -> Iterator[Endpoint]:
    binary = orthanc_binary()
    assert binary is not None
    http_port = free_port()
    for folder in ("storage", "index", "tmp"):
        (workdir / folder).mkdir()
    plugins = [str(DICOMWEB_PLUGIN)]
    config: dict[str, object] = {
        "Name": "vigil-bench",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "TemporaryDirectory": str(workdir / "tmp"),
        "HttpPort": http_port,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SyncStorageArea": True,
        "StorageCompression": False,
        "WebDavEnabled": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }
    if postgres is not None:
        plugins.append(str(POSTGRESQL_INDEX_PLUGIN))
        config["PostgreSQL"] = {
            "EnableIndex": True,
            "EnableStorage": False,
            "Host": postgres.url.host,
            "Port": postgres.url.port or 5432,
            "Database": database,
            "Username": postgres.url.username,
            "Password": postgres.url.password or "",
            "Lock": False,
            # The plugin's default is 1 connection; Vigil's pool holds up to 10.
            "IndexConnectionsCount": 5,
        }
    config["Plugins"] = plugins
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    env = dict(os.environ)
    if shim is not None:
        env["LD_PRELOAD"] = str(shim)
    base = f"http://127.0.0.1:{http_port}"
    log_path = workdir / "orthanc.log"
    with running([binary, str(config_path)], env, log_path, f"{base}/system") as proc:
        system = httpx.get(f"{base}/system").json()
        plugin = httpx.get(f"{base}/plugins/dicom-web").json()
        if postgres is not None:
            index = f"{postgres.describe()}; PostgreSQL index plugin, 5 connections"
        elif shim is not None and SHIM_MARKER in log_path.read_text(errors="replace"):
            index = "SQLite WAL, SYNCHRONOUS=FULL (stock NORMAL switched to FULL by LD_PRELOAD)"
        else:
            index = "SQLite WAL, SYNCHRONOUS=NORMAL (stock: a commit is NOT fsynced)"
        yield Endpoint(
            name=name,
            product="Orthanc",
            backend=backend,
            dicomweb=f"{base}/dicom-web",
            auth={},
            version=f"Orthanc {system.get('Version')}, DICOMweb plugin {plugin.get('Version')}",
            durability=[
                "file: SyncStorageArea=true: written in place, fsync(file); no folder fsync",
                f"index: {index}",
                "every call: no authentication (AuthenticationEnabled=false), no access log",
            ],
            pid=proc.pid,
        )


# ----------------------------------------------------------------------------- measurements


@dataclass
class StowRun:
    """Timed STOW loads of one target, added up (its blocks: see ``bench_side_by_side``)."""

    instances: int
    megabytes: float
    seconds: float
    latencies: list[float]
    failures: list[str]
    server_cpu: float  # CPU seconds of the server's processes (not of PostgreSQL's)
    client_cpu: float
    machine: MachineTicks  # how the whole machine's CPUs spent the run
    # CPU seconds of the server's busiest thread in each block (summed over blocks): near
    # the run's seconds, that thread is what the server waits for (an event loop, say)
    busiest_thread_cpu: float

    @property
    def rate(self) -> float:
        return (self.instances - len(self.failures)) / self.seconds

    @property
    def busiest_thread_share(self) -> float:
        return self.busiest_thread_cpu / self.seconds

    def summary(self) -> str:
        ok = self.instances - len(self.failures)
        return (
            f"{ok} stored, {len(self.failures)} failed in {self.seconds:.1f} s: "
            f"{self.rate:.1f} inst/s, {self.megabytes / self.seconds:.0f} MB/s; per request "
            f"median {_ms(statistics.median(self.latencies))}, p95 {_ms(_p95(self.latencies))}; "
            f"CPU per instance: server {_ms(self.server_cpu / self.instances)}, "
            f"benchmark client {_ms(self.client_cpu / self.instances)}; "
            f"machine {self.machine.shares()}; "
            f"busiest server thread on CPU {self.busiest_thread_share:.0%} of the time"
        )


@dataclass(frozen=True)
class MachineTicks:
    """Clock ticks of all the machine's CPUs, by state (from /proc/stat), over some time.

    Shows whether a load left CPUs idle (work serialized, or waiting for the clients) or
    used them all, and what the host took (steal).
    """

    user: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    steal: int = 0

    @staticmethod
    def now() -> MachineTicks:
        """The ticks since boot."""
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        user, nice, system, idle, iowait, irq, softirq, steal = values
        return MachineTicks(user + nice, system + irq + softirq, idle, iowait, steal)

    def __add__(self, other: MachineTicks) -> MachineTicks:
        return MachineTicks(*(a + b for a, b in zip(self._values(), other._values(), strict=True)))

    def __sub__(self, other: MachineTicks) -> MachineTicks:
        return MachineTicks(*(a - b for a, b in zip(self._values(), other._values(), strict=True)))

    @property
    def idle_share(self) -> float:
        return self.idle / (sum(self._values()) or 1)

    def shares(self) -> str:
        total = sum(self._values()) or 1
        return ", ".join(
            f"{name} {100 * value / total:.0f}%"
            for name, value in zip(
                ("user", "system", "idle", "I/O wait", "steal"), self._values(), strict=True
            )
        )

    def _values(self) -> tuple[int, int, int, int, int]:
        return (self.user, self.system, self.idle, self.iowait, self.steal)


def stow(endpoint: Endpoint, instances: list[Synthetic], threads: int) -> StowRun:
    """Store each instance in its own request, from `threads` client threads; time it all."""
    url = f"{endpoint.dicomweb}/studies"
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def client() -> httpx.Client:
        existing: httpx.Client | None = getattr(local, "client", None)
        if existing is None:
            existing = local.client = httpx.Client(timeout=300, headers=endpoint.auth)
            with lock:
                clients.append(existing)
        return existing

    def send(item: Synthetic) -> tuple[float, str | None]:
        started = time.perf_counter()
        try:
            response = client().post(url, content=item.body, headers=STOW_HEADERS)
        except httpx.HTTPError as exc:
            return time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
        return time.perf_counter() - started, _stow_problem(response)

    server_cpu, client_cpu = tree_cpu_seconds(endpoint.pid), time.process_time()
    threads_before = tree_thread_ticks(endpoint.pid)
    machine = MachineTicks.now()
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(send, instances))
    seconds = time.perf_counter() - started
    machine = MachineTicks.now() - machine
    threads_after = tree_thread_ticks(endpoint.pid)
    server_cpu = tree_cpu_seconds(endpoint.pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    for c in clients:
        c.close()
    return StowRun(
        instances=len(instances),
        megabytes=sum(i.size for i in instances) / 1e6,
        seconds=seconds,
        latencies=[r[0] for r in results],
        failures=[r[1] for r in results if r[1] is not None],
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        machine=machine,
        busiest_thread_cpu=busiest_thread_seconds(threads_before, threads_after),
    )


def combined(runs: list[StowRun]) -> StowRun:
    """Return the blocks of one target's measurement as one run: its rate is all instances
    over all the seconds its blocks took."""
    return StowRun(
        instances=sum(r.instances for r in runs),
        megabytes=sum(r.megabytes for r in runs),
        seconds=sum(r.seconds for r in runs),
        latencies=[t for r in runs for t in r.latencies],
        failures=[f for r in runs for f in r.failures],
        server_cpu=sum(r.server_cpu for r in runs),
        client_cpu=sum(r.client_cpu for r in runs),
        machine=sum((r.machine for r in runs), MachineTicks()),
        busiest_thread_cpu=sum(r.busiest_thread_cpu for r in runs),
    )


def process_cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process has used (all its threads), from /proc."""
    return _cpu_ticks(Path(f"/proc/{pid}/stat")) / os.sysconf("SC_CLK_TCK")


def _cpu_ticks(stat: Path) -> int:
    """Return the user + system clock ticks in a process's or a thread's ``stat`` file."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def tree_cpu_seconds(pid: int) -> float:
    """Return the CPU seconds used so far by a process and its live descendants."""
    total = 0.0
    for current in _process_tree(pid):
        try:
            total += process_cpu_seconds(current)
        except OSError:
            continue  # the process ended meanwhile
    return total


def tree_thread_ticks(pid: int) -> dict[tuple[int, int], int]:
    """Return the CPU clock ticks (user + system) used so far by each thread, (process id,
    thread id), of a process and its live descendants."""
    ticks: dict[tuple[int, int], int] = {}
    for current in _process_tree(pid):
        for stat in Path(f"/proc/{current}/task").glob("*/stat"):
            try:
                ticks[(current, int(stat.parent.name))] = _cpu_ticks(stat)
            except OSError:
                continue  # the thread or the process ended meanwhile
    return ticks


def busiest_thread_seconds(
    before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]
) -> float:
    """Return the CPU seconds of the thread that used the most between two
    ``tree_thread_ticks``."""
    used = (ticks - before.get(thread, 0) for thread, ticks in after.items())
    return max(used, default=0) / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    """Return a process and its live descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def wait_until_quiet(pid: int, busy_share: float = 0.05, limit_s: float = 90.0) -> float:
    """Wait until a server and its child processes use under `busy_share` of one core over a
    second (start-up work done: a model loading in a helper process, say); return the wait.

    Both products get the same wait, so the timed loads measure steady state, not start-up.
    """
    started = time.monotonic()
    before = tree_cpu_seconds(pid)
    while time.monotonic() - started < limit_s:
        time.sleep(1.0)
        now = tree_cpu_seconds(pid)
        if now - before < busy_share:
            break
        before = now
    return time.monotonic() - started


def _stow_problem(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    try:
        body = response.json()
        stored = body.get(REFERENCED_SOP_SEQUENCE, {}).get("Value", [])
    except (ValueError, AttributeError):
        return f"HTTP 200 with an unreadable body: {response.text[:300]}"
    # Orthanc always sends a FailedSOPSequence, empty (no Value) when nothing failed.
    if len(stored) != 1 or body.get(FAILED_SOP_SEQUENCE, {}).get("Value"):
        return f"HTTP 200 but not stored: {response.text[:300]}"
    return None


@dataclass
class Latency:
    median: float
    p95: float
    calls: int
    failures: list[str] = field(default_factory=list)


class LatencyProbe:
    """Timed GETs of one URL of one target over one keep-alive connection, in blocks."""

    def __init__(
        self,
        endpoint: Endpoint,
        url: str,
        headers: dict[str, str],
        check: Callable[[httpx.Response], str | None],
    ) -> None:
        self._client = httpx.Client(timeout=120, headers=endpoint.auth)
        self._url = url
        self._headers = headers
        self._check = check
        self.times: list[float] = []
        self.failures: list[str] = []

    def warm_up(self) -> str | None:
        """Make 5 untimed calls; return why the URL cannot be measured, if it cannot."""
        first = self._client.get(self._url, headers=self._headers)
        if first.status_code in (404, 405, 501):
            return f"not available: HTTP {first.status_code} {first.text[:120]}"
        for _ in range(4):
            self._client.get(self._url, headers=self._headers)
        return None

    def block(self, calls: int) -> None:
        for _ in range(calls):
            started = time.perf_counter()
            response = self._client.get(self._url, headers=self._headers)
            _ = response.content  # the whole body is read before the clock stops
            self.times.append(time.perf_counter() - started)
            if (problem := self._check(response)) is not None:
                self.failures.append(problem)

    def result(self) -> Latency:
        return Latency(
            statistics.median(self.times), _p95(self.times), len(self.times), self.failures
        )

    def close(self) -> None:
        self._client.close()


def qido_check(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    found = response.json()
    return None if isinstance(found, list) and len(found) == 1 else f"{len(found)} studies"


def wado_check(expected_bytes: int) -> Callable[[httpx.Response], str | None]:
    def check(response: httpx.Response) -> str | None:
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        if not response.headers.get("content-type", "").startswith("multipart/related"):
            return f"content type {response.headers.get('content-type')}"
        if len(response.content) < expected_bytes:
            return f"{len(response.content)} bytes, less than the {expected_bytes} stored"
        return None

    return check


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# ----------------------------------------------------------------------------- one target


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    unit: str
    higher_is_better: bool


def measures(threads: int) -> list[Measure]:
    return [
        Measure("stow_small_1", "STOW-RS 512² sequential", "inst/s", True),
        Measure("stow_small_n", f"STOW-RS 512² {threads} threads", "inst/s", True),
        Measure("stow_large_1", "STOW-RS 2048² sequential", "inst/s", True),
        Measure("stow_large_n", f"STOW-RS 2048² {threads} threads", "inst/s", True),
        Measure("qido_median", "QIDO-RS by PatientID, median", "ms", False),
        Measure("qido_p95", "QIDO-RS by PatientID, p95", "ms", False),
        Measure("wado_small_median", "WADO-RS one 512² instance, median", "ms", False),
        Measure("wado_small_p95", "WADO-RS one 512² instance, p95", "ms", False),
        Measure("wado_large_median", "WADO-RS one 2048² instance, median", "ms", False),
        Measure("wado_large_p95", "WADO-RS one 2048² instance, p95", "ms", False),
    ]


@dataclass
class TargetResult:
    endpoint: Endpoint
    values: dict[str, float] = field(default_factory=dict)
    failures: int = 0


def _blocks(total: int, blocks: int) -> list[int]:
    """Split `total` items into at most `blocks` nearly equal, non-empty blocks."""
    count = max(1, min(blocks, total))
    return [total // count + (1 if i < total % count else 0) for i in range(count)]


def _turns(items: list[_T], block: int) -> list[_T]:
    """The order in which the targets take block number `block`: rotated each block, so
    that no target is always first (or always right after another)."""
    shift = block % len(items)
    return items[shift:] + items[:shift]


def _probe(endpoint: Endpoint, key: str, item: Synthetic) -> LatencyProbe:
    """A QIDO search by the item's PatientID, or a WADO retrieve of the item."""
    if key == "qido":
        url = f"{endpoint.dicomweb}/studies?PatientID={item.patient_id}"
        return LatencyProbe(endpoint, url, QIDO_HEADERS, qido_check)
    url = f"{endpoint.dicomweb}/studies/{item.study}/series/{item.series}/instances/{item.sop}"
    return LatencyProbe(endpoint, url, WADO_HEADERS, wado_check(item.size))


def bench_side_by_side(
    endpoints: list[Endpoint], args: argparse.Namespace, seeds: list[int]
) -> list[TargetResult]:
    """Return the STOW rates and QIDO/WADO latencies of servers running at once, printing
    details as it goes.

    Every measurement is split into blocks (``--blocks``) and the targets take turns, block
    by block, in an order that rotates: they run under the same machine conditions within
    seconds of each other, and the host's drift (which moves one server's figures by a
    third from one minute to the next on shared cores) lands on all of them alike. A target's
    rate is all its instances over the seconds its blocks took; its latencies are the
    median and 95th percentile of all its timed calls.
    """
    results = [TargetResult(e) for e in endpoints]
    factories = [InstanceFactory(seed) for seed in seeds]

    def say(result: TargetResult, line: str) -> None:
        print(f"  [{result.endpoint.name}] {line}", flush=True)

    live: list[int] = []
    for number, result in enumerate(results):
        warm = stow(result.endpoint, factories[number].batch(INSTANCES_PER_STUDY, 512), 1)
        if warm.failures:
            say(result, f"warm-up STOW failed, nothing measured: {warm.failures[0]}")
            result.failures += len(warm.failures)
        else:
            live.append(number)
    for number in live:
        quiet = wait_until_quiet(results[number].endpoint.pid)
        say(results[number], f"server processes quiet {quiet:.1f} s after the warm-up")
    if not live:
        return results
    kept: list[dict[int, Synthetic]] = [{} for _ in results]
    for side, count, tag in ((512, args.small, "small"), (2048, args.large, "large")):
        for threads in (1, args.threads):
            if count <= 0:
                continue
            runs: dict[int, list[StowRun]] = {number: [] for number in live}
            for block, size in enumerate(_blocks(count, args.blocks)):
                for number in _turns(live, block):
                    batch = factories[number].batch(size, side)
                    kept[number].setdefault(side, batch[0])
                    runs[number].append(stow(results[number].endpoint, batch, threads))
                    del batch
            mode = "sequential" if threads == 1 else f"{threads} threads"
            for number in live:
                run = combined(runs[number])
                say(results[number], f"STOW {side}² {mode}: {run.summary()}")
                for failure in run.failures[:5]:
                    say(results[number], f"    failure: {failure}")
                results[number].failures += len(run.failures)
                results[number].values[f"stow_{tag}_{1 if threads == 1 else 'n'}"] = run.rate
    for key, sides in (("qido", (512, 2048)), ("wado_small", (512,)), ("wado_large", (2048,))):
        label = key.replace("_", " ").upper().replace("SMALL", "512²").replace("LARGE", "2048²")
        probes: dict[int, LatencyProbe] = {}
        for number in live:
            item = next((kept[number][s] for s in sides if s in kept[number]), None)
            if item is None:
                continue
            probe = _probe(results[number].endpoint, key, item)
            if (problem := probe.warm_up()) is not None:
                say(results[number], f"{label}: {problem}")
                probe.close()
                continue
            probes[number] = probe
        for block, calls in enumerate(_blocks(args.calls, args.blocks) if probes else []):
            for number in _turns(list(probes), block):
                probes[number].block(calls)
        for number, probe in probes.items():
            probe.close()
            measured = probe.result()
            say(
                results[number],
                f"{label}: {measured.calls} calls, median {_ms(measured.median)}, "
                f"p95 {_ms(measured.p95)}, {len(measured.failures)} failed",
            )
            for failure in measured.failures[:5]:
                say(results[number], f"    failure: {failure}")
            results[number].failures += len(measured.failures)
            if not measured.failures:
                results[number].values[f"{key}_median"] = measured.median * 1000
                results[number].values[f"{key}_p95"] = measured.p95 * 1000
    return results


# ----------------------------------------------------------------------------- report


def machine_description(workdir: Path) -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return [
        f"date:     {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"machine:  {os.cpu_count()} cores ({cpu}), {memory_kb / 2**20:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"loadavg:  {_loadavg()} at the start",
        f"disk:     temporary folders under {workdir} on {_filesystem(workdir)}",
        f"client:   this same machine, Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, one keep-alive connection per client thread, "
        "one instance per request",
    ]


def _loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1, 5, 15 min)"


def _filesystem(path: Path) -> str:
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, fstype, *_ = line.split()
        if str(path.resolve()).startswith(mount) and len(mount) > len(best):
            best, kind = mount, f"{fstype} ({device})"
    return kind


def print_report(header: list[str], results: list[TargetResult], args: argparse.Namespace) -> None:
    rule = "=" * 100
    print(f"\n{rule}\nVigil ingest benchmark\n{rule}")
    for line in header:
        print(line)
    print(
        f"workload: STOW-RS {args.small} × 512² and {args.large} × 2048² CR (16-bit, 12 stored, "
        f"~{512 * 512 * 2 / 1e6:.1f} / {2048 * 2048 * 2 / 1e6:.1f} MB), each count once "
        f"sequential and once with {args.threads} client threads (new UIDs each time); "
        f"QIDO/WADO: {args.calls} timed calls after 5 warm-up calls"
    )
    if args.rounds > 1:
        print(f"rounds:   {args.rounds}; each value below is the best of its rounds")
    print("\nTargets: what is on disk before a store is answered, what each call checks and logs")
    for r in results:
        print(f"  {r.endpoint.name}: {r.endpoint.version}")
        for line in r.endpoint.durability:
            print(f"      {line}")
    all_measures = measures(args.threads)
    width = 38
    print("\nResults (inst/s: higher is better; ms: lower is better; n/a: not measured)")
    print(f"  {'measurement':<{width}}" + "".join(f"{r.endpoint.name:>22}" for r in results))
    for m in all_measures:
        cells = "".join(f"{_cell(r.values.get(m.key), m.unit):>22}" for r in results)
        print(f"  {m.label:<{width}}{cells}")
    print("  " + f"{'failed requests':<{width}}" + "".join(f"{r.failures:>22}" for r in results))

    pairs = ratio_pairs(results)
    if not pairs:
        print("\nNo Orthanc target in this run: no ratios.")
        return
    print(
        "\nRatios Vigil/Orthanc (throughput: Vigil/Orthanc; latency: Orthanc/Vigil; "
        "≥ 1.0 means Vigil is at least as fast)"
    )
    print(f"  {'measurement':<{width}}" + "".join(f"{_pair_name(v, o):>30}" for v, o in pairs))
    below: list[str] = []
    missing: list[str] = []
    for m in all_measures:
        cells = ""
        for vigil, orthanc in pairs:
            ratio = _ratio(vigil.values.get(m.key), orthanc.values.get(m.key), m.higher_is_better)
            if ratio is None:
                cells += f"{'n/a':>30}"
                missing.append(f"{m.label} ({_pair_name(vigil, orthanc)})")
                continue
            flag = "ok" if ratio >= 1.0 else "BELOW"
            cells += f"{ratio:>24.2f} {flag:>5}"
            if ratio < 1.0:
                below.append(f"{m.label} ({_pair_name(vigil, orthanc)}: {ratio:.2f})")
        print(f"  {m.label:<{width}}{cells}")
    verdict = "NOT met" if below else "not established" if missing else "met"
    print(f"\nGoal (every ratio ≥ 1.0): {verdict}")
    for item in below:
        print(f"  below 1.0: {item}")
    for item in missing:
        print(f"  not measured: {item}")
    print(
        f"\nThe targets on one back end ran at once, taking turns in {args.blocks} blocks per "
        "measurement\n(order rotating): a drift of the machine's speed lands on both sides of a "
        "ratio alike.\nOn a shared host a ratio near 1.0 can still land either side of it from "
        "run to run."
    )


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} {unit}"


def _ratio(vigil: float | None, orthanc: float | None, higher_is_better: bool) -> float | None:
    if not vigil or not orthanc:
        return None
    return vigil / orthanc if higher_is_better else orthanc / vigil


def _pair_name(vigil: TargetResult, orthanc: TargetResult) -> str:
    return f"{vigil.endpoint.backend} vs {orthanc.endpoint.name.removeprefix('Orthanc ')}"


def ratio_pairs(results: list[TargetResult]) -> list[tuple[TargetResult, TargetResult]]:
    """Pair each Vigil target with the equally durable Orthanc on the same index back end."""
    orthancs = {r.endpoint.name: r for r in results if r.endpoint.product == "Orthanc"}
    pairs = []
    for vigil in (r for r in results if r.endpoint.product == "Vigil"):
        orthanc = orthancs.get(f"Orthanc {vigil.endpoint.backend}") or orthancs.get(
            "Orthanc SQLite"
        )
        if orthanc is not None:
            pairs.append((vigil, orthanc))
    return pairs


# ----------------------------------------------------------------------------- main

Plan = Callable[[Path], AbstractContextManager[Endpoint]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--small", type=int, default=1000, help="512² instances per mode")
    parser.add_argument("--large", type=int, default=100, help="2048² instances per mode")
    parser.add_argument("--threads", type=int, default=4, help="client threads (concurrent)")
    parser.add_argument(
        "--calls",
        type=int,
        default=200,
        help="timed QIDO / WADO calls (the p95 of 200 is the 11th slowest; of 50, the 3rd)",
    )
    parser.add_argument(
        "--blocks",
        type=int,
        default=5,
        help="blocks each measurement is split into, the targets taking turns (default 5)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every target N times; report each best value"
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-orthanc", action="store_true")
    parser.add_argument(
        "--orthanc-stock-sqlite",
        action="store_true",
        help="also run Orthanc with its stock SQLite durability (SYNCHRONOUS=NORMAL)",
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a server where databases vigil_bench and orthanc_bench may be created and dropped",
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--seed", type=int, default=20240115)
    parser.add_argument(
        "--vigil-sqlite-workers",
        type=int,
        default=1,
        help="`vigil serve --workers N` for the SQLite target (writes take turns across them)",
    )
    parser.add_argument(
        "--vigil-pg-workers",
        type=int,
        default=1,
        help="`vigil serve --workers N` for the PostgreSQL target (server CPU counts "
        "every server process)",
    )
    parser.add_argument("--only", default="", help="comma-separated target names to run")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    postgres = None if args.skip_postgres else Postgres(make_url(args.postgres_url))
    with_orthanc = not args.skip_orthanc and orthanc_binary() is not None
    if not args.skip_orthanc and not with_orthanc:
        print("Orthanc or its DICOMweb plugin is not installed: Vigil only, no ratios.")
    orthanc_pg = with_orthanc and postgres is not None and POSTGRESQL_INDEX_PLUGIN.exists()

    sqlite_workers = args.vigil_sqlite_workers
    plans: list[tuple[str, Plan]] = [
        ("Vigil SQLite", lambda d: vigil_server(d, "SQLite", None, None, sqlite_workers))
    ]
    if with_orthanc:
        plans.append(("Orthanc SQLite", lambda d: orthanc_sqlite(d, "Orthanc SQLite", True)))
        if args.orthanc_stock_sqlite:
            name = "Orthanc SQLite stock"
            plans.append((name, lambda d: orthanc_sqlite(d, name, False)))
    if postgres is not None:
        workers = args.vigil_pg_workers
        plans.append(("Vigil PostgreSQL", lambda d: _vigil_pg(d, postgres, workers)))
        if orthanc_pg:
            plans.append(("Orthanc PostgreSQL", lambda d: _orthanc_pg(d, postgres)))
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        plans = [p for p in plans if p[0] in wanted]

    header = machine_description(args.workdir)
    for line in header:
        print(line, flush=True)
    runs: dict[str, list[TargetResult]] = {}
    # Every target's files (about 1.3 GB each) are kept until all are measured: on ext4
    # without a journal (as here) a new file skips the inodes deleted in the last minute,
    # reading each one's inode table block, so deleting one target's ~1,100 files made the
    # next target's every file cost more (about a fifth of a server's CPU, measured with
    # perf). No target pays for another's files now; a run started within a minute of
    # deleting many files still can.
    groups: dict[str, list[tuple[str, Plan]]] = {}
    for name, plan in plans:  # the targets on one index back end are measured side by side
        groups.setdefault("PostgreSQL" if "PostgreSQL" in name else "SQLite", []).append(
            (name, plan)
        )
    with ExitStack() as kept_folders:
        for round_number in range(1, args.rounds + 1):
            for number, group in enumerate(groups.values()):
                counter = f" (round {round_number} of {args.rounds})" if args.rounds > 1 else ""
                names = ", ".join(name for name, _plan in group)
                print(f"\n{names}{counter}: starting fresh servers, side by side", flush=True)
                with ExitStack() as servers:
                    endpoints: list[Endpoint] = []
                    for name, plan in group:
                        tmp = kept_folders.enter_context(
                            tempfile.TemporaryDirectory(prefix="vigil-bench-", dir=args.workdir)
                        )
                        try:
                            endpoint = servers.enter_context(plan(Path(tmp)))
                        except (
                            RuntimeError,
                            OSError,
                            subprocess.CalledProcessError,
                            psycopg.Error,
                        ) as exc:
                            print(
                                f"  [{name}] not measured: {type(exc).__name__}: {exc}", flush=True
                            )
                            continue
                        print(f"  [{name}] pid {endpoint.pid}, {endpoint.dicomweb}", flush=True)
                        endpoints.append(endpoint)
                    seeds = [
                        args.seed + 100 * round_number + 10 * number + i
                        for i in range(len(endpoints))
                    ]
                    try:
                        measured = bench_side_by_side(endpoints, args, seeds)
                    except (RuntimeError, OSError, httpx.HTTPError, psycopg.Error) as exc:
                        print(f"  [{names}] not measured: {type(exc).__name__}: {exc}", flush=True)
                        continue
                    for result in measured:
                        runs.setdefault(result.endpoint.name, []).append(result)
    header.insert(3, f"loadavg:  {_loadavg()} at the end")
    print_report(header, [best_of(r, args.threads) for r in runs.values()], args)


def best_of(runs: list[TargetResult], threads: int) -> TargetResult:
    """Return one result holding each measure's best value over the rounds (least disturbed)."""
    best = TargetResult(runs[0].endpoint, failures=sum(r.failures for r in runs))
    for m in measures(threads):
        values = [r.values[m.key] for r in runs if m.key in r.values]
        if values:
            best.values[m.key] = max(values) if m.higher_is_better else min(values)
    return best


@contextmanager
def orthanc_sqlite(workdir: Path, name: str, full: bool) -> Iterator[Endpoint]:
    shim = build_sqlite_full_shim(workdir) if full else None
    if full and shim is None:
        print("  no C compiler: Orthanc's SQLite index stays at SYNCHRONOUS=NORMAL")
    with orthanc_server(workdir, "SQLite", name=name, shim=shim) as endpoint:
        yield endpoint


@contextmanager
def _vigil_pg(workdir: Path, postgres: Postgres, workers: int) -> Iterator[Endpoint]:
    with (
        postgres.database("vigil_bench") as url,
        vigil_server(workdir, "PostgreSQL", url, postgres, workers) as endpoint,
    ):
        yield endpoint


@contextmanager
def _orthanc_pg(workdir: Path, postgres: Postgres) -> Iterator[Endpoint]:
    with (
        postgres.database("orthanc_bench"),
        orthanc_server(
            workdir,
            "PostgreSQL",
            name="Orthanc PostgreSQL",
            shim=None,
            postgres=postgres,
            database="orthanc_bench",
        ) as endpoint,
    ):
        yield endpoint


if __name__ == "__main__":
    main()
