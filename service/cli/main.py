"""``vigil``: serve, ingest, manage users and tokens, migrate, run workers."""

from __future__ import annotations

import click

from service.cli.audit_commands import audit
from service.cli.db_commands import db
from service.cli.ingest_command import ingest
from service.cli.phantom_command import phantom
from service.cli.serve_command import serve
from service.cli.train_commands import train
from service.cli.user_commands import tokens, users
from service.cli.worker_command import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Vigil: decision support for medical images. The AI assists; the clinician decides."""


cli.add_command(serve)
cli.add_command(ingest)
cli.add_command(users)
cli.add_command(tokens)
cli.add_command(db)
cli.add_command(worker)
cli.add_command(phantom)
cli.add_command(train)
cli.add_command(audit)
