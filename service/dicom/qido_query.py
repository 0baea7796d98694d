"""QIDO-RS queries: the SELECT behind a search, and the related counts and metadata of a page.

Every filter is on an indexed column; the counts, modalities and stored metadata of a page
come from a few grouped queries over the page's keys, never one query per result.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict, namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, aliased

from service.db import lookup_connection
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
from service.sqlite_compiled import compiled_query, driver_connection

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
# The tables a search joins, in the order their columns come in a result row.
_TABLES = (Patient, Study, Series, Instance)
# How many of them a search at each level joins.
_TABLE_COUNT = {Level.STUDY: 2, Level.SERIES: 3, Level.INSTANCE: 4}


def _record_columns(entity: Any) -> list[Column[Any]]:
    """Return the columns a search reads of a table: its key and its indexed attributes."""
    table = entity.__table__
    keys = ["id"] + [a.key for a in COLUMNS.values() if a.class_ is entity]
    return [table.c[key] for key in keys]


# A row of one table as a search reads it: its key and indexed attributes, by name (as the
# mapped classes name them: ``record.patient_id``). Plain tuples: a search builds no ORM
# objects, which cost more than SQLite takes to find the rows.
Record = Any  # one of the _RECORDS tuples
_RECORDS: dict[Any, tuple[Callable[..., Record], int]] = {
    entity: (namedtuple(f"{entity.__name__}Record", keys), len(keys))
    for entity in _TABLES
    for keys in [[c.key for c in _record_columns(entity)]]
}


class RowSource(Protocol):
    """Runs a search's SELECTs: on SQLite straight on the driver, elsewhere through SQLAlchemy."""

    def rows(
        self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]: ...


class _DriverRows:
    def __init__(self, engine: Engine, connection: Any) -> None:
        self._engine, self._connection = engine, connection

    def rows(
        self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        return compiled_query(self._engine, statement).all(self._connection, params)


class _ConnectionRows:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def rows(
        self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        return self._connection.execute(statement, dict(params)).all()


@contextmanager
def row_source(engine: Engine) -> Iterator[RowSource]:
    """Yield what runs a search's statements, each on its own (no write lock is taken).

    On SQLite each statement is compiled once and run on a driver connection: through a
    session, building the statement's execution context and the ORM objects cost several
    times what SQLite takes to answer. On a database server, one connection in autocommit.
    The statements of one search need not agree on one moment: a page's counts may already
    include an instance stored after its rows were read.
    """
    if engine.dialect.name == "sqlite":
        with driver_connection(engine) as connection:
            yield _DriverRows(engine, connection)
        return
    with lookup_connection(engine) as connection:
        yield _ConnectionRows(connection)


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

    patient: Record
    study: Record
    series: Record | None = None
    instance: Record | None = None
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
    engine: Engine,
    spec: SearchSpec,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    needs: Needs = Needs(),
) -> Page:
    """Return one page of the rows a search matches, with what ``needs`` asks for."""
    with row_source(engine) as source:
        return _find(source, engine.dialect.name, spec, study_uid, series_uid, needs)


def _find(
    source: RowSource,
    dialect: str,
    spec: SearchSpec,
    study_uid: str | None,
    series_uid: str | None,
    needs: Needs,
) -> Page:
    params: dict[str, Any] = {"row_limit": spec.limit + 1, "row_offset": spec.offset}
    shapes: list[ConditionShape] = []
    for match in spec.matches:
        if match.condition is not None:
            shape, values = _bind_condition(match, match.condition, dialect, f"m{len(shapes)}")
            shapes.append(shape)
            params |= values
    if study_uid is not None:
        params["study_uid"] = study_uid
    if series_uid is not None:
        params["series_uid"] = series_uid
    stmt = _search_statement(
        spec.level, study_uid is not None, series_uid is not None, tuple(shapes), dialect
    )
    rows = source.rows(stmt, params)
    hits = [_hit(row, spec.level) for row in rows[: spec.limit]]
    page = Page(hits=hits, more=len(rows) > spec.limit)
    study_pks = list(dict.fromkeys(hit.study.id for hit in hits))
    series_pks = [hit.series.id for hit in hits if hit.series is not None]
    if (needs.study_counts or needs.modalities) and study_pks:
        _add_study_summaries(source, study_pks, page)
    if needs.series_counts and series_pks:
        page.series_instances = _series_counts(source, list(dict.fromkeys(series_pks)))
    if needs.metadata and hits:
        _attach_metadata(source, spec.level, hits)
    return page


def _hit(row: Sequence[Any], level: Level) -> Hit:
    """Split a result row into its tables' records."""
    records: list[Record] = []
    at = 0
    for entity in _TABLES[: _TABLE_COUNT[level]]:
        record, width = _RECORDS[entity]
        records.append(record(*row[at : at + width]))
        at += width
    return Hit(*records)


@cache  # one per level; statements are immutable (each .where() makes a new one)
def _select(level: Level) -> Select[*tuple[Any, ...]]:
    columns = [c for entity in _TABLES[: _TABLE_COUNT[level]] for c in _record_columns(entity)]
    stmt: Select[*tuple[Any, ...]] = select(*columns).join_from(
        Study, Patient, Study.patient_pk == Patient.id
    )
    if level >= Level.SERIES:
        stmt = stmt.join(Series, Series.study_pk == Study.id)
    if level is Level.INSTANCE:
        stmt = stmt.join(Instance, Instance.series_pk == Series.id)
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


# What a search's SQL depends on, apart from the values: (keyword, condition form, flags).
ConditionShape = tuple[str, str, tuple[bool, ...]]


@lru_cache(maxsize=512)
def _search_statement(
    level: Level,
    in_study: bool,
    in_series: bool,
    shapes: tuple[ConditionShape, ...],
    dialect: str,
) -> Select[*tuple[Any, ...]]:
    """Return the SELECT of one shape of search, its values left as bound parameters.

    Built once per shape: building a statement and its cache key cost more than SQLite
    takes to run a search by an indexed key.
    """
    stmt = _select(level)
    if in_study:
        stmt = stmt.where(Study.study_instance_uid == bindparam("study_uid"))
    if in_series:
        stmt = stmt.where(Series.series_instance_uid == bindparam("series_uid"))
    for index, shape in enumerate(shapes):
        stmt = stmt.where(_condition_sql(shape, dialect, f"m{index}"))
    return (
        stmt.order_by(*_order(level))
        .limit(bindparam("row_limit", type_=Integer))
        .offset(bindparam("row_offset", type_=Integer))
    )


def _bind_condition(
    match: Match, condition: Condition, dialect: str, name: str
) -> tuple[ConditionShape, dict[str, Any]]:
    """Return a condition's shape and its values, as ``_condition_sql`` names them."""
    keyword, kind = match.attribute.keyword, match.attribute.kind
    if isinstance(condition, AnyOf):
        form = "modalities" if kind is MatchKind.MODALITIES else "any-of"
        return (keyword, form, ()), {name: list(condition.values)}
    if isinstance(condition, Range):
        values = {f"{name}_low": condition.low, f"{name}_high": condition.high}
        flags = (condition.low is not None, condition.high is not None)
        return (keyword, "range", flags), {k: v for k, v in values.items() if v is not None}
    if isinstance(condition, Wildcard):
        if kind is MatchKind.PERSON_NAME:
            bounds = prefix_bounds(condition.pattern) if dialect == "sqlite" else None
            values = {name: like_pattern(condition.pattern)}
            if bounds is not None:
                values |= {f"{name}_low": bounds[0], f"{name}_high": bounds[1]}
            return (keyword, "name-like", (bounds is not None,)), values
        if dialect == "sqlite":
            return (keyword, "glob", ()), {name: glob_pattern(condition.pattern)}
        return (keyword, "like", ()), {name: like_pattern(condition.pattern)}
    assert isinstance(condition, Exact)
    if kind is MatchKind.PERSON_NAME:
        return (keyword, "name-equals", ()), {name: str(condition.value)}
    return (keyword, "equals", ()), {name: condition.value}


def _condition_sql(shape: ConditionShape, dialect: str, name: str) -> ColumnElement[bool]:
    """Return the SQL of one condition shape, its values bound as ``name``, ``name_low``…"""
    keyword, form, flags = shape
    if form == "modalities":
        # An alias: in a series search the outer query's own series row must not correlate.
        other = aliased(Series)
        return (
            select(other.id)
            .where(other.study_pk == Study.id, other.modality.in_(bindparam(name, expanding=True)))
            .exists()
        )
    column = COLUMNS[keyword]
    if form == "any-of":
        return column.in_(bindparam(name, expanding=True))
    if form == "range":
        # An empty stored date is unknown, not "before everything".
        parts = [column != ""]
        if flags[0]:
            parts.append(column >= bindparam(f"{name}_low"))
        if flags[1]:
            parts.append(column <= bindparam(f"{name}_high"))
        return and_(*parts)
    if form in ("name-like", "name-equals"):
        # lower() on both sides: PostgreSQL's LIKE is case-sensitive, SQLite's is not, and
        # each database's own lower() folds the stored name and the query the same way.
        lowered = func.lower(column)
        query = func.lower(bindparam(name, type_=String))
        if form == "name-equals":
            return lowered == query
        like = lowered.like(query, escape="\\")
        if not flags[0]:
            return like
        # SQLite uses an index for LIKE only on a plain column; the same prefix as a
        # range on lower(name) lets it use the index on that expression.
        return and_(
            lowered >= bindparam(f"{name}_low", type_=String),
            lowered < bindparam(f"{name}_high", type_=String),
            like,
        )
    if form == "glob":
        # SQLite's LIKE ignores case; GLOB is case-sensitive like every other DICOM match.
        return column.op("GLOB")(bindparam(name, type_=String))
    if form == "like":
        return column.like(bindparam(name, type_=String), escape="\\")
    return column == bindparam(name)


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


def _add_study_summaries(source: RowSource, study_pks: Sequence[uuid.UUID], page: Page) -> None:
    """Fill a page's series and instance counts and modalities per study (one query)."""
    series: Counter[uuid.UUID] = Counter()
    instances: Counter[uuid.UUID] = Counter()
    modalities: dict[uuid.UUID, set[str]] = defaultdict(set)
    for pk, modality, count in source.rows(_STUDY_SUMMARIES, {"study_pks": study_pks}):
        series[pk] += 1
        instances[pk] += count
        if modality:
            modalities[pk].add(modality)
    page.study_series, page.study_instances = dict(series), dict(instances)
    page.modalities = {pk: sorted(values) for pk, values in modalities.items()}


def _series_counts(source: RowSource, series_pks: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = source.rows(_SERIES_COUNTS, {"series_pks": series_pks})
    return {pk: n for pk, n in rows}


_INSTANCE_METADATA = select(Instance.id, Instance.dicom_json).where(
    Instance.id.in_(bindparam("instance_pks", expanding=True))
)


@cache  # one per level: compiled once, like the statements above
def _first_instance_metadata(level: Level) -> Select[*tuple[Any, ...]]:
    """The stored JSON of the first instance of each study (or series) in ``owners``."""
    owner = Series.study_pk if level is Level.STUDY else Instance.series_pk
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
    ranked = ranked_select.where(owner.in_(bindparam("owners", expanding=True))).subquery()
    return (
        select(ranked.c.owner, Instance.dicom_json)
        .join(Instance, Instance.id == ranked.c.instance_pk)
        .where(ranked.c.rank == 1)
    )


def _attach_metadata(source: RowSource, level: Level, hits: list[Hit]) -> None:
    """Fill each hit's stored DICOM JSON: its own, or its study's or series' first instance."""
    if level is Level.INSTANCE:
        by_pk = {hit.instance.id: hit for hit in hits if hit.instance is not None}
        for pk, metadata in source.rows(_INSTANCE_METADATA, {"instance_pks": list(by_pk)}):
            by_pk[pk].metadata = metadata
        return
    owners = list(
        dict.fromkeys(
            hit.study.id if level is Level.STUDY else hit.series.id  # type: ignore[union-attr]
            for hit in hits
        )
    )
    rows = source.rows(_first_instance_metadata(level), {"owners": owners})
    metadata = {pk: json for pk, json in rows}
    for hit in hits:
        key = hit.study.id if level is Level.STUDY else hit.series.id  # type: ignore[union-attr]
        hit.metadata = metadata.get(key)
