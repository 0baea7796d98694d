"""The DICOM JSON model (PS3.18 F.2): datasets to JSON without bulk data, and small builders."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from service.log_config import get_logger

log = get_logger(__name__)

DicomJson = dict[str, Any]

# Binary elements above this size are left out of metadata; they are retrieved as bulk data.
BULK_DATA_THRESHOLD = 1024
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
_UNDEFINED_LENGTH = 0xFFFFFFFF


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
    out: DicomJson = {}
    for tag in list(ds.keys()):
        if _is_bulk(ds, tag) or tag.group == 0x0002:
            continue
        try:
            elem = ds[tag]
            out[tag_key(tag)] = _element_json(elem)
        except Exception as exc:  # noqa: BLE001 - one bad element must not lose the instance
            log.warning("dicom_json.element_skipped", tag=tag_key(tag), error=type(exc).__name__)
    return out


def _element_json(elem: DataElement) -> dict[str, Any]:
    if elem.VR == "SQ":
        items = [dataset_to_json(item) for item in elem.value]
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    return elem.to_json_dict(
        bulk_data_element_handler=None, bulk_data_threshold=BULK_DATA_THRESHOLD
    )


def _is_bulk(ds: Dataset, tag: BaseTag) -> bool:
    raw = ds.get_item(tag, keep_deferred=True)
    if raw is None:
        return False
    vr = getattr(raw, "VR", None)
    if vr == "SQ":
        return False
    length = getattr(raw, "length", None)
    if length is None:  # an already-converted element
        value = getattr(raw, "value", None)
        length = len(value) if isinstance(value, bytes | bytearray) else 0
    if tag in (Tag(0x7FE00010), Tag(0x7FE00008), Tag(0x7FE00009)):
        return True
    return vr in _BINARY_VRS and (length > BULK_DATA_THRESHOLD or length == _UNDEFINED_LENGTH)


def first_value(attrs: DicomJson, tag: int) -> Any:
    """Return the first value of an attribute in DICOM JSON, or None."""
    values = attrs.get(tag_key(tag), {}).get("Value")
    return values[0] if values else None
