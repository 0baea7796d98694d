"""``vigil``: serve, ingest, manage users and tokens, migrate, run workers.

Commands are imported when they run (``--help`` imports them all): serving and ingesting
import torch, and a process that only starts ``vigil worker`` or that re-imports this module
(the analysis helper process does, as every ``spawn`` child does with its parent's main)
should not pay for that.
"""

from __future__ import annotations

import importlib

import click
from pydantic import ValidationError
from pydantic_settings.exceptions import SettingsError

from service.errors import DatabaseUnreachable, SchemaUnknown

# Command name → (module, attribute), in the order ``--help`` lists them.
COMMANDS = {
    "serve": ("service.cli.serve_command", "serve"),
    "ingest": ("service.cli.ingest_command", "ingest"),
    "users": ("service.cli.user_commands", "users"),
    "tokens": ("service.cli.user_commands", "tokens"),
    "archive": ("service.cli.archive_commands", "archive"),
    "db": ("service.cli.db_commands", "db"),
    "worker": ("service.cli.worker_command", "worker"),
    "phantom": ("service.cli.phantom_command", "phantom"),
    "train": ("service.cli.train_commands", "train"),
    "audit": ("service.cli.audit_commands", "audit"),
}


class LazyCommands(click.Group):
    """A group whose commands are imported on first use; settings that cannot be read, a
    database that does not answer, and a file or folder the command cannot read or write are
    reported as such in one line (never the settings' values)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (ValidationError, SettingsError) as exc:
            if isinstance(exc, ValidationError) and exc.title != "Settings":
                raise
            from service.settings import describe_settings_error

            raise click.ClickException(describe_settings_error(exc)) from None
        except (DatabaseUnreachable, SchemaUnknown) as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a path the operator gave: missing, not writable, disk full
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        return command


@click.group(cls=LazyCommands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Vigil: decision support for medical images. The AI assists; the clinician decides."""
