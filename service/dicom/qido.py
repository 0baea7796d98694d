"""QIDO-RS search (PS3.18 10.6): which attributes an answer carries, and each result's JSON.

Attributes come from three places: the index columns (fast, always there), values Vigil
computes (counts, ModalitiesInStudy, RetrieveURL), and the stored DICOM JSON of an instance
for anything else a client names with ``includefield``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from sqlalchemy import Engine

from service.dicom.dicom_json import DicomJson, attribute, tag_key
from service.dicom.qido_params import Level, SearchSpec
from service.dicom.qido_query import COLUMNS, Hit, Needs, Page, column_level, find

SPECIFIC_CHARACTER_SET = 0x00080005
MODALITIES_IN_STUDY = 0x00080061
RETRIEVE_URL = 0x00081190
STUDY_RELATED_SERIES = 0x00201206
STUDY_RELATED_INSTANCES = 0x00201208
SERIES_RELATED_INSTANCES = 0x00201209
# JSON is UTF-8, so every answer's text is in ISO_IR 192 whatever the stored files used.
UTF8 = "ISO_IR 192"

# Default return attributes, PS3.18 Tables 10.6.3-3, -4 and -5.
STUDY_DEFAULTS = (
    "SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
    "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances", "RetrieveURL",
)  # fmt: skip
SERIES_DEFAULTS = (
    "SpecificCharacterSet", "Modality", "SeriesDescription", "SeriesNumber",
    "SeriesInstanceUID", "StudyInstanceUID", "NumberOfSeriesRelatedInstances", "RetrieveURL",
)  # fmt: skip
INSTANCE_DEFAULTS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows",
    "Columns", "BitsAllocated", "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID",
    "RetrieveURL",
)  # fmt: skip
_DEFAULTS = {Level.STUDY: STUDY_DEFAULTS, Level.SERIES: SERIES_DEFAULTS}
# Values Vigil works out rather than reads, and the level each belongs to.
_COMPUTED = {
    SPECIFIC_CHARACTER_SET: Level.STUDY,
    MODALITIES_IN_STUDY: Level.STUDY,
    RETRIEVE_URL: Level.STUDY,
    STUDY_RELATED_SERIES: Level.STUDY,
    STUDY_RELATED_INSTANCES: Level.STUDY,
    SERIES_RELATED_INSTANCES: Level.SERIES,
}


@dataclass(frozen=True)
class SearchResult:
    results: list[DicomJson]
    # True when the server's limit cut the answer short: the client should page on.
    truncated: bool


def search(
    *,
    engine: Engine,
    spec: SearchSpec,
    base_url: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> SearchResult:
    """Return the DICOM JSON of one page of matches, and whether the server's limit cut it."""
    tags = return_tags(spec, in_study=study_uid is not None, in_series=series_uid is not None)
    page = find(engine, spec, study_uid=study_uid, series_uid=series_uid, needs=_needs(spec, tags))
    builder = _Builder(spec, tags, page, base_url)
    return SearchResult(
        results=[builder.build(hit) for hit in page.hits],
        truncated=page.more and spec.limit_is_server_cap,
    )


def return_tags(spec: SearchSpec, *, in_study: bool, in_series: bool) -> frozenset[int]:
    """Return the tags each result carries: the defaults, the matching keys, includefield."""
    keywords: list[str] = list(_DEFAULTS.get(spec.level, INSTANCE_DEFAULTS))
    # Outside a study (or series) the client has not seen its attributes yet (PS3.18 10.6.3).
    if spec.level >= Level.SERIES and not in_study:
        keywords += STUDY_DEFAULTS
    if spec.level is Level.INSTANCE and not in_series:
        keywords += SERIES_DEFAULTS
    keywords += (match.attribute.keyword for match in spec.matches)
    if spec.include_all:
        keywords += (k for k in COLUMNS if column_level(k) <= spec.level)
    tags = {_tag(keyword) for keyword in keywords} | spec.include_tags
    if spec.include_all:
        tags |= {tag for tag, level in _COMPUTED.items() if level <= spec.level}
    return frozenset(tags)


def _needs(spec: SearchSpec, tags: frozenset[int]) -> Needs:
    from_metadata = any(_source(tag, spec.level) == "metadata" for tag in tags)
    return Needs(
        study_counts=bool(tags & {STUDY_RELATED_SERIES, STUDY_RELATED_INSTANCES}),
        modalities=MODALITIES_IN_STUDY in tags,
        series_counts=SERIES_RELATED_INSTANCES in tags and spec.level >= Level.SERIES,
        metadata=from_metadata or (spec.include_all and spec.level is Level.INSTANCE),
    )


@lru_cache(maxsize=256)  # bounded: includefield tags come from clients
def _plan(level: Level, tags: frozenset[int]) -> tuple[tuple[str, int, str, str, str], ...]:
    """Return how a search's results are built, in tag order: (JSON key, tag, source,
    keyword, VR) of each return attribute. The same few sets of tags come again and again."""
    return tuple(
        (tag_key(tag), tag, _source(tag, level), keyword_for_tag(tag), _vr(tag))
        for tag in sorted(tags)
    )


@lru_cache(maxsize=4096)  # bounded: includefield tags come from clients
def _source(tag: int, level: Level) -> str:
    """Return where a tag's value comes from at a level: computed, index or metadata."""
    if tag in _COMPUTED and _COMPUTED[tag] <= level:
        return "computed"
    keyword = keyword_for_tag(tag)
    if keyword in COLUMNS and column_level(keyword) <= level:
        return "index"
    return "metadata"


class _Builder:
    """Turns result rows into DICOM JSON for one search's return attributes."""

    def __init__(self, spec: SearchSpec, tags: frozenset[int], page: Page, base_url: str) -> None:
        self._level = spec.level
        self._include_all = spec.include_all
        self._plan = _plan(spec.level, tags)
        self._page = page
        self._base_url = base_url

    def build(self, hit: Hit) -> DicomJson:
        """Return one result's attributes, ordered by tag."""
        out: DicomJson = {}
        merged = self._include_all and self._level is Level.INSTANCE and bool(hit.metadata)
        if merged:
            out.update(hit.metadata or {})
        for key, tag, source, keyword, vr in self._plan:
            if source == "computed":
                out[key] = self._computed(tag, hit)
            elif source == "index":
                out[key] = _index_attribute(vr, hit.value(keyword))
            else:
                stored = (hit.metadata or {}).get(key)
                if stored is not None:
                    out[key] = stored
                elif vr:
                    # A return key without a value is still answered, empty (PS3.4 C.2.2.1).
                    out[key] = {"vr": vr}
        # The plan is in tag order already; stored metadata merged in needs sorting.
        return dict(sorted(out.items())) if merged else out

    def _computed(self, tag: int, hit: Hit) -> dict[str, Any]:
        study_pk = hit.study.id
        if tag == SPECIFIC_CHARACTER_SET:
            return attribute("CS", UTF8)
        if tag == MODALITIES_IN_STUDY:
            return attribute("CS", *self._page.modalities.get(study_pk, []))
        if tag == STUDY_RELATED_SERIES:
            return attribute("IS", self._page.study_series.get(study_pk, 0))
        if tag == STUDY_RELATED_INSTANCES:
            return attribute("IS", self._page.study_instances.get(study_pk, 0))
        if tag == SERIES_RELATED_INSTANCES:
            assert hit.series is not None
            return attribute("IS", self._page.series_instances.get(hit.series.id, 0))
        assert tag == RETRIEVE_URL
        return attribute("UR", self._retrieve_url(hit))

    def _retrieve_url(self, hit: Hit) -> str:
        url = f"{self._base_url}/dicomweb/studies/{hit.study.study_instance_uid}"
        if self._level >= Level.SERIES and hit.series is not None:
            url += f"/series/{hit.series.series_instance_uid}"
        if self._level is Level.INSTANCE and hit.instance is not None:
            url += f"/instances/{hit.instance.sop_instance_uid}"
        return url


def _index_attribute(vr: str, value: Any) -> dict[str, Any]:
    if vr == "PN":
        return person_name(value or "")
    return attribute(vr, value)


def person_name(value: str) -> dict[str, Any]:
    """Return a PN attribute, its component groups (``=``-separated) split as DICOM JSON has it."""
    if not value:
        return {"vr": "PN"}
    groups = zip(("Alphabetic", "Ideographic", "Phonetic"), value.split("="), strict=False)
    return {"vr": "PN", "Value": [{name: text for name, text in groups if text}]}


@lru_cache(maxsize=256)  # the keywords of the default, matching and index attributes
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return int(tag)


@lru_cache(maxsize=4096)  # bounded: includefield tags come from clients
def _vr(tag: int) -> str:
    """Return a tag's VR from the data dictionary ("" when unknown, e.g. private tags)."""
    try:
        vr: str = dictionary_VR(tag)
    except KeyError:
        return ""
    # Where the dictionary allows two VRs ("US or SS") an empty value can take the first.
    return vr.split(" or ")[0]
