"""An archive whose disk is full refuses what it cannot keep with that reason (STOW-RS: 507;
`vigil ingest`: per input), keeps nothing half-written, and loses nothing already stored."""

from __future__ import annotations

import errno
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth.roles import Role
from service.dicom.archive import IncomingWriter
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import bearer
from tests.factories import make_cr, to_bytes
from tests.model_bundles import TEST_CLASSIFIER, write_test_classifier
from tests.test_analysis_api import analyses_of, wait_done
from tests.test_cli_ingest import ingest
from tests.test_stow import instance_count, stow

FULL_REASON = "no space left on the archive's disk"


@pytest.fixture
def fill_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make every write into the archive fail as a full disk does (ENOSPC)."""

    def full(_writer: IncomingWriter, _chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return lambda: monkeypatch.setattr(IncomingWriter, "write", full)


def test_stow_to_a_full_disk_answers_507_and_keeps_what_was_stored(
    client: TestClient,
    tokens: dict[Role, str],
    runtime: Runtime,
    fill_disk: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored, refused, other = (make_cr(seed=n, rows=32, columns=32) for n in (1, 2, 3))
    token = tokens[Role.INTEGRATION]
    assert stow(client, token, [to_bytes(stored)]).status_code == 200
    fill_disk()
    for parts in ([to_bytes(refused)], [to_bytes(refused), to_bytes(other)]):
        answer = stow(client, token, parts)
        assert answer.status_code == 507, answer.text
        assert answer.json() == {
            "error": "InsufficientStorage",
            "detail": f"{FULL_REASON}: nothing of this request was stored; tell an admin",
        }
    assert instance_count(runtime) == 1
    assert list(runtime.archive.incoming.iterdir()) == []
    retrieved = client.get(
        f"/dicomweb/studies/{stored.StudyInstanceUID}/series/{stored.SeriesInstanceUID}"
        f"/instances/{stored.SOPInstanceUID}",
        headers=bearer(tokens[Role.CLINICIAN]),
    )
    assert retrieved.content.count(to_bytes(stored)) == 1
    monkeypatch.undo()  # room again: the refused instance is sent again and stored
    assert stow(client, token, [to_bytes(refused)]).status_code == 200
    assert instance_count(runtime) == 2


def test_ingest_to_a_full_disk_reports_each_input_without_a_traceback(
    settings: Settings, runtime: Runtime, tmp_path: Path, fill_disk: Callable[[], None]
) -> None:
    single = tmp_path / "one.dcm"
    single.write_bytes(to_bytes(make_cr(seed=4, rows=32, columns=32)))
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as zf:
        zf.writestr("two.dcm", to_bytes(make_cr(seed=5, rows=32, columns=32)))
    fill_disk()
    result = ingest(settings, single, tmp_path / "two.zip")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"one.dcm: {FULL_REASON}" in result.output
    assert f"two.zip!two.dcm: {FULL_REASON}" in result.output
    assert "0 stored, 0 already stored, 2 failed (of 2)" in result.output
    assert instance_count(runtime) == 0
    assert list(runtime.archive.incoming.iterdir()) == []


def test_an_analysis_whose_results_find_no_room_fails_with_that_reason(
    settings: Settings, tokens: dict[Role, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("service.analysis.pipeline.save_maps", full)
    write_test_classifier(tmp_path / "models")
    with_model = settings.model_copy(
        update={"models_dir": tmp_path / "models", "default_model": TEST_CLASSIFIER}
    )
    ds = make_cr(rows=64, columns=64)
    with TestClient(create_app(with_model)) as api:
        assert stow(api, tokens[Role.INTEGRATION], [to_bytes(ds)]).status_code == 200
        [queued] = analyses_of(api, tokens[Role.CLINICIAN], ds.StudyInstanceUID)
        failed = wait_done(api, tokens[Role.CLINICIAN], queued["id"])
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == (
        "no space left on the server's disk for its results; tell an admin"
    )
