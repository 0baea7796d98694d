"""The demo set-up behind `make run`: demo studies in the archive, a development token and a
demo clinician login for the review pages."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import select

from service.analysis.wiring import queue_only_analysis_services
from service.auth import service as auth_service
from service.auth.roles import Role
from service.auth.secrets import hash_password
from service.cli.context import cli_principal
from service.db import session_scope
from service.dicom.ingest_files import IngestSummary, ingest_paths
from service.orm import ApiToken, User
from service.orm.base import utcnow
from service.runtime import Runtime
from service.settings import Environment
from service.training.phantom.generator import PhantomOptions, generate

DEV_USER = "dev-admin"
DEV_TOKEN_NAME = "development token (make run)"  # noqa: S105 - a label
DEMO_CLINICIAN = "demo-clinician"


DEMO_PHANTOMS = PhantomOptions(n=12, seed=20261125)


def demo_study_files(var_dir: Path) -> list[Path]:
    """Return the demo studies: the real chest CR files (RG1_*) shipped by pydicom-data and a
    small synthetic phantom set (generated once, the same every time)."""
    import data_store  # the pydicom-data package

    real = sorted((Path(data_store.__file__).parent / "data").glob("RG1_*.dcm"))
    phantoms = var_dir / "demo-phantoms"
    if not (phantoms / "manifest.csv").is_file():
        generate(DEMO_PHANTOMS, phantoms, workers=1)
    return [*real, phantoms / "dicom"]


def load_demo_studies(runtime: Runtime) -> IngestSummary:
    """Store the demo studies and queue their analyses (idempotent: a second run adds nothing)."""
    analysis = queue_only_analysis_services(runtime)
    try:
        return ingest_paths(
            runtime=runtime,
            paths=demo_study_files(runtime.settings.var_dir),
            principal=cli_principal(),
            on_stored=analysis.on_instances_stored,
        )
    finally:
        analysis.close()


def issue_development_token(runtime: Runtime) -> str:
    """Revoke earlier development tokens and return a new admin token (development only)."""
    if runtime.settings.environment is not Environment.DEVELOPMENT:
        raise RuntimeError("development tokens are only made in development mode")
    with session_scope(runtime.session_factory) as session:
        user = session.scalars(select(User).where(User.username == DEV_USER)).one_or_none()
        if user is None:
            auth_service.create_user(session=session, username=DEV_USER, role=Role.ADMIN)
        for token in session.scalars(
            select(ApiToken).where(ApiToken.name == DEV_TOKEN_NAME, ApiToken.revoked_at.is_(None))
        ):
            token.revoked_at = utcnow()
        _token, secret = auth_service.create_token(
            session=session, role=Role.ADMIN, username=DEV_USER, name=DEV_TOKEN_NAME
        )
    return secret


def issue_demo_clinician(runtime: Runtime) -> tuple[str, str]:
    """Return the demo clinician's username and a new password, made for this run only
    (development only): a newcomer can log in to the review pages at once."""
    if runtime.settings.environment is not Environment.DEVELOPMENT:
        raise RuntimeError("the demo clinician is only made in development mode")
    password = secrets.token_urlsafe(12)
    with session_scope(runtime.session_factory) as session:
        user = session.scalars(select(User).where(User.username == DEMO_CLINICIAN)).one_or_none()
        if user is None:
            auth_service.create_user(
                session=session,
                username=DEMO_CLINICIAN,
                role=Role.CLINICIAN,
                password=password,
                display_name="Demo clinician",
            )
        else:
            user.password_hash = hash_password(password)  # last run's password stops working
    return DEMO_CLINICIAN, password
