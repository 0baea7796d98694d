"""Ingest files, folders and zip files from disk (``vigil ingest`` and the demo loader)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.auth.access_log import record_access
from service.auth.service import Principal
from service.db import Executes
from service.dicom.sources import SourceItem, SourceLimits, iter_items
from service.dicom.store import StoreOutcome, StoreStatus, store_received
from service.dicom.uids import MEDIA_STORAGE_DIRECTORY_STORAGE
from service.runtime import Runtime


@dataclass
class IngestSummary:
    stored: int = 0
    already_stored: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    # Left alone on purpose, not failures: a medium's DICOMDIR, a symbolic link in a folder.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.stored + self.already_stored + len(self.failed) + len(self.skipped)


def ingest_paths(
    *,
    runtime: Runtime,
    paths: list[Path],
    principal: Principal,
    on_item: Callable[[SourceItem, StoreOutcome | None], None] | None = None,
    on_stored: Callable[[list[StoreOutcome]], None] | None = None,
    summary: IngestSummary | None = None,
) -> IngestSummary:
    """Store every DICOM instance found under the paths; return counts and per-file reasons
    (in ``summary`` when given: what it says so far stays the caller's if it is interrupted)."""
    settings = runtime.settings
    limits = SourceLimits(
        max_instance_bytes=settings.max_instance_bytes,
        max_zip_ratio=settings.max_zip_ratio,
        max_zip_total_bytes=settings.max_zip_total_bytes,
        max_zip_members=settings.max_zip_members,
    )
    summary = summary if summary is not None else IngestSummary()

    def record(session: Executes, outcome: StoreOutcome) -> None:
        record_access(
            session=session,
            principal=principal,
            action="dicom.store",
            status_code=200,
            client_addr="cli",
            request_id="",
            study_instance_uid=outcome.study_instance_uid,
            series_instance_uid=outcome.series_instance_uid,
            sop_instance_uid=outcome.sop_instance_uid,
        )

    for item in iter_items(paths, runtime.archive, limits):
        outcome: StoreOutcome | None = None
        if item.received is None:
            (summary.skipped if item.skipped else summary.failed).append((item.label, item.error))
        else:
            try:
                outcome = store_received(
                    session_factory=runtime.session_factory,
                    archive=runtime.archive,
                    received=item.received,
                    require_image=not settings.accept_non_image,
                    audit=record,
                )
            finally:  # consumed by the store; removed here when Ctrl-C came before it
                item.received.path.unlink(missing_ok=True)
            if outcome.status is StoreStatus.STORED:
                summary.stored += 1
            elif outcome.status is StoreStatus.ALREADY_STORED:
                summary.already_stored += 1
            elif outcome.sop_class_uid == MEDIA_STORAGE_DIRECTORY_STORAGE:
                summary.skipped.append((item.label, outcome.reason))  # on every CD: no failure
            else:
                summary.failed.append((item.label, outcome.reason))
        if on_stored is not None and outcome is not None and outcome.ok:
            on_stored([outcome])
        if on_item is not None:
            on_item(item, outcome)
    return summary
