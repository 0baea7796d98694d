"""Shared by the CLI commands: the runtime, and who the local operator is."""

from __future__ import annotations

import getpass

import click

from service.auth.roles import Role
from service.auth.service import Principal
from service.errors import VigilError
from service.log_config import configure_logging
from service.runtime import Runtime, open_runtime
from service.settings import get_settings


def runtime_for_cli() -> Runtime:
    """Return a migrated runtime (settings that cannot be read: see ``main.LazyCommands``)."""
    settings = get_settings()
    configure_logging("WARNING", settings.log_json)
    return open_runtime(settings)


def cli_principal() -> Principal:
    """Return the principal that stands for whoever runs the CLI on this machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(user_pk=None, username=f"cli:{user}"[:64], role=Role.ADMIN)


def fail(exc: VigilError) -> click.ClickException:
    return click.ClickException(exc.message)
