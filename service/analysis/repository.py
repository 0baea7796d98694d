"""Every query on analyses."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.analysis.rules import ImageFacts
from service.orm import Analysis, Instance, Series, Study


def study_images(session: Session, study: Study) -> list[tuple[Instance, ImageFacts]]:
    """Return a study's instances with the facts the analysis rules look at."""
    rows = session.execute(
        select(Instance, Series)
        .join(Series, Instance.series_pk == Series.id)
        .where(Series.study_pk == study.id)
        .order_by(Series.series_number, Instance.instance_number, Instance.sop_instance_uid)
    ).all()
    return [(instance, facts(instance, series)) for instance, series in rows]


def instance_with_facts(
    session: Session, sop_instance_uid: str
) -> tuple[Instance, Study, ImageFacts] | None:
    row = session.execute(
        select(Instance, Series, Study)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .where(Instance.sop_instance_uid == sop_instance_uid)
    ).one_or_none()
    if row is None:
        return None
    instance, series, study = row
    return instance, study, facts(instance, series)


def facts(instance: Instance, series: Series) -> ImageFacts:
    return ImageFacts(
        sop_class_uid=instance.sop_class_uid,
        modality=series.modality,
        body_part_examined=series.body_part_examined,
        view_position=instance.view_position,
        photometric_interpretation=instance.photometric_interpretation,
        rows=instance.rows,
        columns=instance.columns,
        number_of_frames=instance.number_of_frames,
    )


def find(
    session: Session, *, instance_pk: uuid.UUID, model_sha256: str, methods: str
) -> Analysis | None:
    return session.scalars(
        select(Analysis).where(
            Analysis.instance_pk == instance_pk,
            Analysis.model_sha256 == model_sha256,
            Analysis.methods == methods,
        )
    ).one_or_none()


def get(session: Session, analysis_id: uuid.UUID, *, for_update: bool = False) -> Analysis | None:
    query = select(Analysis).where(Analysis.id == analysis_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def get_with_context(
    session: Session, analysis_id: uuid.UUID
) -> tuple[Analysis, Instance, Series, Study] | None:
    """Return an analysis with its image's instance, series and study rows."""
    row = session.execute(
        select(Analysis, Instance, Series, Study)
        .join(Instance, Analysis.instance_pk == Instance.id)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .where(Analysis.id == analysis_id)
    ).one_or_none()
    return None if row is None else (row[0], row[1], row[2], row[3])


def list_for_study(session: Session, study: Study) -> Sequence[tuple[Analysis, Instance, Series]]:
    rows = session.execute(
        select(Analysis, Instance, Series)
        .join(Instance, Analysis.instance_pk == Instance.id)
        .join(Series, Instance.series_pk == Series.id)
        .where(Analysis.study_pk == study.id)
        .order_by(Analysis.created_at, Instance.sop_instance_uid)
    ).all()
    return [(a, i, s) for a, i, s in rows]
