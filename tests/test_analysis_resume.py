"""Analyses an earlier run left unfinished are queued again at start-up, by one process only."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth.roles import Role
from service.settings import Settings
from service.worker.jobs import InProcessJobs
from tests.factories import make_cr, to_bytes
from tests.model_bundles import TEST_CLASSIFIER, write_test_classifier
from tests.test_analysis_api import analyses_of
from tests.test_stow import stow


@pytest.fixture
def analysis_settings(settings: Settings, tmp_path: Path) -> Settings:
    write_test_classifier(tmp_path / "models")
    return settings.model_copy(
        update={"models_dir": tmp_path / "models", "default_model": TEST_CLASSIFIER}
    )


def test_unfinished_analyses_are_queued_again_by_one_of_the_processes_that_start(
    analysis_settings: Settings, tokens: dict[Role, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Jobs are recorded per queue (one queue per app, as per `vigil serve` process), not run.
    queued: dict[int, list[uuid.UUID]] = {}

    def record(self: InProcessJobs, analysis_id: uuid.UUID) -> None:
        queued.setdefault(id(self), []).append(analysis_id)

    monkeypatch.setattr(InProcessJobs, "enqueue_analysis", record)
    ds = make_cr(rows=64, columns=64)
    with TestClient(create_app(analysis_settings)) as first_run:
        assert stow(first_run, tokens[Role.INTEGRATION], [to_bytes(ds)]).status_code == 200
        [left] = analyses_of(first_run, tokens[Role.CLINICIAN], ds.StudyInstanceUID)
    assert left["status"] == "queued"
    left_id = uuid.UUID(left["id"])
    queued.clear()

    # Two processes start on the same var folder and database, as `vigil serve --workers 2`.
    with (
        TestClient(create_app(analysis_settings)) as one,
        TestClient(create_app(analysis_settings)) as other,
    ):
        by_app = [queued.get(id(app.app.state.analysis.jobs), []) for app in (one, other)]  # type: ignore[attr-defined]
        assert sorted(by_app, key=len) == [[], [left_id]]

    # Once they have stopped, the next start resumes it again.
    queued.clear()
    with TestClient(create_app(analysis_settings)) as later:
        assert queued == {id(later.app.state.analysis.jobs): [left_id]}  # type: ignore[attr-defined]
