"""One place for every setting; read from the environment with the prefix ``VIGIL_``."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from service.bundled import bundled_dir

DEVELOPMENT_SECRET = "development-secret-change-me"  # noqa: S105 - the refused default
# The model bundles that ship with Vigil (the checkout's models/ folder, or an installed
# wheel's copy), found from here: `vigil serve` started in another folder has the demo model.
SHIPPED_MODELS = bundled_dir("models")


_DATABASE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


_UNPARSED_FIELD = re.compile(r'error parsing value for field "(\w+)"')
_ORIGIN = re.compile(r"^https?://[^/\s*]+$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", env_file=None, extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    var_dir: Path = Path("var")
    database_url: str = ""
    archive_dir: Path | None = None
    broker_url: str | None = None
    secret_key: str = DEVELOPMENT_SECRET

    host: str = "127.0.0.1"
    port: int = 8000
    base_url: str = ""

    # Limits on what one request may bring.
    max_instance_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    max_request_bytes: int = Field(default=2 * 1024 * 1024 * 1024, gt=0)
    max_instances_per_request: int = Field(default=1000, gt=0)
    # Zip files given to `vigil ingest`: refuse archives that expand beyond these.
    max_zip_ratio: int = Field(default=200, gt=0)
    max_zip_total_bytes: int = Field(default=8 * 1024 * 1024 * 1024, gt=0)
    max_zip_members: int = Field(default=100_000, gt=0)

    # Only image SOP classes (with Pixel Data) are accepted by default: the analysis needs images.
    accept_non_image: bool = False
    # fsync each stored file and its folder before answering; turn off only for throwaway data.
    fsync: bool = True
    # A read's access-log row is committed before the answer; on SQLite, true also waits for
    # the disk flush (as a store's always does). False: a power loss in the following moments
    # may lose the last reads' rows (a crash of Vigil itself loses none). PostgreSQL always
    # waits (its flush is cheap; see runtime.read_log_engine).
    durable_read_log: bool = False

    # Models and analyses.
    models_dir: Path = SHIPPED_MODELS
    results_dir: Path | None = None
    default_model: str = "vigil-cxr-demo"
    lung_model: str = "vigil-lungs"
    default_methods: list[str] = ["gradcam"]
    # Threads for torch in each process. One: with two cores shared with the web server, more
    # threads spin against each other and a 15 ms forward pass can take a second.
    torch_threads: int = Field(default=1, ge=1, le=64)
    # Analyse images on arrival when they match these rules (empty string: attribute absent).
    auto_analyse: bool = True
    analyse_modalities: list[str] = ["CR", "DX"]
    analyse_body_parts: list[str] = ["CHEST", ""]
    analyse_view_positions: list[str] = ["PA", "AP", ""]
    # Celery (Redis broker): an unacknowledged job goes back to the queue after this long.
    job_visibility_timeout_s: int = Field(default=3600, gt=0)
    job_queue: str = "vigil"
    # Send each analysis's DICOM outputs to another DICOMweb server (STOW-RS), e.g. the PACS.
    forward_url: str | None = None
    forward_token: str | None = None
    forward_attempts: int = Field(default=3, ge=1, le=10)
    forward_backoff_s: float = Field(default=1.0, ge=0)

    # Bias audit thresholds (per analysis).
    audit_min_lung_share: float = Field(default=0.5, ge=0, le=1)
    audit_max_border_share: float = Field(default=0.2, ge=0, le=1)
    audit_min_counterfactual_change: float = Field(default=0.05, ge=0, le=1)

    # Web pages (people log in with a password): the session cookie and how long it lasts.
    session_cookie_name: str = Field(default="vigil_session", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # None: Secure (HTTPS only) in production, not in development and tests (plain HTTP).
    session_cookie_secure: bool | None = None
    session_lifetime_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60)  # one shift

    # Web viewers on other origins (OHIF, say) allowed to call /dicomweb and /api/v1 from the
    # browser, each as scheme://host[:port]; a JSON list. None by default (same origin only).
    cors_origins: list[str] = []

    qido_default_limit: int = Field(default=100, gt=0)
    qido_max_limit: int = Field(default=10_000, gt=0)

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_scheme_and_host(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not _ORIGIN.match(origin):
                raise ValueError(
                    "each origin is scheme://host[:port], with no path and no wildcard"
                )
        return origins

    @model_validator(mode="after")
    def _fill_paths_and_refuse_default_secret(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.var_dir / 'vigil.db').as_posix()}"
        _check_database_url(self.database_url)
        if self.archive_dir is None:
            self.archive_dir = self.var_dir / "archive"
        if self.results_dir is None:
            self.results_dir = self.var_dir / "results"
        if self.environment is Environment.PRODUCTION and self.secret_key == DEVELOPMENT_SECRET:
            raise ValueError(
                "VIGIL_SECRET_KEY must be set to a secret of your own outside development"
            )
        if self.environment is Environment.PRODUCTION and len(self.secret_key) < 32:
            raise ValueError("VIGIL_SECRET_KEY must be at least 32 characters in production")
        return self

    @property
    def archive_path(self) -> Path:
        assert self.archive_dir is not None  # filled by the validator
        return self.archive_dir

    @property
    def results_path(self) -> Path:
        assert self.results_dir is not None  # filled by the validator
        return self.results_dir

    @property
    def cookie_secure(self) -> bool:
        """Return whether session cookies carry the Secure flag."""
        if self.session_cookie_secure is not None:
            return self.session_cookie_secure
        return self.environment is Environment.PRODUCTION

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _check_database_url(value: str) -> None:
    """Refuse a database URL Vigil cannot open, naming what it takes (never the URL itself:
    it may hold a password)."""
    try:
        url = make_url(value)
    except ArgumentError:
        url = None
    if url is None or url.drivername not in _DATABASE_DRIVERS:
        raise ValueError(
            "VIGIL_DATABASE_URL must be sqlite:///PATH or postgresql+psycopg://USER@HOST/DATABASE"
        )


def describe_settings_error(exc: ValidationError | SettingsError) -> str:
    """Say what is wrong with the settings, never with their values: those may be secrets
    (pydantic's own text quotes the input, the secret key and database password included)."""
    if isinstance(exc, SettingsError):  # a list or other JSON setting that is not JSON
        named = _UNPARSED_FIELD.search(str(exc))
        name = f"VIGIL_{named.group(1).upper()}: " if named else ""
        return f'invalid settings: {name}not valid JSON (a list is written ["a", "b"])'
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"VIGIL_{name}: {message}" if name else message)
    return "invalid settings: " + "; ".join(problems)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
