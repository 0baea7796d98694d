"""The helper process runs work beside the pipeline, and falls back to inline, never fails."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
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
