"""Failed page logins are throttled per address and per username: past ten in fifteen minutes,
tries are refused (429, Retry-After) before any password is checked, even a right one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth.login_throttle import WINDOW_S, LoginThrottle
from service.auth.roles import Role
from service.runtime import Runtime
from service.settings import Settings
from tests.review_support import add_people, log_in, review_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_past_the_limit_wait_out_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_address=3, per_username=4, window_s=60, clock=clock)
    for _ in range(3):
        assert throttle.wait_s("10.0.0.1", "ana") == 0
        throttle.failed("10.0.0.1", "ana")
        clock.now += 5
    assert throttle.wait_s("10.0.0.1", "bob") == 45  # this address, any username
    assert throttle.wait_s("10.0.0.2", "ana") == 0  # another address, under the username's 4
    throttle.failed("10.0.0.2", "ANA ")  # the same username, however written
    assert throttle.wait_s("10.0.0.3", "ana") == 45
    throttle.succeeded("ana")  # a right password clears the username, not the address
    assert throttle.wait_s("10.0.0.3", "ana") == 0
    assert throttle.wait_s("10.0.0.1", "ana") == 45
    clock.now += 45
    assert throttle.wait_s("10.0.0.1", "ana") == 0


@pytest.fixture
def web(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(review_settings(settings, tmp_path))) as client:
        yield client


def test_the_login_form_refuses_an_address_after_ten_failures(
    web: TestClient, runtime: Runtime
) -> None:
    people = add_people(runtime, [Role.CLINICIAN, Role.AUDITOR])
    for _ in range(10):
        wrong = log_in(web, people[Role.CLINICIAN], "not-the-password")
        assert wrong.status_code == 401
    refused = log_in(web, people[Role.CLINICIAN])  # the right password, not checked now
    assert refused.status_code == 429
    assert "Too many failed logins. Please wait 15 minutes" in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= WINDOW_S
    assert log_in(web, people[Role.AUDITOR]).status_code == 429  # the same address
    assert web.cookies.get("vigil_session") is None
