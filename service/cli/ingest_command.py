"""``vigil ingest PATH...``: files, folders and zip files, with a progress bar and a summary."""

from __future__ import annotations

import io
from pathlib import Path

import click

from service.analysis.wiring import queue_only_analysis_services
from service.cli.context import cli_principal, runtime_for_cli
from service.dicom.ingest_files import IngestSummary, ingest_paths
from service.dicom.sources import SourceItem, count_items
from service.dicom.store import StoreOutcome


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--quiet", is_flag=True, help="No progress bar; print the summary only.")
def ingest(paths: tuple[Path, ...], quiet: bool) -> None:
    """Store the DICOM instances in PATHS (files, folders, zip files) in the archive."""
    runtime = runtime_for_cli()
    analysis = queue_only_analysis_services(runtime)
    summary = IngestSummary()
    try:
        total = count_items(list(paths))
        with click.progressbar(
            length=total, label="Ingesting", show_pos=True, file=io.StringIO() if quiet else None
        ) as bar:

            def advance(_item: SourceItem, _outcome: StoreOutcome | None) -> None:
                bar.update(1)

            ingest_paths(
                runtime=runtime,
                paths=list(paths),
                principal=cli_principal(),
                on_item=advance,
                on_stored=analysis.on_instances_stored,
                summary=summary,
            )
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: {summary.stored} stored, {summary.already_stored} already stored, "
            f"{len(summary.failed)} failed so far; the same command again goes on (what is "
            "stored is skipped)",
            err=True,
        )
        raise SystemExit(130) from None
    finally:
        analysis.close()
        runtime.close()
    skipped = f", {len(summary.skipped)} skipped" if summary.skipped else ""
    click.echo(
        f"{summary.stored} stored, {summary.already_stored} already stored, "
        f"{len(summary.failed)} failed{skipped} (of {summary.total})"
    )
    for label, reason in summary.skipped:
        click.echo(f"  skipped: {label}: {reason}")
    for label, reason in summary.failed:
        click.echo(f"  failed: {label}: {reason}", err=True)
    if summary.failed:
        raise SystemExit(1)
