"""Settings: embedded defaults, and no default secret outside development."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import DEVELOPMENT_SECRET, Environment, Settings


def test_embedded_defaults_are_sqlite_and_local_files(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VIGIL_DATABASE_URL", "VIGIL_ARCHIVE_DIR", "VIGIL_BROKER_URL", "VIGIL_VAR_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url == "sqlite:///var/vigil.db"
    assert settings.archive_path == Path("var/archive")
    assert settings.broker_url is None


def test_shipped_models_are_found_from_any_working_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("VIGIL_MODELS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    repo = Path(__file__).resolve().parent.parent
    assert settings.models_dir == repo / "models"
    assert (settings.models_dir / settings.default_model / "configs" / "metadata.json").is_file()
    assert (settings.models_dir / settings.lung_model / "configs" / "metadata.json").is_file()
    monkeypatch.setenv("VIGIL_MODELS_DIR", "elsewhere")
    assert Settings().models_dir == Path("elsewhere")


def test_environment_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_ARCHIVE_DIR", "/data/archive")
    monkeypatch.setenv("VIGIL_MAX_INSTANCES_PER_REQUEST", "7")
    settings = Settings()
    assert settings.archive_path == Path("/data/archive")
    assert settings.max_instances_per_request == 7


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="VIGIL_SECRET_KEY must be set"):
        Settings(environment=Environment.PRODUCTION, secret_key=DEVELOPMENT_SECRET)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(environment=Environment.PRODUCTION, secret_key="short")
    ok = Settings(environment=Environment.PRODUCTION, secret_key="x" * 40)
    assert ok.environment is Environment.PRODUCTION
