"""A real `vigil serve` process on a free loopback port, for tests that need one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.settings import Settings


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    pid: int
    log_path: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(settings: Settings) -> dict[str, str]:
    return os.environ | {
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_ARCHIVE_DIR": str(settings.archive_path),
        "VIGIL_VAR_DIR": str(settings.var_dir),
        "VIGIL_ENVIRONMENT": "test",
    }


@contextmanager
def live_server(
    settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """Run `vigil serve` until the block ends; fail with its log if it does not come up."""
    port = free_port()
    vigil = Path(sys.executable).parent / "vigil"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(vigil), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(settings) | (extra_env or {}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vigil serve did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield LiveServer(base_url=base_url, pid=process.pid, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def peak_rss_bytes(pid: int) -> int:
    """Return a process's peak resident memory (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found")


def current_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found")
