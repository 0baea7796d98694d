"""``vigil phantom``: synthetic chest radiographs with ground truth (service/training/phantom)."""

from __future__ import annotations

import click


@click.command()
def phantom() -> None:
    """Write synthetic chest radiographs as DICOM, with masks and a manifest."""
    raise click.ClickException("the phantom generator is being written")
