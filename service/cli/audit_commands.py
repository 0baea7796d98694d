"""``vigil audit report`` (a cohort bias report) and ``vigil audit sanity`` (a model release's
explanation sanity check). The CLI's operator is an admin: identifiers on request.

Torch is imported inside ``sanity``: ``vigil --help`` should not wait for it.
"""

from __future__ import annotations

import io
import shutil
from datetime import datetime
from pathlib import Path

import click

from service.cli.context import cli_principal, fail, runtime_for_cli
from service.db import session_scope
from service.errors import VigilError

FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)
NEW_FOLDER = click.Path(file_okay=False, path_type=Path)
DAY = click.DateTime(formats=["%Y-%m-%d"])


@click.group()
def audit() -> None:
    """Bias audit: cohort reports and model sanity checks."""


@audit.command()
@click.option("--out", type=NEW_FOLDER, required=True, help="Folder to copy the report into.")
@click.option("--from", "date_from", type=DAY, default=None, help="First day analysed (UTC).")
@click.option("--to", "date_to", type=DAY, default=None, help="Last day analysed (UTC).")
@click.option("--model", default=None, help="Only analyses by this model (name).")
@click.option("--site", default=None, help="Only images from this InstitutionName.")
@click.option("--include-identifiers", is_flag=True,
              help="Put patient IDs, names and UIDs in the report (patient data!).")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bar.")
def report(
    out: Path,
    date_from: datetime | None,
    date_to: datetime | None,
    model: str | None,
    site: str | None,
    include_identifiers: bool,
    quiet: bool,
) -> None:
    """Write a cohort bias report (HTML, JSON, CSV) over the stored analyses."""
    from service.audit.report_cases import ReportFilters
    from service.audit.service import Caller, create_report, report_folder

    filters = ReportFilters(
        date_from=date_from.date() if date_from else None,
        date_to=date_to.date() if date_to else None,
        model=model,
        site=site,
        include_identifiers=include_identifiers,
    )
    runtime = runtime_for_cli()
    try:
        with click.progressbar(
            length=1, label="Building the report", file=io.StringIO() if quiet else None
        ) as bar:

            def advance(done: int, total: int) -> None:
                bar.length = total
                bar.update(done - bar.pos)

            row = create_report(
                session_factory=runtime.session_factory,
                settings=runtime.settings,
                filters=filters,
                caller=Caller(cli_principal()),
                on_progress=advance,
            )
        shutil.copytree(report_folder(runtime.settings, row.id), out, dirs_exist_ok=True)
    except VigilError as exc:
        raise fail(exc) from exc
    finally:
        runtime.close()
    summary = row.summary or {}
    if summary.get("empty"):
        click.echo(f"Report {row.id}: {summary.get('message')} (an empty report was written)")
    else:
        click.echo(
            f"Report {row.id}: {row.analyses} analyses, {summary.get('flagged', 0)} flagged, "
            f"{row.highlighted} group test(s) highlighted"
        )
        for line in summary.get("highlights", []):
            click.echo(f"  differs from the rest: {line}")
    if include_identifiers:
        click.echo("  The report holds patient identifiers: handle it as patient data.", err=True)
    click.echo(f"  {out / 'report.html'}\n  {out / 'report.json'}\n  {out / 'report.csv'}")


@audit.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--images", type=FOLDER, default=None,
              help="DICOM images to sample [generated phantoms].")  # fmt: skip
@click.option("--n", "count", type=click.IntRange(1, 500), default=20, show_default=True,
              help="How many images.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def sanity(bundle: Path, images: Path | None, count: int, seed: int) -> None:
    """Check that BUNDLE's Grad-CAM depends on its weights (cascading randomisation,
    Adebayo et al. 2018); store the result by the weights' sha256. Exit 1 when it fails.

    BUNDLE is a bundle folder or the name of one under the models folder.
    """
    import torch

    from service.audit.sanity import cascade_blocks
    from service.audit.sanity_service import run_sanity, sample_inputs, store
    from service.inference.registry import load_bundle

    runtime = runtime_for_cli()
    try:
        torch.set_num_threads(runtime.settings.torch_threads)
        path = bundle if bundle.is_dir() else runtime.settings.models_dir / bundle
        if not path.is_dir():
            raise click.ClickException(f"no bundle folder {bundle} (nor {path})")
        model = load_bundle(path)
        click.echo(f"{model.name} {model.version} (sha256 {model.sha256[:16]}…)")
        inputs = sample_inputs(model, images, count, seed=seed)
        with click.progressbar(
            length=len(cascade_blocks(model.network)), label="Randomising layers"
        ) as bar:
            result = run_sanity(model, inputs, seed=seed, on_step=lambda _d, _t: bar.update(1))
        with session_scope(runtime.session_factory) as session:
            store(session, model, result, cli_principal().username)
    except VigilError as exc:
        raise fail(exc) from exc
    finally:
        runtime.close()
    click.echo(f"{'step':>4}  {'randomised down to':<28} {'Spearman':>9} {'SSIM':>7}")
    for step in result.steps:
        mark = " ← decisive" if step.step == result.decisive_step else ""
        click.echo(
            f"{step.step:>4}  {step.block:<28} {step.mean_spearman:>9.3f} "
            f"{step.mean_ssim:>7.3f}{mark}"
        )
    click.echo(("PASSED: " if result.passed else "FAILED: ") + result.reason)
    if not result.passed:
        raise SystemExit(1)
