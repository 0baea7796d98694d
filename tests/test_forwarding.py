"""Forwarding an analysis's DICOM outputs to another DICOMweb server (STOW-RS), with retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import service as auth_service
from service.auth.roles import Role
from service.db import session_scope
from service.runtime import open_runtime
from service.settings import Environment, Settings
from tests.conftest import bearer
from tests.factories import make_cr, to_bytes
from tests.live_server import LiveServer, free_port, live_server
from tests.model_bundles import TEST_CLASSIFIER, write_test_classifier
from tests.test_analysis_api import analyses_of, wait_done
from tests.test_stow import stow


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    """A second Vigil, with its own database and archive, standing in for the PACS."""
    settings = Settings(
        environment=Environment.TEST,
        var_dir=tmp_path / "pacs",
        database_url=f"sqlite:///{tmp_path / 'pacs.db'}",
        accept_non_image=True,  # it must take the SR too
    )
    runtime = open_runtime(settings)
    with session_scope(runtime.session_factory) as session:
        _token, secret = auth_service.create_token(session=session, role=Role.INTEGRATION)
    runtime.close()
    with live_server(settings, tmp_path / "pacs.log", {"VIGIL_ACCEPT_NON_IMAGE": "true"}) as server:
        yield server, secret


def source_settings(settings: Settings, tmp_path: Path, url: str, token: str) -> Settings:
    write_test_classifier(tmp_path / "models")
    return settings.model_copy(
        update={
            "models_dir": tmp_path / "models",
            "default_model": TEST_CLASSIFIER,
            "forward_url": url,
            "forward_token": token,
            "forward_backoff_s": 0.05,
        }
    )


def test_outputs_arrive_at_the_destination(
    settings: Settings,
    tmp_path: Path,
    tokens: dict[Role, str],
    destination: tuple[LiveServer, str],
) -> None:
    server, pacs_token = destination
    config = source_settings(settings, tmp_path, f"{server.base_url}/dicomweb", pacs_token)
    ds = make_cr(rows=64, columns=64)
    with TestClient(create_app(config)) as api:
        stow(api, tokens[Role.INTEGRATION], [to_bytes(ds)])
        [analysis] = analyses_of(api, tokens[Role.CLINICIAN], ds.StudyInstanceUID)
        done = wait_done(api, tokens[Role.CLINICIAN], analysis["id"])
    assert done["status"] == "done"
    assert done["forwarding"]["status"] == "sent"
    found = httpx.get(
        f"{server.base_url}/dicomweb/instances",
        params={"StudyInstanceUID": ds.StudyInstanceUID},
        headers=bearer(pacs_token),
    ).json()
    assert {i["00080018"]["Value"][0] for i in found} == set(done["outputs"].values())


def test_an_unreachable_destination_is_retried_and_recorded_not_fatal(
    settings: Settings, tmp_path: Path, tokens: dict[Role, str]
) -> None:
    config = source_settings(
        settings, tmp_path, f"http://127.0.0.1:{free_port()}/dicomweb", "vgl_nothing"
    )
    ds = make_cr(rows=64, columns=64)
    with TestClient(create_app(config)) as api:
        stow(api, tokens[Role.INTEGRATION], [to_bytes(ds)])
        [analysis] = analyses_of(api, tokens[Role.CLINICIAN], ds.StudyInstanceUID)
        done = wait_done(api, tokens[Role.CLINICIAN], analysis["id"])
    assert done["status"] == "done"
    assert done["forwarding"]["status"] == "failed"
    assert done["forwarding"]["attempts"] == 3
    assert "ConnectError" in done["forwarding"]["detail"]
