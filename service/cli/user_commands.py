"""``vigil users create|list|disable|enable|set-password``, ``vigil tokens create|list|revoke``."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import click

from service.auth import repository
from service.auth import service as auth_service
from service.auth.roles import Role
from service.cli.context import fail, runtime_for_cli
from service.db import session_scope
from service.errors import VigilError
from service.orm import ApiToken, User
from service.orm.base import as_utc, utcnow

MAX_EXPIRES_DAYS = 36500  # a century (far later dates leave the calendar: year 9999)

ROLE_CHOICE = click.Choice([r.value for r in Role])


@click.group()
def users() -> None:
    """People and service accounts."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=ROLE_CHOICE, required=True)
@click.option("--display-name", default="")
@click.option(
    "--password-stdin", is_flag=True, help="Read a password from stdin (for page logins)."
)
def create_user(username: str, role: str, display_name: str, password_stdin: bool) -> None:
    """Create a user with a role."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    runtime = runtime_for_cli()
    try:
        with session_scope(runtime.session_factory) as session:
            user = auth_service.create_user(
                session=session,
                username=username,
                role=Role(role),
                password=password,
                display_name=display_name,
            )
            click.echo(f"created user {user.username} ({user.role.value})")
    except VigilError as exc:
        raise fail(exc) from exc
    finally:
        runtime.close()


@users.command("list")
def list_users() -> None:
    """List users: name, role, state, whether they have a page password."""
    runtime = runtime_for_cli()
    try:
        with session_scope(runtime.session_factory) as session:
            for user in repository.list_users(session):
                state = "active" if user.is_active else "disabled"
                password = "password" if user.password_hash else "tokens only"
                click.echo(f"{user.username}\t{user.role.value}\t{state}\t{password}")
    finally:
        runtime.close()


@users.command("disable")
@click.argument("username")
def disable_user(username: str) -> None:
    """Disable a user (someone who left, a lost laptop): its password, page logins and API
    tokens stop working at once; nothing it recorded is removed."""
    _set_active(username, active=False)


@users.command("enable")
@click.argument("username")
def enable_user(username: str) -> None:
    """Enable a disabled user again (its old page logins stay ended)."""
    _set_active(username, active=True)


def _set_active(username: str, *, active: bool) -> None:
    runtime = runtime_for_cli()
    try:
        with session_scope(runtime.session_factory) as session:
            user, ended = auth_service.set_user_active(
                session=session, username=username, active=active
            )
            name = user.username
    except VigilError as exc:
        raise fail(exc) from exc
    finally:
        runtime.close()
    if active:
        click.echo(f"enabled user {name}")
    else:
        click.echo(f"disabled user {name}: {ended} page login(s) ended; its tokens refused")


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from stdin.")
def set_password(username: str, password_stdin: bool) -> None:
    """Give a user a new page password (at least 12 characters); its page logins end."""
    password = sys.stdin.readline().rstrip("\n")
    runtime = runtime_for_cli()
    try:
        with session_scope(runtime.session_factory) as session:
            ended = auth_service.set_password(session=session, username=username, password=password)
    except VigilError as exc:
        raise fail(exc) from exc
    finally:
        runtime.close()
    click.echo(f"password set for {username.strip()}: {ended} page login(s) ended")


@click.group()
def tokens() -> None:
    """API tokens for machines (viewers, PACS, scripts)."""


@tokens.command("create")
@click.option("--role", type=ROLE_CHOICE, required=True)
@click.option("--user", "username", default=None, help="Owner (default: svc-ROLE account).")
@click.option("--name", default="", help="What the token is for, e.g. 'PACS router'.")
@click.option(
    "--expires-days",
    type=click.IntRange(min=1, max=MAX_EXPIRES_DAYS),
    default=None,
    help=f"Days until the token stops working (1 to {MAX_EXPIRES_DAYS}); default: never.",
)
def create_token(role: str, username: str | None, name: str, expires_days: int | None) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    runtime = runtime_for_cli()
    try:
        with session_scope(runtime.session_factory) as session:
            _token, secret = auth_service.create_token(
                session=session,
                role=Role(role),
                username=username,
                name=name,
                expires_in=timedelta(days=expires_days) if expires_days else None,
            )
    except VigilError as exc:
        raise fail(exc) from exc
    finally:
        runtime.close()
    click.echo(secret)


@tokens.command("list")
def list_tokens() -> None:
    """List tokens: prefix, role, owner, name, state (active until its expiry, expired,
    revoked, or its user disabled)."""
    runtime = runtime_for_cli()
    now = utcnow()
    try:
        with session_scope(runtime.session_factory) as session:
            for token, user in repository.list_tokens(session):
                click.echo(
                    f"{token.prefix}\t{token.role.value}\t{user.username}\t{token.name}\t"
                    f"{_token_state(token, user, now)}"
                )
    finally:
        runtime.close()


def _token_state(token: ApiToken, user: User, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and as_utc(token.expires_at) <= now:
        return f"expired {as_utc(token.expires_at):%Y-%m-%d}"
    if not user.is_active:
        return "user disabled"
    if token.expires_at is not None:
        return f"active until {as_utc(token.expires_at):%Y-%m-%d}"
    return "active"


@tokens.command("revoke")
@click.argument("prefix")
def revoke_token(prefix: str) -> None:
    """Revoke a token by the prefix `vigil tokens list` shows."""
    runtime = runtime_for_cli()
    try:
        with session_scope(runtime.session_factory) as session:
            auth_service.revoke_token(session=session, prefix=prefix)
        click.echo(f"revoked {prefix}")
    except VigilError as exc:
        raise fail(exc) from exc
    finally:
        runtime.close()
