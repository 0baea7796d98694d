"""What analyses need at run time: the loaded models, the job queue and the arrival rules."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from service.analysis import service
from service.analysis.helper_process import HelperProcess, shared_helper
from service.analysis.methods import ExplanationMethod, parse_methods
from service.analysis.resume_turn import ResumeTurn
from service.analysis.rules import ArrivalRules
from service.db import session_scope
from service.dicom.store import StoreOutcome, StoreStatus
from service.inference.registry import ModelRegistry
from service.log_config import get_logger
from service.runtime import Runtime
from service.worker.jobs import JobQueue, JobsUnavailable

log = get_logger(__name__)

NOT_QUEUED = "it could not be queued: the job broker cannot be reached; request it again"


@dataclass
class AnalysisServices:
    runtime: Runtime
    models: ModelRegistry
    jobs: JobQueue
    rules: ArrivalRules
    default_methods: tuple[ExplanationMethod, ...]
    helper: HelperProcess = field(default_factory=shared_helper)
    resume_turn: ResumeTurn | None = None  # held by the one process that resumes analyses

    def queues_on_arrival(self, outcomes: Sequence[StoreOutcome]) -> bool:
        """Whether ``on_instances_stored`` has work for these outcomes (a database write)."""
        return self.runtime.settings.auto_analyse and any(
            o.status is StoreStatus.STORED for o in outcomes
        )

    def on_instances_stored(self, outcomes: Sequence[StoreOutcome]) -> None:
        """Queue analyses for newly stored images that match the arrival rules."""
        if not self.queues_on_arrival(outcomes):
            return
        settings = self.runtime.settings
        stored = [o.sop_instance_uid for o in outcomes if o.status is StoreStatus.STORED]
        try:
            model = self.models.get(settings.default_model)
        except Exception as exc:  # noqa: BLE001 - storing must succeed even without a model
            log.warning("analysis.arrival_skipped", reason=str(exc))
            return
        queued: list[uuid.UUID] = []
        with session_scope(self.runtime.session_factory) as session:
            for sop_instance_uid in stored:
                answer = service.request_on_arrival(
                    session=session,
                    sop_instance_uid=sop_instance_uid,
                    model=model,
                    methods=self.default_methods,
                    rules=self.rules,
                )
                if answer.analysis is not None and answer.created:
                    session.flush()
                    queued.append(answer.analysis.id)
        self.enqueue(queued)  # after the commit: a job never sees an uncommitted row

    def enqueue(self, analysis_ids: Sequence[uuid.UUID]) -> bool:
        """Queue the analyses' jobs; return False when the job broker cannot take them: those
        not queued are recorded as failed, with that reason (asking again retries them)."""
        for sent, analysis_id in enumerate(analysis_ids):
            try:
                self.jobs.enqueue_analysis(analysis_id)
            except JobsUnavailable as exc:
                unsent = analysis_ids[sent:]
                log.error("analysis.not_queued", reason=str(exc), count=len(unsent))
                with session_scope(self.runtime.session_factory) as session:
                    for failed in unsent:
                        service.fail_unqueued(
                            session=session, analysis_id=failed, reason=NOT_QUEUED
                        )
                return False
        return True

    def close(self) -> None:
        self.jobs.close()
        if self.resume_turn is not None:
            self.resume_turn.release()


def analysis_services(
    runtime: Runtime, jobs_factory: Callable[[AnalysisServices], JobQueue] | None = None
) -> AnalysisServices:
    """Return the analysis services for a runtime; ``jobs_factory`` picks where jobs run."""
    settings = runtime.settings
    torch.set_num_threads(settings.torch_threads)
    services = AnalysisServices(
        runtime=runtime,
        models=ModelRegistry.scan(settings.models_dir),
        jobs=_NoJobs(),
        rules=ArrivalRules.from_settings(settings),
        default_methods=parse_methods(settings.default_methods),
    )
    if jobs_factory is not None:
        services.jobs = jobs_factory(services)
    return services


class _NoJobs:
    """Jobs are recorded as queued and left for the server or a worker to run."""

    def enqueue_analysis(self, analysis_id: uuid.UUID) -> None:
        log.info("analysis.left_queued", analysis_id=str(analysis_id))

    def others_waiting(self) -> bool:
        return False

    def close(self) -> None:
        pass
