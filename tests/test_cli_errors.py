"""The CLI answers what an operator gets wrong with one line saying so: settings that cannot be
read (never echoing their values, which may be secrets), a database that does not answer, an
expiry past the calendar. No traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from service.cli.main import cli
from service.settings import Settings, get_settings
from tests.test_database_unavailable import closed_port
from tests.test_tokens_at_rest import cli_env

SECRET = "hunter2-is-not-a-good-secret"


def run(settings: Settings, env: dict[str, str], *args: str) -> Result:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, list(args), env=cli_env(settings) | env)
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"VIGIL_ENVIRONMENT": "production", "VIGIL_SECRET_KEY": SECRET},
            "invalid settings: VIGIL_SECRET_KEY must be at least 32 characters in production",
        ),
        (
            {"VIGIL_DATABASE_URL": f"postgresql://vigil:{SECRET}@db/vigil"},
            "invalid settings: VIGIL_DATABASE_URL must be sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DATABASE",
        ),
        (
            {"VIGIL_PORT": f"{SECRET}"},
            "invalid settings: VIGIL_PORT: Input should be a valid integer",
        ),
    ],
)
def test_settings_that_cannot_be_read_are_named_without_their_values(
    settings: Settings, env: dict[str, str], problem: str
) -> None:
    result = run(settings, env, "tokens", "create", "--role", "admin")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {problem}")
    assert SECRET not in result.output and "Traceback" not in result.output


def test_a_database_that_does_not_answer_is_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.runtime.wait_for_database.__defaults__", (1, 0.0))  # one try
    url = f"postgresql+psycopg://vigil:{SECRET}@127.0.0.1:{closed_port()}/vigil"
    result = run(settings, {"VIGIL_DATABASE_URL": url}, "tokens", "create", "--role", "admin")
    assert result.exit_code == 1
    assert result.output.startswith("Error: the database did not answer in 1 tries: ")
    assert "Connection refused" in result.output
    assert SECRET not in result.output and "Traceback" not in result.output


def test_an_expiry_past_a_century_is_refused(settings: Settings) -> None:
    result = run(settings, {}, "tokens", "create", "--role", "admin", "--expires-days", "99999999")
    assert result.exit_code == 2
    assert "99999999 is not in the range 1<=x<=36500" in result.output
