"""A job broker that cannot be reached costs no stored instance and no 500: the instance is
stored, its analysis is recorded as failed with the reason, and asking for analyses again
answers 503 with the reason (each asks again, so each retries once the broker is back)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.analysis.runtime import NOT_QUEUED
from service.app import create_app
from service.auth.roles import Role
from service.settings import Settings
from tests.conftest import bearer
from tests.factories import make_cr, to_bytes
from tests.model_bundles import TEST_CLASSIFIER, write_test_classifier
from tests.test_analysis_api import analyses_of
from tests.test_stow import stow


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there once the socket is closed


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    write_test_classifier(tmp_path / "models")
    unreachable = settings.model_copy(
        update={
            "models_dir": tmp_path / "models",
            "default_model": TEST_CLASSIFIER,
            "broker_url": f"redis://127.0.0.1:{closed_port()}/0",
        }
    )
    with TestClient(create_app(unreachable), raise_server_exceptions=False) as client:
        yield client


def test_an_arrival_is_stored_and_its_analysis_fails_with_the_reason(
    api: TestClient, tokens: dict[Role, str]
) -> None:
    ds = make_cr(rows=96, columns=80)
    stored = stow(api, tokens[Role.INTEGRATION], [to_bytes(ds)])
    assert stored.status_code == 200, stored.text
    [analysis] = analyses_of(api, tokens[Role.CLINICIAN], ds.StudyInstanceUID)
    assert (analysis["status"], analysis["failure_reason"]) == ("failed", NOT_QUEUED)
    retrieved = api.get(
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}",
        headers=bearer(tokens[Role.CLINICIAN]),
    )
    assert retrieved.status_code == 200 and to_bytes(ds) in retrieved.content

    asked = api.post(
        f"/api/v1/studies/{ds.StudyInstanceUID}/analyses",
        headers=bearer(tokens[Role.INTEGRATION]),
    )
    assert asked.status_code == 503, asked.text
    assert "the job broker cannot be reached" in asked.json()["detail"]
    [again] = analyses_of(api, tokens[Role.CLINICIAN], ds.StudyInstanceUID)
    assert again["id"] == analysis["id"]  # the same analysis, tried again and failed again
    assert (again["status"], again["failure_reason"]) == ("failed", NOT_QUEUED)
