"""docker-compose.yml is valid and wires the API, workers, PostgreSQL, Redis and one archive."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_is_valid() -> None:
    env = os.environ | {"VIGIL_SECRET_KEY": "s" * 40, "POSTGRES_PASSWORD": "pw"}
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = result.stdout
    for service in ("api:", "worker:", "postgres:", "redis:"):
        assert service in config
    assert "VIGIL_BROKER_URL: redis://redis:6379/0" in config
    assert config.count("target: /archive") + config.count(":/archive") >= 2


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_refuses_to_start_without_secrets() -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIGIL_SECRET_KEY", "POSTGRES_PASSWORD")
    }
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "VIGIL_SECRET_KEY" in result.stderr
