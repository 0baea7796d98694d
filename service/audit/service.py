"""Cohort reports: check the filters, gather the cases, compute, write the files, record.

The database is read in one short read-only session and written in short transactions
(the report's row, its progress, the access-log row): a report that takes a minute never
holds SQLite's write lock while it computes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service.audit import repository
from service.audit.report import GALLERY_SIZE, ModelInfo, assign_calls, assign_clinician_labels
from service.audit.report import build_report as compute_report
from service.audit.report_cases import (
    DEFAULT_THRESHOLD,
    GROUPING_ATTRIBUTES,
    ReportCase,
    ReportFilters,
    clinician_label,
    newest_per_image,
)
from service.audit.report_files import write_report
from service.auth.access_log import record_access
from service.auth.roles import Role
from service.auth.service import Principal
from service.db import session_scope
from service.errors import BadRequest, Forbidden, NotFound
from service.log_config import get_logger
from service.orm import AuditReport, ReportStatus
from service.orm.base import utcnow
from service.settings import Settings

log = get_logger(__name__)
PROGRESS_INTERVAL_S = 0.5  # write progress at most this often

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Caller:
    """Who asked for a report, for its row and the access log."""

    principal: Principal
    client_addr: str = ""
    request_id: str = ""


def reports_root(settings: Settings) -> Path:
    return settings.var_dir / "reports"


def report_folder(settings: Settings, report_id: uuid.UUID) -> Path:
    return reports_root(settings) / str(report_id)


def check_filters(
    session: Session, filters: ReportFilters, *, settings: Settings, role: Role
) -> None:
    """Refuse filters that cannot make a report, with the reason: dates the wrong way round,
    a model nobody has heard of, identifiers asked for by someone who is not an admin."""
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        raise BadRequest(
            f"the date range is inverted: from {filters.date_from.isoformat()} is after "
            f"to {filters.date_to.isoformat()}"
        )
    if filters.include_identifiers and role is not Role.ADMIN:
        raise Forbidden(
            f"role {role.value!r} may not include patient identifiers in a report (admins only)"
        )
    if filters.model is not None:
        installed = (settings.models_dir / filters.model / "configs" / "metadata.json").is_file()
        if not installed and not repository.has_analyses_by(session, filters.model):
            known = repository.model_names(session)
            raise NotFound(
                f"unknown model {filters.model!r}: no bundle of that name and no analyses by it"
                f" (models with analyses: {', '.join(known) or 'none yet'})"
            )


def gather_cases(
    session: Session, filters: ReportFilters, settings: Settings
) -> tuple[list[ReportCase], list[ModelInfo]]:
    """Return the report's cases (positive calls and clinician labels set) and its models."""
    cases = newest_per_image(repository.report_cases(session, filters))
    models = operating_points(settings.models_dir, cases)
    assign_calls(cases, {m.sha256: m for m in models})
    assign_clinician_labels(cases, clinician_labels(session, filters, cases))
    return cases, models


def clinician_labels(
    session: Session, filters: ReportFilters, cases: list[ReportCase]
) -> dict[uuid.UUID, int]:
    """Return (analysis id → clinician label) for the reviewed cases: the newest current
    decision on each analysis counts (see ``report_cases.clinician_label``)."""
    model_label = {c.analysis_id: c.label for c in cases}
    newest: dict[uuid.UUID, tuple[str, str]] = {}
    for analysis_id, decision, finding, _when in repository.current_decisions(session, filters):
        if analysis_id in model_label:
            newest[analysis_id] = (decision, finding)  # oldest first: the last one wins
    labels: dict[uuid.UUID, int] = {}
    for analysis_id, (decision, finding) in newest.items():
        label = clinician_label(model_label[analysis_id], decision, finding)
        if label is not None:
            labels[analysis_id] = label
    return labels


def operating_points(models_dir: Path, cases: list[ReportCase]) -> list[ModelInfo]:
    """Return each model version in the cases with its operating point: the bundle's, when
    the installed bundle has the same weights; 0.5 otherwise (said in the report)."""
    seen: dict[str, ModelInfo] = {}
    for case in cases:
        if case.model_sha256 in seen:
            continue
        threshold, source = DEFAULT_THRESHOLD, "default 0.5: bundle not installed"
        bundle = models_dir / case.model_name / "configs"
        try:
            metadata = json.loads((bundle / "metadata.json").read_text(encoding="utf-8"))
            inference = json.loads((bundle / "inference.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metadata, inference = {}, {}
        point = inference.get("operating_point") or {}
        if metadata.get("vigil", {}).get("weights_sha256") != case.model_sha256:
            if metadata:
                source = "default 0.5: the installed bundle has other weights"
        elif isinstance(point.get("threshold"), int | float):
            threshold, source = float(point["threshold"]), "bundle operating point"
        else:
            source = "default 0.5: the bundle names no operating point"
        seen[case.model_sha256] = ModelInfo(
            case.model_name, case.model_version, case.model_sha256, threshold, source
        )
    return list(seen.values())


def create_report(
    *,
    session_factory: sessionmaker[Session],
    settings: Settings,
    filters: ReportFilters,
    caller: Caller,
    on_progress: Progress | None = None,
    attributes: tuple[str, ...] = GROUPING_ATTRIBUTES,
) -> AuditReport:
    """Build a report, write its files and return its (finished) row."""
    with session_factory() as session:  # read-only: closed without a commit
        check_filters(session, filters, settings=settings, role=caller.principal.role)
        cases, models = gather_cases(session, filters, settings)
    images = min(GALLERY_SIZE, sum(c.flagged for c in cases))
    total = len(attributes) + 1 + images + 1
    with session_scope(session_factory) as session:
        row = repository.add_report(
            session,
            AuditReport(
                requested_by=caller.principal.username,
                role=caller.principal.role.value,
                filters=filters.as_json(),
                identified=filters.include_identifiers,
                progress_total=total,
                analyses=len(cases),
            ),
        )
    report_id = row.id
    tracker = _ProgressWriter(session_factory, report_id, total, on_progress)
    log.info("audit.report_started", report_id=str(report_id), analyses=len(cases))
    try:
        report = compute_report(
            cases,
            models=models,
            attributes=attributes,
            on_progress=lambda done, _total: tracker.set(done),
        )
        meta = _meta(row, filters)
        write_report(
            report_folder(settings, report_id),
            report_id=report_id,
            report=report,
            meta=meta,
            cases=cases,
            results_root=settings.results_path,
            on_image=tracker.step,
        )
    except Exception as exc:
        _finish(session_factory, report_id, caller, len(cases), failure=f"{type(exc).__name__}")
        log.exception("audit.report_failed", report_id=str(report_id))
        raise
    tracker.set(total)
    return _finish(session_factory, report_id, caller, len(cases), summary=_summary(report))


def read_report_json(settings: Settings, report: AuditReport) -> dict[str, Any]:
    """Return a finished report's JSON document; NotFound while it runs or after it failed."""
    path = report_folder(settings, report.id) / "report.json"
    if report.status is not ReportStatus.DONE or not path.is_file():
        raise NotFound(f"report {report.id} is {report.status.value}: no files")
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def readable(report: AuditReport | None, report_id: uuid.UUID, role: Role) -> AuditReport:
    """Return the report if this role may read it: identified reports are for admins only."""
    if report is None:
        raise NotFound(f"no report {report_id}")
    if report.identified and role is not Role.ADMIN:
        raise Forbidden(
            f"report {report_id} includes patient identifiers: role {role.value!r} may not read it"
        )
    return report


class _ProgressWriter:
    """Record a running report's progress (throttled) and pass it on to the caller."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        report_id: uuid.UUID,
        total: int,
        on_progress: Progress | None,
    ) -> None:
        self.session_factory = session_factory
        self.report_id = report_id
        self.total = total
        self.done = 0
        self.on_progress = on_progress
        self.written_at = 0.0

    def step(self) -> None:
        self.set(self.done + 1)

    def set(self, done: int) -> None:
        self.done = min(done, self.total)
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
        now = time.monotonic()
        if now - self.written_at >= PROGRESS_INTERVAL_S and self.done < self.total:
            self.written_at = now
            with session_scope(self.session_factory) as session:
                row = repository.get_report(session, self.report_id)
                if row is not None:
                    row.progress_done = self.done


def _finish(
    session_factory: sessionmaker[Session],
    report_id: uuid.UUID,
    caller: Caller,
    analyses: int,
    *,
    summary: dict[str, Any] | None = None,
    failure: str | None = None,
) -> AuditReport:
    with session_scope(session_factory) as session:
        row = repository.get_report(session, report_id)
        assert row is not None  # written above by this function's caller
        row.status = ReportStatus.FAILED if failure else ReportStatus.DONE
        row.failure_reason = failure
        row.finished_at = utcnow()
        if summary is not None:
            row.summary = summary
            row.highlighted = int(summary.get("highlighted", 0))
            row.progress_done = row.progress_total
        record_access(
            session=session,
            principal=caller.principal,
            action="audit.report",
            status_code=500 if failure else 200,
            client_addr=caller.client_addr,
            request_id=caller.request_id,
            result_count=analyses,
        )
        return row


def _meta(row: AuditReport, filters: ReportFilters) -> dict[str, Any]:
    created = row.created_at
    return {
        "id": str(row.id),
        "created_at": created.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "requested_by": row.requested_by,
        "role": row.role,
        "filters": filters.as_json(),
        "identified": filters.include_identifiers,
    }


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """Return the headline numbers kept on the report's row (for lists and pages)."""
    if report.get("empty"):
        return {"empty": True, "message": report.get("message"), "highlighted": 0}
    s = report["summary"]
    return {
        "empty": False,
        "analyses": s["n"],
        "flagged": s["flagged"],
        "flag_rate": s["flag_rate"]["rate"],
        "reviewed": s["clinicians"]["reviewed"],
        "highlighted": len(report["highlights"]),
        "highlights": [
            f"{h['attribute']} = {h['group']}: {h['outcome']}" for h in report["highlights"][:10]
        ],
        "models": [f"{m['name']} {m['version']}" for m in report["models"]],
    }
