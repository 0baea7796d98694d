"""`make run` makes a demo clinician who can log in to the review pages at once."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.demo import issue_demo_clinician
from service.runtime import open_runtime
from service.settings import Environment, Settings
from tests.review_support import log_in


def test_the_demo_clinician_logs_in_with_this_runs_password_only(settings: Settings) -> None:
    development = settings.model_copy(update={"environment": Environment.DEVELOPMENT})
    runtime = open_runtime(development)
    try:
        username, old = issue_demo_clinician(runtime)
        again, new = issue_demo_clinician(runtime)
    finally:
        runtime.close()
    assert username == again == "demo-clinician" and old != new and len(new) >= 12
    with TestClient(create_app(development)) as web:
        assert log_in(web, username, old).status_code == 401
        answer = log_in(web, username, new)
        assert answer.status_code == 303 and answer.headers["location"] == "/review/"


def test_no_demo_clinician_outside_development(settings: Settings) -> None:
    runtime = open_runtime(settings)
    try:
        with pytest.raises(RuntimeError, match="only made in development"):
            issue_demo_clinician(runtime)
    finally:
        runtime.close()
