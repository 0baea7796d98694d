"""Part 10 bytes of a data set built in memory, in Explicit VR Little Endian, quickly.

pydicom's writer spends ~17 µs of Python on every element (a buffer per element, character
sets converted per element, ambiguous VRs corrected again at every nesting level): for a
structured report's thousand nested elements that is most of the time an analysis spends on
its measurement report. This writer walks the data set once and encodes the common value
representations itself; anything else (person names, tags, values it does not recognise,
text its character set cannot hold) is handed to pydicom's own element writer. Its bytes are
pydicom's bytes (tested for every output kind); data sets it does not handle at all
(another transfer syntax, ambiguous VRs, several or escape-coded character sets) are written
by pydicom's ``dcmwrite``.
"""

from __future__ import annotations

import io
import struct
from copy import deepcopy
from typing import Any

import pydicom
from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian

_PREAMBLE = b"\x00" * 128 + b"DICM"
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
_ITEM_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_SEQUENCE_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
_LONG_LENGTH_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UR"})
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})
_NUMBER_STRING_VRS = frozenset({"DS", "IS"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_FORMATS = {
    "FD": "d", "FL": "f", "SL": "l", "SV": "q", "UL": "L", "US": "H", "UV": "Q"
}  # fmt: skip
# SS is left to pydicom: it writes the first value of a LUT descriptor as US.
# Python codecs that encode one character set with no escape sequences: what pydicom's
# ``encode_string`` does with them is ``str.encode``.
_PLAIN_CODECS = frozenset({"iso8859", "latin_1", "UTF8", "utf_8", "ascii"})
_DEFAULT_ENCODING = "iso8859"


class _NotPlain(Exception):
    """The data set needs pydicom's writer."""


def to_part10(ds: Dataset) -> bytes:
    """Return ``ds`` as a DICOM Part 10 file (preamble, file meta, data set), the bytes
    ``pydicom.dcmwrite(buffer, ds, enforce_file_format=True)`` writes."""
    file_meta = FileMetaDataset(deepcopy(getattr(ds, "file_meta", FileMetaDataset())))
    try:
        if file_meta.get("TransferSyntaxUID") != ExplicitVRLittleEndian:
            raise _NotPlain
        if getattr(ds, "preamble", None) not in (None, b"\x00" * 128):
            raise _NotPlain
        body = _encode_dataset(ds, _DEFAULT_ENCODING)
    except _NotPlain:
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()
    _check_groups(ds)
    for meta_keyword, keyword in (
        ("MediaStorageSOPClassUID", "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
    ):
        in_meta, in_dataset = file_meta.get(meta_keyword), ds.get(keyword)
        if in_meta is None or (in_dataset and in_dataset != in_meta):
            setattr(file_meta, meta_keyword, in_dataset)
    validate_file_meta(file_meta, enforce_standard=True)
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, file_meta, enforce_standard=True)
    return b"".join((_PREAMBLE, meta.getvalue(), body))


def _check_groups(ds: Dataset) -> None:
    tags = ds.keys()
    groups = {tag >> 16 for tag in tags}
    if 0 in groups or 2 in groups:
        raise ValueError("command set or file meta elements in the data set: use pydicom")


def _encode_dataset(ds: Dataset, parent_encoding: Any) -> bytes:
    charset = ds.get("SpecificCharacterSet", parent_encoding)
    codecs = convert_encodings(charset)
    if len(codecs) != 1 or codecs[0] not in _PLAIN_CODECS:
        raise _NotPlain
    codec = codecs[0]
    parts: list[bytes] = []
    for tag in sorted(ds.keys()):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # group lengths are not written (PS3.5 7.2)
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement):
            raise _NotPlain
        parts.append(_encode_element(elem, charset, codec))
    return b"".join(parts)


def _encode_element(elem: DataElement, charset: Any, codec: str) -> bytes:
    vr = elem.VR
    if len(vr) != 2 or elem.is_buffered:
        raise _NotPlain
    if vr == "SQ":
        return _encode_sequence(elem, charset)
    value = b"" if elem.is_empty else _encode_value(elem, vr, codec)
    if value is None:  # not one it knows: pydicom's own element writer
        return _pydicom_element(elem, charset)
    if elem.is_undefined_length:
        raise _NotPlain
    return _header(elem.tag, vr, len(value)) + value


def _encode_value(elem: DataElement, vr: str, codec: str) -> bytes | None:
    value = elem.value
    if vr in _STRING_VRS or vr == "UI":
        text = _joined(value)
        if text is None:
            return None
        if len(text) % 2:
            text += "\0" if vr == "UI" else " "
        return _encoded(text, _DEFAULT_ENCODING)
    if vr in _TEXT_VRS:
        text = _joined(value)
        if text is None:
            return None
        encoded = _encoded(text, codec)
        return encoded + b" " if encoded is not None and len(encoded) % 2 else encoded
    if vr in _NUMBER_STRING_VRS:
        values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
        text = "\\".join(
            v.original_string if hasattr(v, "original_string") else str(v) for v in values
        )
        return _encoded(text + " " if len(text) % 2 else text, _DEFAULT_ENCODING)
    if vr in _NUMBER_FORMATS:
        return _numbers(value, _NUMBER_FORMATS[vr])
    if vr in _BINARY_VRS and isinstance(value, bytes | bytearray):
        data = bytes(value)
        return data + b"\x00" if len(data) % 2 else data
    return None


def _joined(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, MultiValue | list | tuple) and all(isinstance(v, str) for v in value):
        return "\\".join(value)
    return None


def _encoded(text: str, codec: str) -> bytes | None:
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        return None  # pydicom decides (other character sets, replacement, warnings)


def _numbers(value: Any, fmt: str) -> bytes | None:
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    try:
        return struct.pack(f"<{len(values)}{fmt}", *values)
    except struct.error:
        return None


def _encode_sequence(elem: DataElement, charset: Any) -> bytes:
    items: list[bytes] = []
    for item in elem.value:
        body = _encode_dataset(item, charset)
        if getattr(item, "is_undefined_length_sequence_item", False):
            items.append(_ITEM + b"\xff\xff\xff\xff" + body + _ITEM_DELIMITER)
        else:
            items.append(_ITEM + struct.pack("<L", len(body)) + body)
    content = b"".join(items)
    if elem.is_undefined_length:
        return _header(elem.tag, "SQ", 0xFFFFFFFF) + content + _SEQUENCE_DELIMITER
    return _header(elem.tag, "SQ", len(content)) + content


def _header(tag: int, vr: str, length: int) -> bytes:
    tag_bytes = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if vr in _LONG_LENGTH_VRS:
        return tag_bytes + vr.encode("ascii") + struct.pack("<HL", 0, length)
    if length > 0xFFFF:
        raise _NotPlain  # pydicom rewrites such an element as UN, with a warning
    return tag_bytes + vr.encode("ascii") + struct.pack("<H", length)


def _pydicom_element(elem: DataElement, charset: Any) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_data_element(buffer, elem, charset)
    return buffer.getvalue()
