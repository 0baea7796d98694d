"""``vigil train lungs|classifier``: MONAI training that writes model bundles into models/."""

from __future__ import annotations

import click


@click.group()
def train() -> None:
    """Train models and write them as MONAI bundles."""
