"""QIDO-RS queries: the SELECT behind a search, and the related counts and metadata of a page.

Every filter is on an indexed column; the counts, modalities and stored metadata of a page
come from a few grouped queries over the page's keys, never one query per result.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from service.dicom.dicom_json import DicomJson
from service.dicom.qido_params import (
    AnyOf,
    Condition,
    Exact,
    Level,
    Match,
    MatchKind,
    Range,
    SearchSpec,
    Wildcard,
)
from service.orm import Instance, Patient, Series, Study

# Keyword → indexed column. BitsAllocated is returned but not matched.
COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "PatientID": Patient.patient_id,
    "PatientName": Patient.patient_name,
    "PatientSex": Patient.patient_sex,
    "PatientBirthDate": Patient.patient_birth_date,
    "StudyInstanceUID": Study.study_instance_uid,
    "StudyDate": Study.study_date,
    "StudyTime": Study.study_time,
    "AccessionNumber": Study.accession_number,
    "StudyID": Study.study_id,
    "StudyDescription": Study.study_description,
    "ReferringPhysicianName": Study.referring_physician_name,
    "PatientAge": Study.patient_age,
    "SeriesInstanceUID": Series.series_instance_uid,
    "Modality": Series.modality,
    "SeriesNumber": Series.series_number,
    "SeriesDescription": Series.series_description,
    "BodyPartExamined": Series.body_part_examined,
    "Manufacturer": Series.manufacturer,
    "ManufacturerModelName": Series.manufacturer_model_name,
    "InstitutionName": Series.institution_name,
    "StationName": Series.station_name,
    "SOPInstanceUID": Instance.sop_instance_uid,
    "SOPClassUID": Instance.sop_class_uid,
    "InstanceNumber": Instance.instance_number,
    "Rows": Instance.rows,
    "Columns": Instance.columns,
    "NumberOfFrames": Instance.number_of_frames,
    "BitsAllocated": Instance.bits_allocated,
    "ViewPosition": Instance.view_position,
}
_TABLE_LEVEL: dict[Any, Level] = {
    Patient: Level.STUDY,
    Study: Level.STUDY,
    Series: Level.SERIES,
    Instance: Level.INSTANCE,
}

# Which field of a Hit holds each table's row.
_HIT_FIELD: dict[Any, str] = {
    Patient: "patient",
    Study: "study",
    Series: "series",
    Instance: "instance",
}


def column_level(keyword: str) -> Level:
    """Return the query level whose rows hold an indexed keyword's column."""
    return _TABLE_LEVEL[COLUMNS[keyword].class_]


@dataclass(frozen=True)
class Needs:
    """What the answer shows beyond the rows themselves (one grouped query each; study counts
    and modalities share theirs)."""

    study_counts: bool = False
    modalities: bool = False
    series_counts: bool = False
    metadata: bool = False


@dataclass
class Hit:
    """One result row: the instance, series, study and patient it stands for."""

    patient: Patient
    study: Study
    series: Series | None = None
    instance: Instance | None = None
    # Stored DICOM JSON: the instance's own, or a representative instance's for a study/series.
    metadata: DicomJson | None = None

    def value(self, keyword: str) -> Any:
        """Return the indexed value of a keyword for this row."""
        column = COLUMNS[keyword]
        row = getattr(self, _HIT_FIELD[column.class_])
        return None if row is None else getattr(row, column.key)


@dataclass
class Page:
    hits: list[Hit]
    # Whether rows beyond this page match as well.
    more: bool
    study_series: dict[uuid.UUID, int] = field(default_factory=dict)
    study_instances: dict[uuid.UUID, int] = field(default_factory=dict)
    series_instances: dict[uuid.UUID, int] = field(default_factory=dict)
    modalities: dict[uuid.UUID, list[str]] = field(default_factory=dict)


def find(
    session: Session,
    spec: SearchSpec,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    needs: Needs = Needs(),
) -> Page:
    """Return one page of the rows a search matches, with what ``needs`` asks for."""
    dialect = session.get_bind().dialect.name
    stmt = _select(spec.level)
    if study_uid is not None:
        stmt = stmt.where(Study.study_instance_uid == study_uid)
    if series_uid is not None:
        stmt = stmt.where(Series.series_instance_uid == series_uid)
    for match in spec.matches:
        if match.condition is not None:
            stmt = stmt.where(_match_condition(match, match.condition, dialect))
    rows = session.execute(
        stmt.order_by(*_order(spec.level)).limit(spec.limit + 1).offset(spec.offset)
    ).all()
    hits = [Hit(*row) for row in rows[: spec.limit]]
    page = Page(hits=hits, more=len(rows) > spec.limit)
    study_pks = list(dict.fromkeys(hit.study.id for hit in hits))
    series_pks = [hit.series.id for hit in hits if hit.series is not None]
    if (needs.study_counts or needs.modalities) and study_pks:
        _add_study_summaries(session, study_pks, page)
    if needs.series_counts and series_pks:
        page.series_instances = _series_counts(session, list(dict.fromkeys(series_pks)))
    if needs.metadata and hits:
        _attach_metadata(session, spec.level, hits)
    return page


@cache  # one per level; statements are immutable (each .where() makes a new one)
def _select(level: Level) -> Select[*tuple[Any, ...]]:
    stmt: Select[*tuple[Any, ...]] = select(Patient, Study).join_from(
        Study, Patient, Study.patient_pk == Patient.id
    )
    if level >= Level.SERIES:
        stmt = stmt.add_columns(Series).join(Series, Series.study_pk == Study.id)
    if level is Level.INSTANCE:
        stmt = stmt.add_columns(Instance).join(Instance, Instance.series_pk == Series.id)
    return stmt


@cache
def _order(level: Level) -> tuple[ColumnElement[Any], ...]:
    # Newest studies first, then the order a viewer shows series and instances in; the UIDs
    # break ties so that paging with offset never skips or repeats a row.
    order: list[ColumnElement[Any]] = [
        Study.study_date.desc(),
        Study.study_time.desc(),
        Study.study_instance_uid.asc(),
    ]
    if level >= Level.SERIES:
        order += [Series.series_number.asc().nulls_last(), Series.series_instance_uid.asc()]
    if level is Level.INSTANCE:
        order += [Instance.instance_number.asc().nulls_last(), Instance.sop_instance_uid.asc()]
    return tuple(order)


def _match_condition(match: Match, condition: Condition, dialect: str) -> ColumnElement[bool]:
    kind = match.attribute.kind
    if kind is MatchKind.MODALITIES:
        assert isinstance(condition, AnyOf)
        # An alias: in a series search the outer query's own series row must not correlate.
        other = aliased(Series)
        return (
            select(other.id)
            .where(other.study_pk == Study.id, other.modality.in_(condition.values))
            .exists()
        )
    column = COLUMNS[match.attribute.keyword]
    if isinstance(condition, AnyOf):
        return column.in_(condition.values)
    if isinstance(condition, Range):
        # An empty stored date is unknown, not "before everything".
        parts = [column != ""]
        if condition.low is not None:
            parts.append(column >= condition.low)
        if condition.high is not None:
            parts.append(column <= condition.high)
        return and_(*parts)
    if kind is MatchKind.PERSON_NAME:
        # lower() on both sides: PostgreSQL's LIKE is case-sensitive, SQLite's is not, and
        # each database's own lower() folds the stored name and the query the same way.
        lowered = func.lower(column)
        if isinstance(condition, Wildcard):
            like = lowered.like(func.lower(like_pattern(condition.pattern)), escape="\\")
            bounds = prefix_bounds(condition.pattern) if dialect == "sqlite" else None
            if bounds is None:
                return like
            # SQLite uses an index for LIKE only on a plain column; the same prefix as a
            # range on lower(name) lets it use the index on that expression.
            return and_(lowered >= bounds[0], lowered < bounds[1], like)
        return lowered == func.lower(str(condition.value))
    if isinstance(condition, Wildcard):
        if dialect == "sqlite":
            # SQLite's LIKE ignores case; GLOB is case-sensitive like every other DICOM match.
            return column.op("GLOB")(glob_pattern(condition.pattern))
        return column.like(like_pattern(condition.pattern), escape="\\")
    assert isinstance(condition, Exact)
    return column == condition.value


def like_pattern(pattern: str) -> str:
    """Return a SQL LIKE pattern (escape character backslash) for a DICOM wildcard pattern."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def prefix_bounds(pattern: str) -> tuple[str, str] | None:
    """Return [low, high) holding every lower-cased value a wildcard pattern can match.

    None when the pattern starts with a wildcard, or when its fixed start is not ASCII:
    only for ASCII do Python's lower() and SQLite's lower() agree.
    """
    end = min((i for i in (pattern.find("*"), pattern.find("?")) if i >= 0), default=len(pattern))
    prefix = pattern[:end].lower()
    if not prefix or not prefix.isascii():
        return None
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def glob_pattern(pattern: str) -> str:
    """Return an SQLite GLOB pattern for a DICOM wildcard pattern."""
    # GLOB has no escape character: a literal '[' is written as a one-character class.
    return pattern.replace("[", "[[]")


# The statements below are built once: building a statement costs more than running it here.
# A correlated count per series is an index lookup whatever the planner's statistics say;
# a join with GROUP BY lets PostgreSQL pick a scan of every instance before ANALYZE.
_STUDY_SUMMARIES = select(
    Series.study_pk,
    Series.modality,
    select(func.count(Instance.id)).where(Instance.series_pk == Series.id).scalar_subquery(),
).where(Series.study_pk.in_(bindparam("study_pks", expanding=True)))
_SERIES_COUNTS = (
    select(Instance.series_pk, func.count(Instance.id))
    .where(Instance.series_pk.in_(bindparam("series_pks", expanding=True)))
    .group_by(Instance.series_pk)
)


def _add_study_summaries(session: Session, study_pks: Sequence[uuid.UUID], page: Page) -> None:
    """Fill a page's series and instance counts and modalities per study (one query)."""
    series: Counter[uuid.UUID] = Counter()
    instances: Counter[uuid.UUID] = Counter()
    modalities: dict[uuid.UUID, set[str]] = defaultdict(set)
    for pk, modality, count in session.execute(_STUDY_SUMMARIES, {"study_pks": study_pks}):
        series[pk] += 1
        instances[pk] += count
        if modality:
            modalities[pk].add(modality)
    page.study_series, page.study_instances = dict(series), dict(instances)
    page.modalities = {pk: sorted(values) for pk, values in modalities.items()}


def _series_counts(session: Session, series_pks: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = session.execute(_SERIES_COUNTS, {"series_pks": series_pks})
    return {pk: n for pk, n in rows}


def _attach_metadata(session: Session, level: Level, hits: list[Hit]) -> None:
    """Fill each hit's stored DICOM JSON: its own, or its study's or series' first instance."""
    if level is Level.INSTANCE:
        by_pk = {hit.instance.id: hit for hit in hits if hit.instance is not None}
        rows = session.execute(
            select(Instance.id, Instance.dicom_json).where(Instance.id.in_(list(by_pk)))
        ).all()
        for pk, metadata in rows:
            by_pk[pk].metadata = metadata
        return
    owner = Series.study_pk if level is Level.STUDY else Instance.series_pk
    owners = list(
        dict.fromkeys(
            hit.study.id if level is Level.STUDY else hit.series.id  # type: ignore[union-attr]
            for hit in hits
        )
    )
    # Rank instance keys only; the (large) JSON is read for the one chosen per owner.
    ranked_select = select(
        owner.label("owner"),
        Instance.id.label("instance_pk"),
        func.row_number()
        .over(partition_by=owner, order_by=(Instance.created_at, Instance.id))
        .label("rank"),
    ).select_from(Instance)
    if level is Level.STUDY:
        ranked_select = ranked_select.join(Series, Instance.series_pk == Series.id)
    ranked = ranked_select.where(owner.in_(owners)).subquery()
    rows = session.execute(
        select(ranked.c.owner, Instance.dicom_json)
        .join(Instance, Instance.id == ranked.c.instance_pk)
        .where(ranked.c.rank == 1)
    ).all()
    metadata = {pk: json for pk, json in rows}
    for hit in hits:
        key = hit.study.id if level is Level.STUDY else hit.series.id  # type: ignore[union-attr]
        hit.metadata = metadata.get(key)
