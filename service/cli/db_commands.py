"""``vigil db upgrade|downgrade|backup``."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.engine import make_url

from service.db_backup import BackupFailed, backup_sqlite
from service.migrate import downgrade, upgrade
from service.settings import get_settings


@click.group()
def db() -> None:
    """Database schema migrations (Alembic) and backups."""


@db.command("backup")
@click.argument("destination", type=click.Path(path_type=Path))
def backup_command(destination: Path) -> None:
    """Copy the SQLite database to DESTINATION (a new file), consistent while the server
    runs; then back up the archive folder (in that order: see the README)."""
    settings = get_settings()
    if not settings.is_sqlite:
        raise click.ClickException(
            "the database is PostgreSQL: back it up with its own tool (pg_dump -Fc), then "
            "the archive folder"
        )
    source = Path(make_url(settings.database_url).database or "")
    if not source.is_file():
        raise click.ClickException(f"no database file at {source}")
    try:
        instances = backup_sqlite(source, destination)
    except BackupFailed as exc:
        raise click.ClickException(str(exc)) from None
    size_mb = destination.stat().st_size / 1e6
    click.echo(f"backed up to {destination} ({size_mb:.1f} MB, {instances} instances indexed)")


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
