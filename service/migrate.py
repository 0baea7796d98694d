"""Run Alembic migrations from code: the app and the CLI upgrade to head before serving."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from service.bundled import bundled_dir

MIGRATIONS_DIR = bundled_dir("migrations")


def alembic_config(database_url: str) -> Config:
    """Return an Alembic config for this project's migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would read '%' in a password as a reference.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database schema to a revision (the newest by default)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Downgrade the database schema to a revision ("base" removes every table)."""
    command.downgrade(alembic_config(database_url), revision)
