"""API tokens are stored hashed; users and tokens are managed by the CLI."""

from __future__ import annotations

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.auth.secrets import token_sha256
from service.cli.main import cli
from service.orm import ApiToken, User
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import bearer


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_ARCHIVE_DIR": str(settings.archive_path),
        "VIGIL_VAR_DIR": str(settings.var_dir),
        "VIGIL_ENVIRONMENT": "test",
    }


def invoke(settings: Settings, *args: str, stdin: str | None = None):
    from service.settings import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, list(args), env=cli_env(settings), input=stdin)
    finally:
        get_settings.cache_clear()


def test_token_is_printed_once_and_only_its_hash_is_stored(
    settings: Settings, runtime: Runtime
) -> None:
    result = invoke(settings, "tokens", "create", "--role", "integration", "--name", "PACS")
    assert result.exit_code == 0, result.output
    secret = result.output.strip()
    assert secret.startswith("vgl_")
    with runtime.session_factory() as session:
        token = session.scalars(select(ApiToken)).one()
        assert token.token_sha256 == token_sha256(secret)
        assert secret not in (token.prefix, token.token_sha256, token.name)
        assert token.role.value == "integration"


def test_users_create_with_password_stores_an_argon2_hash(
    settings: Settings, runtime: Runtime
) -> None:
    result = invoke(
        settings,
        "users",
        "create",
        "drsmith",
        "--role",
        "clinician",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert result.exit_code == 0, result.output
    with runtime.session_factory() as session:
        user = session.scalars(select(User).where(User.username == "drsmith")).one()
        assert user.password_hash is not None
        assert user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash


def test_cli_errors_are_clear_messages(settings: Settings, runtime: Runtime) -> None:
    assert invoke(settings, "users", "create", "ann", "--role", "auditor").exit_code == 0
    again = invoke(settings, "users", "create", "ann", "--role", "auditor")
    assert again.exit_code != 0
    assert "already exists" in again.output
    wrong = invoke(settings, "tokens", "create", "--role", "integration", "--user", "ann")
    assert wrong.exit_code != 0
    assert "has role auditor" in wrong.output
    unknown = invoke(settings, "tokens", "create", "--role", "integration", "--user", "nobody")
    assert "no user 'nobody'" in unknown.output
    bad_role = invoke(settings, "tokens", "create", "--role", "superuser")
    assert bad_role.exit_code == 2
    assert "superuser" in bad_role.output


def test_tokens_list_and_revoke(settings: Settings, runtime: Runtime) -> None:
    secret = invoke(settings, "tokens", "create", "--role", "clinician").output.strip()
    listing = invoke(settings, "tokens", "list").output
    assert secret[:12] in listing
    assert secret not in listing
    assert invoke(settings, "tokens", "revoke", secret[:12]).exit_code == 0
    assert "revoked" in invoke(settings, "tokens", "list").output


def test_a_token_is_looked_up_while_requests_hold_every_pooled_connection(
    client: TestClient, integration_token: str
) -> None:
    # Tokens are looked up on the event loop (see token_lookup): waiting there for a pooled
    # connection that request threads hold would stall every request, so the lookups have
    # connections of their own.
    engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
    pool = engine.pool
    held = [engine.connect() for _ in range(pool.size() + pool._max_overflow)]
    try:
        response = client.get("/api/v1/me", headers=bearer(integration_token))
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "integration"
    finally:
        for connection in held:
            connection.close()
