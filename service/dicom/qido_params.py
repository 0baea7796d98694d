"""QIDO-RS query parameters (PS3.18 8.3.4, 10.6.1) parsed into a typed search.

Pure: no database, no web framework. Every refusal is a ``BadRequest`` that names the
parameter but never echoes its value (a value may be a patient's name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, IntEnum

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from service.dicom.uids import is_valid_uid
from service.errors import BadRequest


class Level(IntEnum):
    """A query level; a higher value is deeper (a study holds series, a series instances)."""

    STUDY = 1
    SERIES = 2
    INSTANCE = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class MatchKind(Enum):
    """How values of an attribute are matched (PS3.4 C.2.2.2)."""

    TEXT = "text"  # exact or wildcard, case-sensitive
    PERSON_NAME = "person name"  # exact or wildcard, case-insensitive
    DATE = "date"  # exact or range
    TIME = "time"  # exact or range
    UID = "uid"  # a list of UIDs
    INTEGER = "integer"  # exact
    MODALITIES = "modalities"  # a list of modalities, any of which a series of the study has


@dataclass(frozen=True)
class Attribute:
    keyword: str
    tag: int
    vr: str
    level: Level
    kind: MatchKind


def _attr(keyword: str, level: Level, kind: MatchKind) -> Attribute:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return Attribute(keyword, int(tag), dictionary_VR(tag), level, kind)


_S, _R, _I = Level.STUDY, Level.SERIES, Level.INSTANCE
_TEXT, _PN, _DATE, _TIME = MatchKind.TEXT, MatchKind.PERSON_NAME, MatchKind.DATE, MatchKind.TIME
_UID, _INT = MatchKind.UID, MatchKind.INTEGER

# The attributes Vigil indexes, hence may be matched on. Patient attributes count as study
# attributes, as they do in QIDO-RS (PS3.18 Table 10.6.1-5).
MATCHABLE: dict[str, Attribute] = {
    a.keyword: a
    for a in (
        _attr("PatientID", _S, _TEXT),
        _attr("PatientName", _S, _PN),
        _attr("PatientSex", _S, _TEXT),
        _attr("PatientBirthDate", _S, _DATE),
        _attr("StudyInstanceUID", _S, _UID),
        _attr("StudyDate", _S, _DATE),
        _attr("StudyTime", _S, _TIME),
        _attr("AccessionNumber", _S, _TEXT),
        _attr("StudyID", _S, _TEXT),
        _attr("StudyDescription", _S, _TEXT),
        _attr("ReferringPhysicianName", _S, _PN),
        _attr("PatientAge", _S, _TEXT),
        _attr("ModalitiesInStudy", _S, MatchKind.MODALITIES),
        _attr("SeriesInstanceUID", _R, _UID),
        _attr("Modality", _R, _TEXT),
        _attr("SeriesNumber", _R, _INT),
        _attr("SeriesDescription", _R, _TEXT),
        _attr("BodyPartExamined", _R, _TEXT),
        _attr("Manufacturer", _R, _TEXT),
        _attr("ManufacturerModelName", _R, _TEXT),
        _attr("InstitutionName", _R, _TEXT),
        _attr("StationName", _R, _TEXT),
        _attr("SOPInstanceUID", _I, _UID),
        _attr("SOPClassUID", _I, _UID),
        _attr("InstanceNumber", _I, _INT),
        _attr("Rows", _I, _INT),
        _attr("Columns", _I, _INT),
        _attr("NumberOfFrames", _I, _INT),
        _attr("ViewPosition", _I, _TEXT),
    )
}
_MATCHABLE_BY_TAG = {a.tag: a for a in MATCHABLE.values()}


@dataclass(frozen=True)
class Exact:
    value: str | int


@dataclass(frozen=True)
class Wildcard:
    """A pattern where ``*`` stands for any run of characters and ``?`` for one character."""

    pattern: str


@dataclass(frozen=True)
class Range:
    """Inclusive bounds in the stored form (YYYYMMDD, HHMMSS.FFFFFF); None is open."""

    low: str | None
    high: str | None


@dataclass(frozen=True)
class AnyOf:
    values: tuple[str, ...]


Condition = Exact | Wildcard | Range | AnyOf


@dataclass(frozen=True)
class Match:
    """One matching key; ``condition`` None is universal matching (a return key only)."""

    attribute: Attribute
    condition: Condition | None


@dataclass(frozen=True)
class SearchSpec:
    level: Level
    matches: tuple[Match, ...]
    include_all: bool
    include_tags: frozenset[int]
    limit: int
    offset: int
    # True when the limit is the server's (none asked, or more than the maximum asked):
    # a truncated answer then carries a Warning header.
    limit_is_server_cap: bool


_RESERVED = frozenset({"includefield", "limit", "offset", "fuzzymatching"})
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_COUNT = re.compile(r"^[0-9]{1,18}$")
_INTEGER = re.compile(r"^[+-]?[0-9]{1,9}$")
_TIME_VALUE = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9](\.[0-9]{1,6})?)?)?$")
# The latest time each partial upper bound stands for: "12" means up to 12:59:59.999999.
_TIME_CEILING = "235959.999999"


def parse_search(
    params: Iterable[tuple[str, str]], *, level: Level, default_limit: int, max_limit: int
) -> SearchSpec:
    """Return the search that query parameters ask for at a level; raise BadRequest if bad."""
    matches: dict[str, Match] = {}
    include_tags: set[int] = set()
    include_all = False
    limit: int | None = None
    offset: int | None = None
    for key, value in params:
        if key == "includefield":
            for item in (v.strip() for v in value.split(",")):
                if item == "all":
                    include_all = True
                elif item:
                    include_tags.add(resolve_tag(item, parameter="includefield"))
        elif key == "limit":
            if limit is not None:
                raise BadRequest("limit: given more than once")
            limit = _count(key, value, least=1)
        elif key == "offset":
            if offset is not None:
                raise BadRequest("offset: given more than once")
            offset = _count(key, value, least=0)
        elif key == "fuzzymatching":
            # Fuzzy matching is optional (PS3.18 8.3.4.5); Vigil matches literally.
            if value.lower() not in ("true", "false"):
                raise BadRequest("fuzzymatching: must be true or false")
        else:
            attribute = _matching_attribute(key, level)
            if attribute.keyword in matches:
                raise BadRequest(f"{attribute.keyword}: given more than once")
            matches[attribute.keyword] = Match(attribute, parse_condition(attribute, value))
    effective = min(limit or default_limit, max_limit)
    return SearchSpec(
        level=level,
        matches=tuple(matches.values()),
        include_all=include_all,
        include_tags=frozenset(include_tags),
        limit=effective,
        offset=offset or 0,
        limit_is_server_cap=limit is None or limit > max_limit,
    )


def resolve_tag(name: str, *, parameter: str) -> int:
    """Return the tag named by a keyword or by eight hex digits; raise BadRequest otherwise."""
    if "." in name:
        raise BadRequest(f"{parameter}: attributes inside sequences are not supported ({name})")
    if _TAG.match(name):
        return int(name, 16)
    tag = tag_for_keyword(name)
    if tag is None:
        raise BadRequest(f"{parameter}: unknown attribute {name!r} (use a keyword or a tag)")
    return int(tag)


def parse_condition(attribute: Attribute, value: str) -> Condition | None:
    """Return how an attribute's value matches, None for universal matching."""
    name = attribute.keyword
    if value in ("", "*"):
        return None
    kind = attribute.kind
    if kind in (MatchKind.TEXT, MatchKind.PERSON_NAME):
        return Wildcard(value) if ("*" in value or "?" in value) else Exact(value)
    if kind is MatchKind.INTEGER:
        if not _INTEGER.match(value):
            raise BadRequest(f"{name}: must be an integer")
        return Exact(int(value))
    if kind is MatchKind.UID:
        uids = _split_list(value)
        if not all(is_valid_uid(uid) for uid in uids):
            raise BadRequest(f"{name}: must be a UID or a comma-separated list of UIDs")
        return AnyOf(uids)
    if kind is MatchKind.MODALITIES:
        modalities = _split_list(value)
        if any("*" in m or "?" in m for m in modalities):
            raise BadRequest(f"{name}: wildcards are not supported; list the modalities")
        return AnyOf(modalities)
    check = _date if kind is MatchKind.DATE else _time
    if "-" not in value:
        return Exact(check(name, value))
    low, _, high = value.partition("-")
    if not low and not high:
        raise BadRequest(f"{name}: a range needs at least one end (A-B, -B or A-)")
    low_bound = check(name, low) if low else None
    high_bound = check(name, high) if high else None
    if kind is MatchKind.TIME and high_bound is not None:
        high_bound += _TIME_CEILING[len(high_bound) :]
    if low_bound is not None and high_bound is not None and low_bound > high_bound:
        raise BadRequest(f"{name}: the range ends before it starts")
    return Range(low_bound, high_bound)


def _matching_attribute(key: str, level: Level) -> Attribute:
    tag = resolve_tag(key, parameter=key)
    attribute = _MATCHABLE_BY_TAG.get(tag)
    if attribute is None:
        keyword = keyword_for_tag(tag) or key
        raise BadRequest(
            f"{keyword}: matching on this attribute is not supported; "
            f"supported: {', '.join(MATCHABLE)}"
        )
    if attribute.level > level:
        raise BadRequest(
            f"{attribute.keyword}: a {attribute.level.label} attribute cannot be matched "
            f"in a {level.label} search"
        )
    return attribute


def _split_list(value: str) -> tuple[str, ...]:
    # PS3.18 separates UIDs with commas; DICOM's own value separator is the backslash.
    return tuple(v.strip() for v in re.split(r"[,\\]", value) if v.strip())


def _count(name: str, value: str, *, least: int) -> int:
    """A whole number from ``least`` up; the reason names the range the parameter takes."""
    if not _COUNT.match(value) or int(value) < least:
        kind = "a positive integer" if least == 1 else "a non-negative integer"
        raise BadRequest(f"{name}: must be {kind}")
    return int(value)


def _date(name: str, value: str) -> str:
    try:
        if len(value) != 8:
            raise ValueError(value)
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise BadRequest(f"{name}: dates are YYYYMMDD, ranges A-B, -B or A-") from None
    return value


def _time(name: str, value: str) -> str:
    if not _TIME_VALUE.match(value):
        raise BadRequest(f"{name}: times are HH, HHMM, HHMMSS or HHMMSS.FFFFFF, ranges A-B")
    return value
