"""Run Alembic migrations from code: the app and the CLI upgrade to head before serving."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from service.bundled import bundled_dir
from service.db import create_db_engine
from service.errors import SchemaUnknown

MIGRATIONS_DIR = bundled_dir("migrations")


def alembic_config(database_url: str) -> Config:
    """Return an Alembic config for this project's migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would read '%' in a password as a reference.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database schema to a revision (the newest by default); SchemaUnknown when
    a newer Vigil migrated it."""
    check_schema_known(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Downgrade the database schema to a revision ("base" removes every table)."""
    check_schema_known(database_url)
    command.downgrade(alembic_config(database_url), revision)


def check_schema_known(database_url: str) -> None:
    """Raise SchemaUnknown when the database's schema is at a revision these migrations do
    not have: after a rollback to an older Vigil, say. Alembic's own error was a traceback
    through the server's start-up; this says what happened and what to do."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
    finally:
        engine.dispose()
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = [revision for revision in current if revision not in known]
    if unknown:
        head = script.get_current_head()
        raise SchemaUnknown(
            f"the database's schema is at revision {', '.join(unknown)}, which this version "
            f"of Vigil does not know (its newest is {head}): a newer Vigil migrated it. Run "
            f"that version, or downgrade the schema with it first (vigil db downgrade {head})"
        )
