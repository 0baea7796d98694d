"""`make run`'s set-up: demo studies (real RG1 chest CR + phantoms) and a development token."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.demo import issue_development_token, load_demo_studies
from service.orm import Analysis, Instance
from service.runtime import Runtime, open_runtime
from service.settings import Environment, Settings
from tests.conftest import bearer
from tests.model_bundles import TEST_CLASSIFIER, write_test_classifier


@pytest.fixture
def dev_settings(settings: Settings, tmp_path: Path) -> Settings:
    write_test_classifier(tmp_path / "models")
    return settings.model_copy(
        update={
            "environment": Environment.DEVELOPMENT,
            "models_dir": tmp_path / "models",
            "default_model": TEST_CLASSIFIER,
        }
    )


def test_demo_studies_load_once_and_queue_their_analyses(dev_settings: Settings) -> None:
    runtime: Runtime = open_runtime(dev_settings)
    try:
        first = load_demo_studies(runtime)
        assert first.stored == 3 + 12
        assert first.already_stored == 1  # RG1_UNCI is RG1_J2KI in another transfer syntax
        assert first.failed == []
        again = load_demo_studies(runtime)
        assert again.stored == 0 and again.already_stored == 16
        with runtime.session_factory() as session:
            assert session.scalar(select(func.count()).select_from(Instance)) == 15
            queued = session.scalar(select(func.count()).select_from(Analysis))
        assert queued == 15, "every demo radiograph is queued for analysis on arrival"
    finally:
        runtime.close()


def test_the_development_token_works_and_replaces_the_previous_one(
    dev_settings: Settings,
) -> None:
    runtime = open_runtime(dev_settings)
    try:
        old = issue_development_token(runtime)
        new = issue_development_token(runtime)
    finally:
        runtime.close()
    with TestClient(create_app(dev_settings)) as client:
        assert client.get("/api/v1/me", headers=bearer(new)).json()["role"] == "admin"
        assert client.get("/api/v1/me", headers=bearer(old)).status_code == 401


def test_no_development_token_outside_development(settings: Settings) -> None:
    runtime = open_runtime(settings)
    try:
        with pytest.raises(RuntimeError, match="only made in development"):
            issue_development_token(runtime)
    finally:
        runtime.close()
