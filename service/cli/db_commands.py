"""``vigil db upgrade|downgrade``."""

from __future__ import annotations

import click

from service.migrate import downgrade, upgrade
from service.settings import get_settings


@click.group()
def db() -> None:
    """Database schema migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Upgrade the schema (to the newest revision by default)."""
    upgrade(get_settings().database_url, revision)
    click.echo(f"database at revision {revision}")


@db.command("downgrade")
@click.argument("revision")
def downgrade_command(revision: str) -> None:
    """Downgrade the schema to REVISION ("base" drops every table)."""
    downgrade(get_settings().database_url, revision)
    click.echo(f"database at revision {revision}")
