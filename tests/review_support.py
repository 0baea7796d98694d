"""Shared set-up for the review tests, browser tests and the page benchmark: people with
passwords, analysed studies, and logging in to the pages."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from service.auth import service as auth_service
from service.auth.roles import Role
from service.db import session_scope
from service.runtime import Runtime
from service.settings import Settings
from tests.factories import multipart_body, stow_headers
from tests.model_bundles import TEST_CLASSIFIER, write_test_classifier

PASSWORD = "correct horse battery staple"
REPO_MODELS = Path(__file__).resolve().parent.parent / "models"
LUNG_MODEL = "vigil-lungs"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

Client = TestClient | httpx.Client


def review_settings(settings: Settings, tmp_path: Path, *, lungs: bool = False) -> Settings:
    """Return settings with the tiny test classifier (and the shipped lung model if asked)."""
    models = tmp_path / "models"
    write_test_classifier(models)
    if lungs and (REPO_MODELS / LUNG_MODEL).is_dir():
        (models / LUNG_MODEL).symlink_to(REPO_MODELS / LUNG_MODEL)
    return settings.model_copy(update={"models_dir": models, "default_model": TEST_CLASSIFIER})


def model_env(settings: Settings) -> dict[str, str]:
    """Return the environment a `vigil serve` process needs for these settings' models."""
    return {
        "VIGIL_MODELS_DIR": str(settings.models_dir),
        "VIGIL_DEFAULT_MODEL": settings.default_model,
        "VIGIL_RESULTS_DIR": str(settings.results_path),
    }


def add_people(runtime: Runtime, roles: list[Role]) -> dict[Role, str]:
    """Create one person per role (username ``<role>-person``, password PASSWORD)."""
    names: dict[Role, str] = {}
    with session_scope(runtime.session_factory) as session:
        for role in roles:
            name = f"{role.value}-person"
            auth_service.create_user(session=session, username=name, role=role, password=PASSWORD)
            names[role] = name
    return names


def store(client: Client, token: str, parts: list[bytes]) -> None:
    response = client.post(
        "/dicomweb/studies", content=multipart_body(parts), headers=stow_headers(token)
    )
    assert response.status_code == 200, response.text


def wait_for_analyses(
    client: Client, token: str, study_uids: list[str], timeout: float = 180
) -> list[dict[str, Any]]:
    """Return the analyses of these studies once all are done (fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        found: list[dict[str, Any]] = []
        for uid in study_uids:
            response = client.get(
                f"/api/v1/studies/{uid}/analyses", headers={"Authorization": f"Bearer {token}"}
            )
            found += response.json()
        statuses = {a["status"] for a in found}
        if len(found) >= len(study_uids) and statuses <= {"done", "failed"}:
            assert statuses == {"done"}, [a.get("failure_reason") for a in found]
            return found
        assert time.monotonic() < deadline, f"analyses not done in {timeout} s: {statuses}"
        time.sleep(0.2)


def csrf_of(html: str) -> str:
    """Return the first CSRF token in a page's forms."""
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def log_in(client: Client, username: str, password: str = PASSWORD) -> Any:
    """Log in through the login form (CSRF and all); return the answer to the POST."""
    form = client.get("/review/login")
    return client.post(
        "/review/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
