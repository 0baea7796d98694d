"""A fast reader for the common case of a received file: explicit VR little endian, plain
values, native pixel data last.

pydicom's reader builds a data set, then each value is converted on its own: about 0.6 ms
for a CR's two dozen elements here, a sixth of what storing the instance costs the server.
This reader walks the same bytes once and returns the values and their DICOM JSON, the same
as ``converted_elements`` and ``elements_to_json`` give (tested over pydicom's test files).

It reads only what it can read exactly: one value it does not handle (a sequence, a
binary or rare VR, text outside ASCII, padding inside a value, a value past the first
``HEAD_BYTES``, elements out of order, anything after the pixel data, a truncated file)
and it returns None, and the caller reads the file with pydicom, which also gives the
reasons for refusing a bad one.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.dicom.dicom_json import DicomJson, tag_key

HEAD_BYTES = 16 << 10  # elements must lie in this much of the file (CR: about 1 KiB)
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
PIXEL_DATA = 0x7FE00010
_PREAMBLE = 128
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
# Text values split at backslashes (PS3.5 6.2), padded with spaces or (UI) NULs.
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UI"})
_META_VRS = frozenset({"AE", "LO", "OB", "SH", "UI", "UL", "UR"})  # those of group 0002
_TEXT_VRS = frozenset({"LT", "ST"})  # one value each, backslashes included
_BINARY_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_IS = re.compile(r"[+-]?[0-9]+")
_DS = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_PRINTABLE = re.compile(r"[\x20-\x7e\r\n\t\f]*")
_UNPACK_TAG = struct.Struct("<HH2s").unpack_from
_UNPACK_SHORT = struct.Struct("<H").unpack_from
_UNPACK_LONG = struct.Struct("<I").unpack_from


@dataclass(frozen=True)
class PlainHeader:
    """A file's data set elements before its pixel data, read and converted."""

    transfer_syntax: str
    values: dict[int, Any]  # tag -> str | int | float | list of them | None (empty)
    dicom_json: DicomJson
    pixel_data_length: int | None  # None: no pixel data (the file ends with its elements)


class _NotPlain(Exception):
    """The file is not one this reader reads exactly: pydicom reads it instead."""


def read_plain_header(path: Path, known: tuple[bytes, int] | None = None) -> PlainHeader | None:
    """Return a file's header when it is a plain one (see the module), else None.

    ``known``: the file's first ``HEAD_BYTES`` (all of it, if shorter) and its size, kept in
    memory by whoever wrote it: the file is not read.
    """
    if known is None:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
            size = os.fstat(f.fileno()).st_size
    else:
        head, size = known
    try:
        return _read(head, size)
    except (_NotPlain, struct.error, UnicodeDecodeError):
        return None


def _read(head: bytes, size: int) -> PlainHeader:
    start = _PREAMBLE + 4 if head[_PREAMBLE : _PREAMBLE + 4] == b"DICM" else 0
    if start == 0 and head[:2] != b"\x02\x00":
        raise _NotPlain  # pydicom's reader gives the reason
    transfer_syntax, position = _file_meta(head, start)
    if transfer_syntax != EXPLICIT_VR_LITTLE_ENDIAN:
        raise _NotPlain
    values: dict[int, Any] = {}
    dicom_json: DicomJson = {}
    previous = 0
    while position < len(head):
        tag, vr, value_at, length = _element_at(head, position)
        if tag <= previous or tag >> 16 == 0x0002:
            raise _NotPlain  # out of order, repeated, or a file meta element in the data set
        previous = tag
        if tag == PIXEL_DATA:
            if vr not in ("OB", "OW") or value_at + length != size:
                raise _NotPlain  # encapsulated, or truncated, or followed by more elements
            return PlainHeader(transfer_syntax, values, dicom_json, length)
        end = value_at + length
        if end > len(head):
            raise _NotPlain  # past what was read: a large value, or a truncated file
        value, json = _convert(vr, head[value_at:end])
        values[tag] = value
        dicom_json[tag_key(tag)] = json
        position = end
    if position != size:
        raise _NotPlain  # more than the head holds, or a truncated element
    return PlainHeader(transfer_syntax, values, dicom_json, None)


def _file_meta(head: bytes, position: int) -> tuple[str, int]:
    """Return the transfer syntax and where the data set starts."""
    transfer_syntax = ""
    end: int | None = None
    while position + 8 <= len(head) and head[position : position + 2] == b"\x02\x00":
        tag, vr, value_at, length = _element_at(head, position)
        if vr not in _META_VRS:
            raise _NotPlain  # not a file meta element's VR: pydicom's reader decides
        value = head[value_at : value_at + length]
        if tag == 0x00020000 and vr == "UL" and length == 4:
            end = value_at + 4 + _UNPACK_LONG(value)[0]
        elif tag == 0x00020010:
            transfer_syntax = value.decode("ascii").rstrip("\0 ")
        position = value_at + length
    if end is not None and end != position:
        raise _NotPlain  # a group length that does not match: pydicom's reader decides
    return transfer_syntax, position


def _element_at(head: bytes, position: int) -> tuple[int, str, int, int]:
    """Return (tag, VR, where its value starts, its length) of the element at ``position``."""
    group, element, vr_bytes = _UNPACK_TAG(head, position)
    vr = vr_bytes.decode("ascii")
    if vr in _LONG_VRS:
        if head[position + 6 : position + 8] != b"\0\0":
            raise _NotPlain
        length = _UNPACK_LONG(head, position + 8)[0]
        value_at = position + 12
    else:
        length = _UNPACK_SHORT(head, position + 6)[0]
        value_at = position + 8
    if length == 0xFFFFFFFF:
        raise _NotPlain  # undefined length: a sequence or encapsulated pixels
    return (group << 16) | element, vr, value_at, length


def _convert(vr: str, raw: bytes) -> tuple[Any, dict[str, Any]]:
    """Return an element's value (as ``parse`` reads values) and its DICOM JSON."""
    if vr in _BINARY_NUMBERS:
        return _binary_numbers(vr, raw)
    text = raw.decode("ascii").rstrip("\0 ")  # UnicodeDecodeError: a character set decides
    if not _PRINTABLE.fullmatch(text):
        raise _NotPlain  # escape sequences and control characters: pydicom decodes them
    if vr in _TEXT_VRS:
        return text, ({"vr": vr, "Value": [text]} if text else {"vr": vr})
    if vr not in _STRING_VRS and vr not in ("PN", "IS", "DS"):
        raise _NotPlain
    parts = text.split("\\")
    if any(p != p.strip() for p in parts) or (len(parts) > 1 and not all(parts)):
        raise _NotPlain  # padding inside values, empty values among several
    if parts == [""]:
        return ("" if vr in _STRING_VRS or vr == "PN" else None), {"vr": vr}
    converted: list[Any]
    if vr == "PN":
        if any("=" in p for p in parts):
            raise _NotPlain  # ideographic or phonetic groups
        converted = parts
        json_values: list[Any] = [{"Alphabetic": p} for p in parts]
    elif vr == "IS":
        if not all(_IS.fullmatch(p) for p in parts):
            raise _NotPlain
        converted = json_values = [int(p) for p in parts]
    elif vr == "DS":
        if not all(_DS.fullmatch(p) for p in parts):
            raise _NotPlain
        converted = json_values = [float(p) for p in parts]
        if not all(math.isfinite(n) for n in converted):
            raise _NotPlain  # out of range: not a JSON number
    else:
        converted = json_values = parts
    value = converted[0] if len(converted) == 1 else converted
    return value, {"vr": vr, "Value": json_values}


def _binary_numbers(vr: str, raw: bytes) -> tuple[Any, dict[str, Any]]:
    code = _BINARY_NUMBERS[vr]
    size = struct.calcsize(code)
    if len(raw) % size:
        raise _NotPlain
    if not raw:
        return None, {"vr": vr}
    numbers = list(struct.unpack(f"<{len(raw) // size}{code}", raw))
    if code in "fd" and not all(math.isfinite(n) for n in numbers):
        raise _NotPlain  # NaN and infinities: not JSON numbers
    value = numbers[0] if len(numbers) == 1 else numbers
    return value, {"vr": vr, "Value": [float(n) for n in numbers] if code in "fd" else numbers}
