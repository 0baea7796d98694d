"""The DICOM JSON model (PS3.18 F.2): datasets to JSON without bulk data, and small builders."""

from __future__ import annotations

import math
from collections.abc import MutableSequence
from typing import Any

from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import AMBIGUOUS_VR

from service.log_config import get_logger

log = get_logger(__name__)

DicomJson = dict[str, Any]

# Binary elements above this size are left out of metadata; they are retrieved as bulk data.
BULK_DATA_THRESHOLD = 1024
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
_UNDEFINED_LENGTH = 0xFFFFFFFF
_BULK_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # (float) pixel data
_CHARACTER_SET = 0x00080005  # Specific Character Set: itself in the default repertoire
# VRs whose JSON value is the text itself, and those whose is a number (PS3.18 F.2.3).
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_FLOAT_VRS = frozenset({"DS", "FD", "FL"})
_NUMBER_TYPES: dict[str, type[int] | type[float]] = {
    "DS": float, "FD": float, "FL": float,
    "IS": int, "SL": int, "SS": int, "SV": int, "UL": int, "US": int, "UV": int,
}  # fmt: skip


def tag_key(tag: int) -> str:
    """Return the JSON key of a tag: eight upper-case hex digits."""
    return f"{tag:08X}"


def attribute(vr: str, *values: Any) -> dict[str, Any]:
    """Return one DICOM JSON attribute; no values gives an empty attribute."""
    if not values or all(v is None or v == "" for v in values):
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    return {"vr": vr, "Value": list(values)}


def dataset_to_json(ds: Dataset) -> DicomJson:
    """Return the DICOM JSON of a dataset, leaving out bulk binary data (pixels and the like).

    Elements that cannot be represented (a broken value in an otherwise good file) are
    left out rather than failing the whole instance.
    """
    return elements_to_json(converted_elements(ds))


def converted_elements(ds: Dataset) -> dict[int, DataElement]:
    """Return a dataset's elements with their values, leaving out file meta and bulk data.

    Elements read from a file are converted from their bytes here, by pydicom's own
    converter, without storing them back into the dataset: a dataset's item access does
    that plus bookkeeping that made it most of the cost of indexing an instance. Elements
    that need more than their own bytes (sequences, values left on disk, VRs that depend on
    other elements) go through the dataset's item access as before. One that cannot be
    converted is left out (and logged).
    """
    encoding: str | MutableSequence[str] = ds.original_character_set or ds._character_set
    out: dict[int, DataElement] = {}
    for tag, item in ds.items():
        if tag >> 16 == 0x0002 or _is_bulk(tag, item):
            continue
        try:
            if isinstance(item, DataElement):
                out[tag] = item
                continue
            elem = None
            if item.value is not None and item.VR != "SQ":
                elem = convert_raw_data_element(
                    item, encoding=default_encoding if tag == _CHARACTER_SET else encoding, ds=ds
                )
            if elem is None or elem.VR == "SQ" or elem.VR in AMBIGUOUS_VR:
                elem = ds[tag]
            out[tag] = elem
        except Exception as exc:  # noqa: BLE001 - one bad element must not lose the instance
            log.warning("dicom_json.element_skipped", tag=tag_key(tag), error=type(exc).__name__)
    return out


def elements_to_json(elements: dict[int, DataElement]) -> DicomJson:
    """Return the DICOM JSON of elements (``converted_elements``)."""
    out: DicomJson = {}
    for tag, elem in elements.items():
        try:
            # Plain values (text, numbers) are put in JSON here directly, several times
            # faster than pydicom's general ``to_json_dict`` (the same JSON: tested).
            plain = _plain_json(elem)
            out[tag_key(tag)] = plain if plain is not None else _element_json(elem)
        except Exception as exc:  # noqa: BLE001 - one bad element must not lose the instance
            log.warning("dicom_json.element_skipped", tag=tag_key(tag), error=type(exc).__name__)
    return out


def _element_json(elem: DataElement) -> dict[str, Any]:
    if elem.VR == "SQ":
        items = [dataset_to_json(item) for item in elem.value]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    return _finite(
        elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=BULK_DATA_THRESHOLD)
    )


def _finite(attr: dict[str, Any]) -> dict[str, Any]:
    """Return an attribute whose NaN and infinite numbers (valid in FL, FD and DS, not in
    JSON) are the strings "NaN", "Infinity" and "-Infinity", which ``float()`` reads back."""
    values = attr.get("Value")
    if attr.get("vr") in _FLOAT_VRS and values and not all(_is_finite(v) for v in values):
        attr["Value"] = [_json_number(v) for v in values]
    return attr


def _json_number(value: Any) -> Any:
    if _is_finite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _plain_json(elem: DataElement) -> dict[str, Any] | None:
    """Return the JSON of an element with a plain value (text, numbers, a sequence), or
    None to leave it to ``_element_json``."""
    vr, value = elem.VR, elem.value
    if vr == "SQ":
        return _element_json(elem)
    if vr in _TEXT_VRS:
        if isinstance(value, str):
            return {"vr": vr, "Value": [value]} if value else {"vr": vr}
        if isinstance(value, MultiValue) and all(isinstance(v, str) for v in value):
            return {"vr": vr, "Value": list(value)} if len(value) else {"vr": vr}
        return None
    number = _NUMBER_TYPES.get(vr)
    if number is None or value is None or isinstance(value, str | bytes):
        return None
    values = list(value) if isinstance(value, MultiValue) else [value]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    return _finite({"vr": vr, "Value": [number(v) for v in values]}) if values else {"vr": vr}


def _is_finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _is_bulk(tag: int, item: DataElement | RawDataElement) -> bool:
    """Return whether an element is bulk data: pixels, or binary data over the threshold."""
    vr = item.VR
    if vr == "SQ":
        return False
    if tag in _BULK_TAGS:
        return True
    length = getattr(item, "length", None)  # a raw element's; a converted one has none
    if length is None:
        value = item.value
        length = len(value) if isinstance(value, bytes | bytearray) else 0
    return vr in _BINARY_VRS and (length > BULK_DATA_THRESHOLD or length == _UNDEFINED_LENGTH)


def first_value(attrs: DicomJson, tag: int) -> Any:
    """Return the first value of an attribute in DICOM JSON, or None."""
    values = attrs.get(tag_key(tag), {}).get("Value")
    return values[0] if values else None
