"""Part 10 file meta encoding and a header-only reading of a received data set.

The receiver never decodes a data set: one pass over the element headers (tags and lengths; values are
skipped, pixel data is never read) picks out the few top-level text elements the correlator needs and
proves that the encoding is complete.
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR

from suite_daemon.dicom.sop_classes import (
    AGENT_SR_CLASSES,
    DEFLATED_LE,
    DOSE_SR_CLASSES,
    EXPLICIT_BE,
    IMPLICIT_LE,
)

IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.60102015699339584982884350904334891414"
"""Derived under pydicom's UID root (`generate_uid(entropy_srcs=["suite-daemon implementation class"])`)."""
IMPLEMENTATION_VERSION_NAME = "SUITE_DAEMON_01"
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_EXPLICIT_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS"}
    | {b"ST", b"TM", b"UI", b"UL", b"US"}
)
"""Explicit VRs with a 2-byte length (the common case, taken without further checks)."""
_LE_HEADERS = (struct.Struct("<HH2sH"), struct.Struct("<I"))
_BE_HEADERS = (struct.Struct(">HH2sH"), struct.Struct(">I"))
"""Element header layouts: tag, VR and 2-byte length (explicit VR); a 4-byte length."""
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_DEFLATED = frozenset({DEFLATED_LE, "1.2.840.10008.1.2.4.95"})
"""Deflated Explicit VR Little Endian and JPIP Referenced Deflate: the whole data set is a raw deflate stream."""

INFLATE_FLOOR = 64 * 1024 * 1024
"""Any deflated data set may inflate to 64 MiB, whatever its ratio (sparse segmentations, zero-padded frames)."""
INFLATE_RATIO = 200
"""Above the floor, up to 200x its deflated size: image data rarely inflates beyond 20-50x, a bomb ~1000x."""
INFLATE_CEILING = 2 * 1024 * 1024 * 1024
"""Never more than 2 GiB: the inflated data set is held in memory whole (reached from ~10 MiB deflated)."""
_INFLATE_IN, _INFLATE_OUT = 1024 * 1024, 4 * 1024 * 1024
"""Inflate 1 MiB in, at most 4 MiB out at a time: a bomb costs the bound plus one step, never more."""


class DatasetError(ValueError):
    """The received data set cannot be understood (truncated, malformed, or missing its UIDs)."""


def clean_uid(value: object) -> str:
    """A UID as sent, without the trailing NUL/space padding some stacks leave on it."""
    return str(value or "").rstrip("\x00 ").strip()


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in _EXPLICIT_LONG_VRS:
        return struct.pack("<HH2s2xI", group, elem, vr, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _pad(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def encode_file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae: str) -> bytes:
    """Preamble, `DICM` and the File Meta Information group (always explicit VR little endian)."""
    before, after = _meta_around_instance(sop_class_uid, transfer_syntax_uid, source_ae)
    instance = _element(0x00020003, b"UI", _pad(sop_instance_uid, b"\x00"))
    group_length = len(before) + len(instance) + len(after)
    return b"".join((_PREAMBLE, _element(0x00020000, b"UL", struct.pack("<I", group_length)), before, instance, after))


_PREAMBLE = b"\x00" * 128 + b"DICM"


@functools.lru_cache(maxsize=256)
def _meta_around_instance(sop_class_uid: str, transfer_syntax_uid: str, source_ae: str) -> tuple[bytes, bytes]:
    """The file meta elements before and after the SOP instance UID: the same for a whole association, so
    built once (bounded: the strings come from peers)."""
    before = _element(0x00020001, b"OB", b"\x00\x01") + _element(0x00020002, b"UI", _pad(sop_class_uid, b"\x00"))
    after = b"".join(
        (
            _element(0x00020010, b"UI", _pad(transfer_syntax_uid, b"\x00")),
            _element(0x00020012, b"UI", _pad(IMPLEMENTATION_CLASS_UID, b"\x00")),
            _element(0x00020013, b"SH", _pad(IMPLEMENTATION_VERSION_NAME, b" ")),
            _element(0x00020016, b"AE", _pad(source_ae.strip() or "UNKNOWN", b" ")),
        )
    )
    return before, after


def dataset_offset(part10: bytes | memoryview) -> int:
    """Where the data set starts in a Part 10 file written by `encode_file_meta` (or any Part 10 file)."""
    if bytes(part10[128:132]) != b"DICM":
        raise DatasetError("not a Part 10 file")
    group_length: int = struct.unpack_from("<I", part10, 132 + 8)[0]
    return 132 + 12 + group_length


_WANTED = {
    0x00080005: "SpecificCharacterSet",
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x00080022: "AcquisitionDate",
    0x00080023: "ContentDate",
    0x0008002A: "AcquisitionDateTime",
    0x00080032: "AcquisitionTime",
    0x00080033: "ContentTime",
    0x00080050: "AccessionNumber",
    0x00080060: "Modality",
    0x00081010: "StationName",
    0x0008103E: "SeriesDescription",
    0x00181316: "SAR",
    0x00181318: "dBdt",
    0x00181320: "B1rms",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
    0x00280008: "NumberOfFrames",
}
"""The top-level elements the summary needs: text VRs (UI, CS, SH, LO, DA, TM, DT, DS, IS), but B1rms is FL."""
_FREE_TEXT = frozenset({"StationName", "SeriesDescription"})
_BINARY_FLOAT = frozenset({"B1rms"})


class HeaderValues:
    """The wanted top-level elements of a data set, as text (what pydicom's `Dataset.get` would give),
    decoded once: the summary asks for each of them, some twice."""

    def __init__(self, raw: dict[str, bytes], little_endian: bool = True) -> None:
        charset = raw.get("SpecificCharacterSet", b"").decode("ascii", "replace").upper()
        free_text = "utf-8" if "ISO_IR 192" in charset else "latin-1"
        values: dict[str, str] = {}
        for keyword, value in raw.items():
            if keyword in _BINARY_FLOAT:
                if len(value) >= 4:
                    values[keyword] = repr(struct.unpack_from("<f" if little_endian else ">f", value)[0])
                continue
            text = value.decode(free_text if keyword in _FREE_TEXT else "ascii", "replace")
            values[keyword] = text.rstrip("\x00 ").strip()
        self._values = values

    def get(self, keyword: str, default: str | None = None) -> str | None:
        return self._values.get(keyword, default)

    def text(self, keyword: str) -> str:
        """The element's text, "" when absent."""
        return self._values.get(keyword, "")


@dataclass(frozen=True, slots=True)
class Header:
    """The header values of a data set and how many bytes the whole data set has."""

    dataset: HeaderValues
    length: int


def read_header(data: bytes | memoryview, transfer_syntax_uid: str) -> Header:
    """Read the summary's header values and check that the whole encoding is complete.

    One pass over the element headers (values are skipped by their lengths, pixel data is never read).
    Raises `DatasetError` when the data set is truncated or malformed.
    """
    raw: bytes | bytearray | memoryview = _inflate(data) if transfer_syntax_uid in _DEFLATED else data
    implicit = transfer_syntax_uid == IMPLICIT_LE
    little = transfer_syntax_uid != EXPLICIT_BE
    if len(raw) < 8:
        raise DatasetError("data set is empty or shorter than one element")
    values: dict[str, bytes] = {}
    _walk(memoryview(raw), 0, len(raw), implicit, little, values)
    return Header(HeaderValues(values, little), len(data))


def inflate_limit(deflated_size: int) -> int:
    """The most a deflated data set of `deflated_size` bytes may inflate to (see `INFLATE_RATIO`)."""
    return min(INFLATE_CEILING, max(INFLATE_FLOOR, INFLATE_RATIO * deflated_size))


def _inflate(data: bytes | memoryview) -> bytearray:
    """Inflate a deflated data set, refusing one that inflates beyond `inflate_limit` (a deflate bomb).

    Anything after the end of the deflate stream (the NUL that pads it to an even length) is ignored.
    """
    limit = inflate_limit(len(data))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    view = memoryview(data)
    out = bytearray()
    fed = 0
    pending: bytes | memoryview = b""
    held_back = False
    try:
        while not inflater.eof:
            if not pending:
                if fed >= len(view) and not held_back:
                    break
                pending = view[fed : fed + _INFLATE_IN]
                fed += len(pending)
            room = min(_INFLATE_OUT, limit + 1 - len(out))
            chunk = inflater.decompress(pending, room)
            out += chunk
            if len(out) > limit:
                raise DatasetError(f"deflated data set inflates beyond {limit / 2**20:.0f} MiB")
            # A full output may leave inflated bytes inside the inflater even when all input is consumed.
            held_back = len(chunk) == room
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise DatasetError(f"deflated data set does not inflate: {exc}") from exc
    if not inflater.eof:
        raise DatasetError("deflated data set does not inflate: the deflate stream is truncated")
    return out


def _walk(
    buf: memoryview, pos: int, end: int, implicit: bool, little: bool, capture: dict[str, bytes] | None = None
) -> int:
    """Skip elements from `pos` to `end` by tag and length; return where it stopped (an item end).

    `capture` (top level only) receives the raw values of the `_WANTED` elements.
    """
    short_header, u32 = _LE_HEADERS if little else _BE_HEADERS
    unpack_header = short_header.unpack_from
    while pos < end:
        if pos + 8 > end:
            raise DatasetError(f"data set truncated in an element header at byte {pos}")
        group, elem, vr, length = unpack_header(buf, pos)
        if vr in _SHORT_VRS and not implicit and group != 0xFFFE:
            # Most elements (explicit VR, 2-byte length, never a sequence): the shortest way through.
            pos += 8
            if pos + length > end:
                raise DatasetError(f"data set truncated: element ({group:04X},{elem:04X}) runs past the end")
            tag = group << 16 | elem
            if capture is not None and tag in _WANTED:
                capture[_WANTED[tag]] = bytes(buf[pos : pos + length])
            pos += length
            continue
        tag = group << 16 | elem
        if tag in (_ITEM_END, _SEQ_END):
            return pos + 8
        if implicit or group == 0xFFFE:
            vr = b""
            (length,) = u32.unpack_from(buf, pos + 4)
            pos += 8
        else:  # (a 2-byte-length VR took the short cut above)
            if not vr.isalpha() or not vr.isupper():
                raise DatasetError(f"invalid VR {vr!r} at byte {pos}")
            if vr in _EXPLICIT_LONG_VRS:
                if pos + 12 > end:
                    raise DatasetError(f"data set truncated in an element header at byte {pos}")
                (length,) = u32.unpack_from(buf, pos + 8)
                pos += 12
            else:
                pos += 8
        sequence = vr == b"SQ" or (implicit and _implicit_sequence(tag))
        if length == _UNDEFINED:
            pos = _walk_items(buf, pos, end, implicit, little, sequence)
        else:
            if pos + length > end:
                raise DatasetError(f"data set truncated: element ({group:04X},{elem:04X}) runs past the end")
            if capture is not None and tag in _WANTED:
                capture[_WANTED[tag]] = bytes(buf[pos : pos + length])
            if sequence and length:
                _walk_sequence(buf, pos, pos + length, implicit, little)
            pos += length
    if pos != end:
        raise DatasetError("data set truncated")
    return pos


def _implicit_sequence(tag: int) -> bool:
    """In implicit VR only the data dictionary says which elements are sequences."""
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def _walk_items(buf: memoryview, pos: int, end: int, implicit: bool, little: bool, sequence: bool = True) -> int:
    """Skip the items of an undefined-length sequence or encapsulated pixel data, up to its delimiter.

    The items of a sequence are data sets and are walked too; pixel data fragments are opaque."""
    order = "<" if little else ">"
    while True:
        if pos + 8 > end:
            raise DatasetError("data set truncated inside a sequence")
        group, elem, length = struct.unpack_from(order + "HHI", buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise DatasetError(f"unexpected tag ({group:04X},{elem:04X}) inside a sequence")
        if length == _UNDEFINED:
            pos = _walk(buf, pos, end, implicit, little)
        else:
            if pos + length > end:
                raise DatasetError("data set truncated inside a sequence item")
            if sequence and length:
                _walk(buf, pos, pos + length, implicit, little)
            pos += length


def _walk_sequence(buf: memoryview, pos: int, end: int, implicit: bool, little: bool) -> None:
    """Check the items of a defined-length sequence: each one inside it, the last one ending with it."""
    order = "<" if little else ">"
    while pos < end:
        if pos + 8 > end:
            raise DatasetError("data set malformed: a sequence item header runs past its sequence")
        group, elem, length = struct.unpack_from(order + "HHI", buf, pos)
        pos += 8
        if group << 16 | elem != _ITEM:
            raise DatasetError(f"unexpected tag ({group:04X},{elem:04X}) inside a sequence")
        if length == _UNDEFINED:
            pos = _walk(buf, pos, end, implicit, little)
        elif pos + length > end:
            raise DatasetError("data set malformed: a sequence item is longer than its sequence")
        else:
            if length:
                _walk(buf, pos, pos + length, implicit, little)
            pos += length


def _text(ds: HeaderValues, keyword: str) -> str | None:
    return ds.get(keyword) or None  # stripped already


def _number(ds: HeaderValues, keyword: str) -> float | None:
    value = ds.get(keyword)
    if not value:
        return None
    try:
        return float(value.split("\\")[0])
    except ValueError:
        return None


_DICOM_DATETIME = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?)?([+-]\d{4})?")


def dicom_datetime(ds: HeaderValues, dt_keyword: str | None, date_keyword: str, time_keyword: str) -> str | None:
    """ISO 8601 local date-time (as the modality wrote it) from a DT element or a DA + TM pair."""
    raw = ds.get(dt_keyword) if dt_keyword else None
    if not raw:
        date = ds.get(date_keyword)
        if not date:
            return None
        raw = date + (ds.get(time_keyword) or "")
    m = _DICOM_DATETIME.fullmatch(raw.replace(":", ""))
    if not m:
        return raw
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    out = f"{year}-{month}-{day}"
    if hour is not None:
        out += f"T{hour}:{minute or '00'}:{second or '00'}{fraction or ''}"
        if zone:
            out += f"{zone[:3]}:{zone[3:]}"
    return out


def summarize(
    ds: HeaderValues, *, sop_class_uid: str, transfer_syntax_uid: str, calling_ae: str, nbytes: int
) -> dict[str, Any]:
    """The header summary handed to the correlator. No patient name, ID or birth date, ever."""
    frames = _number(ds, "NumberOfFrames")
    summary: dict[str, Any] = {
        "study_instance_uid": ds.text("StudyInstanceUID"),
        "series_instance_uid": ds.text("SeriesInstanceUID"),
        "sop_instance_uid": ds.text("SOPInstanceUID"),
        "sop_class_uid": sop_class_uid,
        "modality": _text(ds, "Modality"),
        "accession_number": _text(ds, "AccessionNumber"),
        "station_name": _text(ds, "StationName"),
        "acquisition_datetime": dicom_datetime(ds, "AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime"),
        "content_datetime": dicom_datetime(ds, None, "ContentDate", "ContentTime"),
        "number_of_frames": int(frames) if frames is not None else 1,
        "bytes": nbytes,
        "transfer_syntax_uid": transfer_syntax_uid,
        "calling_ae": calling_ae,
        "series_description": _text(ds, "SeriesDescription"),
        "is_dose_sr": sop_class_uid in DOSE_SR_CLASSES,
        "is_agent_sr": sop_class_uid in AGENT_SR_CLASSES,
    }
    for key, keyword in (("sar", "SAR"), ("db_dt", "dBdt"), ("b1rms", "B1rms")):
        value = _number(ds, keyword)
        if value is not None:
            summary[key] = value
    return summary
