"""``vigil serve``: run the API (and, with --demo, load demo studies and print a token)."""

from __future__ import annotations

import errno
import socket

import click
import uvicorn

from service.app import create_app
from service.cli.context import runtime_for_cli
from service.db import create_db_engine
from service.migrate import check_schema_known
from service.runtime import wait_for_database
from service.settings import Environment, Settings, get_settings


@click.command()
@click.option("--host", default=None, help="Default: VIGIL_HOST (127.0.0.1).")
@click.option("--port", type=int, default=None, help="Default: VIGIL_PORT (8000).")
@click.option("--demo", is_flag=True, help="Load demo studies and print a development token.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help=(
        "Server processes (each loads its own models). On SQLite their writes take turns; "
        "one of them resumes the analyses a previous run left unfinished."
    ),
)
def serve(host: str | None, port: int | None, demo: bool, workers: int) -> None:
    """Serve the API and DICOMweb on HOST:PORT."""
    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    _check_address(host, port)
    _check_database(settings)
    if demo:
        _prepare_demo(host, port)
    if settings.environment is Environment.DEVELOPMENT and host not in ("127.0.0.1", "localhost"):
        click.echo("warning: development mode listening beyond this machine", err=True)
    if workers == 1:
        app = create_app(settings)
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    else:
        # Migrate once here; each worker process then builds its own app and pool.
        runtime_for_cli().close()
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
        )


def _check_address(host: str, port: int) -> None:
    """Refuse an address the server could not listen on before anything starts: uvicorn
    finds out only after the app's start-up (migrations, demo studies, analyses resumed),
    and `--demo` would have printed where to go: to the other server on that port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _name, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            + (" (another server, another Vigil?)" if exc.errno == errno.EADDRINUSE else "")
        ) from None


def _check_database(settings: Settings) -> None:
    """Wait for the database and check its schema here: one that does not answer, or that a
    newer Vigil migrated, is then a one-line error (``main.LazyCommands``), not a trace from
    the server's start-up."""
    engine = create_db_engine(settings.database_url)
    try:
        wait_for_database(engine)
    finally:
        engine.dispose()
    check_schema_known(settings.database_url)


def _prepare_demo(host: str, port: int) -> None:
    from service.demo import issue_demo_clinician, issue_development_token, load_demo_studies

    runtime = runtime_for_cli()
    try:
        summary = load_demo_studies(runtime)
        token = issue_development_token(runtime)
        clinician, password = issue_demo_clinician(runtime)
    finally:
        runtime.close()
    base = f"http://{host}:{port}"
    click.echo(
        f"\nVigil demo: {summary.stored} new demo instances stored "
        f"({summary.already_stored} already there).\n"
        f"  API docs:   {base}/docs\n"
        f"  Studies:    curl -H 'Authorization: Bearer {token}' {base}/dicomweb/studies\n"
        f"  Dev token (admin, this run only): {token}\n"
        f"  Review:     {base}/review  (user {clinician}, password {password}, this run only)\n"
    )
