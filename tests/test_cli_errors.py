"""The CLI answers what an operator gets wrong with one line saying so: settings that cannot be
read (never echoing their values, which may be secrets), a database that does not answer, an
expiry past the calendar, a schema a newer Vigil migrated. No traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from service.cli.main import cli
from service.runtime import Runtime
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
        (
            {"VIGIL_ANALYSE_MODALITIES": f"CR,{SECRET}"},  # a list, not written as JSON
            'invalid settings: VIGIL_ANALYSE_MODALITIES: not valid JSON (a list is written ["a", ',
        ),
        (
            {"VIGIL_CORS_ORIGINS": f'["https://{SECRET}/viewer"]'},
            "invalid settings: VIGIL_CORS_ORIGINS: each origin is scheme://host[:port], with no "
            "path and no wildcard",
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


def test_a_schema_a_newer_vigil_migrated_is_one_line_and_left_as_it_is(
    settings: Settings, runtime: Runtime
) -> None:
    # After a rollback to an older Vigil: the database names a revision this code lacks.
    with runtime.engine.begin() as connection:
        [ours] = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed0001'"))
    try:
        for command in (["serve"], ["db", "upgrade"], ["tokens", "create", "--role", "admin"]):
            result = run(settings, {}, *command)
            assert result.exit_code == 1, result.output
            assert result.output.startswith(
                "Error: the database's schema is at revision f00dfeed0001, which this version "
                f"of Vigil does not know (its newest is {ours}): a newer Vigil migrated it."
            ), result.output
            assert "Traceback" not in result.output
        with runtime.engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert list(versions.scalars()) == ["f00dfeed0001"]
    finally:
        with runtime.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": ours})


def test_a_port_in_use_is_one_line_before_anything_starts(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run(settings, {}, "serve", "--host", "127.0.0.1", "--port", port, "--demo")
    assert result.exit_code == 1, result.output
    assert result.output.startswith(
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (another server, "
    )
    assert "Vigil demo" not in result.output  # no banner pointing at the other server


def test_a_folder_that_cannot_be_made_is_one_line(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run(settings, {}, "phantom", "--out", str(blocker / "phantoms"), "--n", "1")
    assert result.exit_code == 1, result.output
    assert f"Error: Not a directory: {blocker / 'phantoms'}" in result.output
    assert "Traceback" not in result.output
