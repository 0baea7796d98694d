"""Admins manage people from the CLI: list them, disable one (password, page logins and API
tokens stop working at once), enable again, set a new password (old page logins end)."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from service.orm import ApiToken
from service.orm.base import utcnow
from service.runtime import Runtime
from service.settings import Settings
from tests.review_support import log_in
from tests.test_tokens_at_rest import invoke

PASSWORD = "a long enough password"
NEW_PASSWORD = "another long password"


def create_clinician(settings: Settings, name: str = "dr-lee") -> str:
    made = invoke(
        settings, "users", "create", name, "--role", "clinician", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    token = invoke(settings, "tokens", "create", "--role", "clinician", "--user", name)
    assert token.exit_code == 0, token.output
    return str(token.output).strip()


def logged_in(client: TestClient) -> bool:
    return client.get("/review/", follow_redirects=False).status_code == 200


def test_a_disabled_user_is_locked_out_at_once_and_enabled_again(
    settings: Settings, client: TestClient
) -> None:
    token = create_clinician(settings)
    bearer = {"Authorization": f"Bearer {token}"}
    assert log_in(client, "dr-lee", PASSWORD).status_code == 303 and logged_in(client)
    assert client.get("/api/v1/me", headers=bearer).status_code == 200
    disabled = invoke(settings, "users", "disable", "dr-lee")
    assert disabled.exit_code == 0, disabled.output
    assert "disabled user dr-lee: 1 page login(s) ended" in disabled.output
    assert not logged_in(client)  # the open login ended
    assert client.get("/api/v1/me", headers=bearer).status_code == 401
    refused = log_in(client, "dr-lee", PASSWORD)
    assert "deactivated" in refused.text
    listed = invoke(settings, "users", "list")
    assert "dr-lee\tclinician\tdisabled\tpassword" in listed.output
    assert invoke(settings, "users", "enable", "dr-lee").exit_code == 0
    assert client.get("/api/v1/me", headers=bearer).status_code == 200
    assert log_in(client, "dr-lee", PASSWORD).status_code == 303 and logged_in(client)


def test_a_new_password_ends_the_old_logins(settings: Settings, client: TestClient) -> None:
    create_clinician(settings)
    assert log_in(client, "dr-lee", PASSWORD).status_code == 303 and logged_in(client)
    short = invoke(settings, "users", "set-password", "dr-lee", "--password-stdin", stdin="x\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    changed = invoke(
        settings, "users", "set-password", "dr-lee", "--password-stdin",
        stdin=NEW_PASSWORD + "\n",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert "password set for dr-lee: 1 page login(s) ended" in changed.output
    assert not logged_in(client)
    assert log_in(client, "dr-lee", PASSWORD).status_code != 303
    assert log_in(client, "dr-lee", NEW_PASSWORD).status_code == 303 and logged_in(client)


def test_an_unknown_user_is_named(settings: Settings) -> None:
    for command in (["disable"], ["enable"]):
        result = invoke(settings, "users", *command, "nobody")
        assert result.exit_code == 1 and "no user 'nobody'" in result.output


def test_tokens_list_says_which_tokens_work(settings: Settings, runtime: Runtime) -> None:
    create_clinician(settings)  # its token never expires
    for days in ("30", "1"):
        made = invoke(settings, "tokens", "create", "--role", "integration", "--expires-days", days)
        assert made.exit_code == 0, made.output
    with runtime.session_factory.begin() as session:
        shortest = min(
            session.scalars(select(ApiToken).where(ApiToken.expires_at.is_not(None))),
            key=lambda token: token.expires_at or utcnow(),
        )
        shortest.expires_at = utcnow() - timedelta(hours=1)
    assert invoke(settings, "users", "disable", "dr-lee").exit_code == 0
    states = sorted(line.split("\t")[-1] for line in invoke(settings, "tokens", "list").output
                    .splitlines())  # fmt: skip
    in_30_days = (utcnow() + timedelta(days=30)).date().isoformat()
    yesterday_or_today = (utcnow() - timedelta(hours=1)).date().isoformat()
    assert states == [
        f"active until {in_30_days}", f"expired {yesterday_or_today}", "user disabled"
    ]  # fmt: skip
