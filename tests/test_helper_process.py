"""The helper process runs work beside the pipeline, and falls back to inline, never fails."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from service.analysis.helper_process import HelperProcess


def process_id(_argument: None) -> int:
    return os.getpid()


def die_unless_in(parent: int) -> str:
    if os.getpid() != parent:
        os._exit(3)  # the helper dies mid-job, as a killed process would
    return "ran inline"


def refuse(message: str) -> None:
    raise ValueError(message)


@pytest.fixture
def helper() -> Iterator[HelperProcess]:
    started = HelperProcess()
    yield started
    started.close()


def test_work_runs_in_another_process(helper: HelperProcess) -> None:
    assert helper.submit(process_id, None)() != os.getpid()


def test_an_error_in_the_work_reaches_the_caller(helper: HelperProcess) -> None:
    result = helper.submit(refuse, "bad input")
    with pytest.raises(ValueError, match="bad input"):
        result()


def test_a_helper_that_dies_is_replaced_by_inline_work_then_restarted(
    helper: HelperProcess,
) -> None:
    assert helper.submit(die_unless_in, os.getpid())() == "ran inline"
    assert helper.submit(process_id, None)() != os.getpid()  # a new helper


def test_a_daemonic_process_works_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True))
    inline = HelperProcess()
    assert inline.submit(process_id, None)() == os.getpid()


def test_inline_work_cancelled_before_it_is_asked_for_never_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True))
    ran: list[str] = []
    pending = HelperProcess().submit(ran.append, "ran")
    assert pending.cancel()
    with pytest.raises(RuntimeError, match="cancelled"):
        pending()
    assert ran == []


def test_work_the_helper_has_done_cannot_be_cancelled(helper: HelperProcess) -> None:
    pending = helper.submit(process_id, None)
    helper_pid = pending()
    assert not pending.cancel()
    assert pending() == helper_pid


HELPER_OWNER = """
import os, sys, time
sys.path.insert(0, {repo!r})
from service.analysis.helper_process import HelperProcess
from tests.test_helper_process import process_id

if __name__ == "__main__":
    print(HelperProcess().submit(process_id, None)(), flush=True)
    time.sleep(60)
"""


def test_a_killed_owner_leaves_no_helper_behind(tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(HELPER_OWNER.format(repo=str(Path(__file__).resolve().parents[1])))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        helper_pid = int(owner.stdout.readline())
        assert helper_pid != owner.pid and alive(helper_pid)
    finally:
        owner.kill()
        owner.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive(helper_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(helper_pid), "the helper outlived the process that started it"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
