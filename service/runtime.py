"""What every entry point needs before it works: a migrated database and the archive."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from service.db import create_db_engine, create_session_factory
from service.dicom.archive import Archive
from service.errors import DatabaseUnreachable
from service.log_config import get_logger
from service.migrate import upgrade
from service.settings import Settings

log = get_logger(__name__)
# One statement at a time, a few milliseconds each: a handful of connections is plenty.
_SMALL_POOL = {"pool_size": 4, "max_overflow": 4}


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    archive: Archive
    # Where reads' access-log rows are committed (see read_log_engine).
    read_log_engine: Engine

    def close(self) -> None:
        self.engine.dispose()
        if self.read_log_engine is not self.engine:
            self.read_log_engine.dispose()


def open_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Wait for the database, upgrade it to the newest schema, open the archive."""
    engine = create_db_engine(settings.database_url)
    wait_for_database(engine)
    if migrate:
        upgrade(settings.database_url)
    return Runtime(
        settings=settings,
        engine=engine,
        session_factory=create_session_factory(engine),
        archive=Archive(settings.archive_path, fsync=settings.fsync),
        read_log_engine=read_log_engine(settings, engine),
    )


def read_log_engine(settings: Settings, engine: Engine) -> Engine:
    """Return the engine that commits reads' access-log rows, one statement each.

    On SQLite, unless ``VIGIL_DURABLE_READ_LOG`` is set, its own connections whose commits do
    not wait for the disk (``synchronous=NORMAL``): that wait was a third of a small
    retrieve's time. On PostgreSQL the main engine: the row is one autocommitted INSERT and
    its flush cost about 0.1 ms here, less than a setting on connections of their own is
    worth (a connection pooler in front may refuse such settings).
    """
    if settings.durable_read_log or engine.dialect.name != "sqlite":
        return engine
    return create_db_engine(settings.database_url, durable_commits=False, **_SMALL_POOL)


def wait_for_database(engine: Engine, attempts: int = 30, delay_s: float = 1.0) -> None:
    """Return once the database answers; raise DatabaseUnreachable after ``attempts`` tries."""
    for attempt in range(1, attempts + 1):
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except Exception as exc:
            if attempt == attempts:
                cause = getattr(exc, "orig", None) or exc
                reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                raise DatabaseUnreachable(
                    f"the database did not answer in {attempts} tries: {reason}"
                ) from exc
            log.warning("db.waiting", attempt=attempt, error=type(exc).__name__)
            time.sleep(delay_s)
