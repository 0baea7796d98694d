"""``vigil archive check``: does the archive hold what the index says?"""

from __future__ import annotations

import click

from service.auth.access_log import record_access
from service.cli.context import cli_principal, runtime_for_cli
from service.db import session_scope
from service.dicom.archive_check import STRAY_GRACE_S, ArchiveReport, check_archive

_LISTED = 20  # paths shown per finding; the counts are always whole


@click.group()
def archive() -> None:
    """The DICOM file store."""


@archive.command("check")
@click.option("--verify", is_flag=True, help="Also re-hash every file (reads the whole archive).")
@click.option(
    "--remove-strays",
    is_flag=True,
    help=f"Delete files no row points to, once untouched for {STRAY_GRACE_S / 3600:g} hour.",
)
def check(verify: bool, remove_strays: bool) -> None:
    """Compare the index with the files: lost, changed and stray files.

    Exits with status 1 when a stored instance's file is missing or changed.
    """
    runtime = runtime_for_cli()
    try:
        settings = runtime.settings
        report = check_archive(
            runtime.session_factory,
            runtime.archive,
            verify=verify,
            remove_strays=remove_strays,
            own_folders=(settings.var_dir, settings.results_path),
        )
        with session_scope(runtime.session_factory) as session:
            record_access(
                session=session,
                principal=cli_principal(),
                action="archive.check",
                status_code=200,
                client_addr="cli",
                request_id="",
                result_count=report.rows,
            )
    finally:
        runtime.close()
    _print(report, verify)
    if report.data_lost:
        raise SystemExit(1)


def _print(report: ArchiveReport, verified: bool) -> None:
    checked = "checked and re-hashed" if verified else "checked (sizes and hashes not read)"
    click.echo(f"{report.rows} stored instances {checked}; {report.files} files in the archive")
    findings = [
        ("missing", report.missing, "stored instances whose file is missing (lost data)"),
        ("changed", report.changed, "stored instances whose file has other bytes (corrupted)"),
        ("stray", report.strays, "files no stored instance points to"),
        ("removed", report.removed, "strays removed"),
    ]
    for label, paths, meaning in findings:
        click.echo(f"{len(paths)} {meaning}")
        for path in paths[:_LISTED]:
            click.echo(f"  {label}: {path}", err=label in ("missing", "changed"))
        if len(paths) > _LISTED:
            click.echo(f"  ... and {len(paths) - _LISTED} more")
