"""Header reading and file meta encoding, without a network."""

from __future__ import annotations

import datetime
import struct
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from suite_daemon.dicom import part10
from suite_daemon.dicom.part10 import (
    INFLATE_CEILING,
    INFLATE_FLOOR,
    DatasetError,
    encode_file_meta,
    inflate_limit,
    read_header,
    summarize,
)
from tests.dicom.dicom_testdata import ct_slice, dose_sr, mr_image, new_study


def _encode(ds: Dataset, implicit: bool = False, little: bool = True) -> bytes:
    raw = encode(ds, implicit, little)
    assert raw is not None
    return raw


@pytest.mark.parametrize(
    ("implicit", "little", "ts"),
    [(False, True, "1.2.840.10008.1.2.1"), (True, True, "1.2.840.10008.1.2"), (False, False, "1.2.840.10008.1.2.2")],
)
def test_summary_in_every_uncompressed_encoding(implicit: bool, little: bool, ts: str) -> None:
    study, series = new_study()
    ds = mr_image(study, series, 3)
    ds.SAR = [1.5, 2.0]
    data = _encode(ds, implicit, little)
    summary = summarize(
        read_header(data, ts).dataset, sop_class_uid=ds.SOPClassUID, transfer_syntax_uid=ts, calling_ae="A", nbytes=9
    )
    assert summary["study_instance_uid"] == study and summary["sop_instance_uid"] == ds.SOPInstanceUID
    assert (summary["modality"], summary["station_name"], summary["accession_number"]) == ("MR", "ROOM1", "ACC123")
    assert (summary["sar"], summary["db_dt"], summary["b1rms"]) == (1.5, 42.0, 2.5)
    assert summary["acquisition_datetime"] == "2026-11-22T10:15:00"
    assert "Doe" not in repr(summary) and "PID" not in repr(summary)


_SHORT_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"), max_size=16)


@settings(max_examples=60, deadline=None)
@given(
    encoding=st.sampled_from(
        [(False, True, "1.2.840.10008.1.2.1"), (True, True, "1.2.840.10008.1.2"), (False, False, "1.2.840.10008.1.2.2")]
    ),
    accession=_SHORT_TEXT,
    station=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\\"), max_size=16),
    modality=st.sampled_from(["CT", "MR", "XA", "RF", "SR", ""]),
    frames=st.one_of(st.none(), st.integers(1, 9999)),
    date=st.dates(min_value=datetime.date(1900, 1, 1)),
    seconds=st.integers(0, 86399),
)
def test_summary_reads_the_values_written(
    encoding: tuple[bool, bool, str],
    accession: str,
    station: str,
    modality: str,
    frames: int | None,
    date: datetime.date,
    seconds: int,
) -> None:
    """The one-pass header reading (with its short cut for 2-byte-length elements) gives back the values
    pydicom encoded, in every uncompressed encoding."""
    implicit, little, ts = encoding
    study, series = new_study()
    ds = mr_image(study, series, 1)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.AccessionNumber, ds.StationName, ds.Modality = accession, station, modality
    ds.AcquisitionDate = f"{date:%Y%m%d}"
    ds.AcquisitionTime = f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"
    if frames is not None:
        ds.NumberOfFrames = frames
    data = _encode(ds, implicit, little)
    summary = summarize(
        read_header(data, ts).dataset, sop_class_uid=ds.SOPClassUID, transfer_syntax_uid=ts, calling_ae="A", nbytes=1
    )
    assert summary["accession_number"] == (accession.strip() or None)
    assert summary["station_name"] == (station.strip() or None)
    assert summary["modality"] == (modality or None)
    assert summary["number_of_frames"] == (frames or 1)
    hours, minutes = divmod(seconds // 60, 60)
    assert summary["acquisition_datetime"] == f"{date:%Y-%m-%d}T{hours:02d}:{minutes:02d}:{seconds % 60:02d}"
    assert summary["study_instance_uid"] == study and summary["sop_instance_uid"] == ds.SOPInstanceUID


def test_deflated_and_sequences_and_charset() -> None:
    study, series = new_study()
    ds = dose_sr(study, series, 1)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SeriesDescription = "Dosis Übersicht"
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = deflater.compress(_encode(ds)) + deflater.flush()
    header = read_header(data, "1.2.840.10008.1.2.1.99")
    assert header.dataset.get("SeriesDescription") == "Dosis Übersicht"
    assert header.length == len(data)


def _deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


def _deflated_zeros(zeros: int) -> bytes:
    """A deflated CT data set whose pixel data is `zeros` zero bytes, made without ever holding them."""
    study, series = new_study()
    ds = ct_slice(study, series, 0, rows=8, cols=8)
    del ds.PixelData
    head = _encode(ds) + struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", zeros)
    deflater = zlib.compressobj(9, wbits=-zlib.MAX_WBITS)
    start = deflater.compress(head) + deflater.flush(zlib.Z_FULL_FLUSH)
    # Nothing after a full flush refers back past it, so one deflated MiB of zeros can be repeated as is.
    mib = deflater.compress(bytes(1 << 20)) + deflater.flush(zlib.Z_FULL_FLUSH)
    end = deflater.compress(bytes(zeros % (1 << 20))) + deflater.flush()
    return start + mib * (zeros >> 20) + end


def test_inflate_limit_has_a_floor_a_ratio_and_a_ceiling() -> None:
    assert inflate_limit(0) == inflate_limit(1000) == INFLATE_FLOOR == 64 << 20
    assert inflate_limit(1 << 20) == 200 << 20
    assert inflate_limit(100 << 20) == INFLATE_CEILING == 2 << 30


def test_deflated_pixel_data_within_the_bound_reads() -> None:
    data = _deflated_zeros((9 << 20) + 2)  # ~1000x, more than a real image, but below the floor
    header = read_header(data, "1.2.840.10008.1.2.1.99")
    assert header.dataset.get("Modality") == "CT" and header.length == len(data)


def test_deflate_bomb_is_refused_without_inflating_it() -> None:
    data = _deflated_zeros(256 << 20)
    assert len(data) < 300_000 and inflate_limit(len(data)) == INFLATE_FLOOR
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="deflated data set inflates beyond 64 MiB"):
            read_header(memoryview(data), "1.2.840.10008.1.2.1.99")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * INFLATE_FLOOR  # the bound and a step of slack, not the 256 MiB of the bomb


@pytest.mark.parametrize(("step_in", "step_out"), [(1, 1), (7, 3), (3, 7), (1 << 20, 4 << 20)])
def test_inflating_in_steps_of_any_size_gives_the_whole_data_set(
    monkeypatch: pytest.MonkeyPatch, step_in: int, step_out: int
) -> None:
    monkeypatch.setattr(part10, "_INFLATE_IN", step_in)
    monkeypatch.setattr(part10, "_INFLATE_OUT", step_out)
    study, series = new_study()
    ds = dose_sr(study, series, 1)
    raw = _encode(ds)
    inflated = part10._inflate(_deflate(raw))
    assert inflated == raw
    assert read_header(_deflate(raw), "1.2.840.10008.1.2.4.95").dataset.get("SOPInstanceUID") == ds.SOPInstanceUID


@pytest.mark.parametrize("cut", [1, 10, 200])
def test_truncated_deflate_stream_does_not_inflate(cut: int) -> None:
    study, series = new_study()
    data = _deflate(_encode(dose_sr(study, series, 1)))
    with pytest.raises(DatasetError, match="does not inflate"):
        read_header(data[:-cut], "1.2.840.10008.1.2.1.99")


@pytest.mark.parametrize("data", [b"", b"\xff" * 64, bytes(range(256))])
def test_invalid_deflate_stream_does_not_inflate(data: bytes) -> None:
    with pytest.raises(DatasetError, match="does not inflate"):
        read_header(data, "1.2.840.10008.1.2.1.99")


@pytest.mark.parametrize("trailer", [b"\x00", b"\x00" * 3 + b"junk"])
def test_bytes_after_the_deflate_stream_are_ignored(trailer: bytes) -> None:
    study, series = new_study()
    ds = dose_sr(study, series, 1)
    data = _deflate(_encode(ds)) + trailer  # a NUL pads an odd-length stream to an even length
    header = read_header(data, "1.2.840.10008.1.2.1.99")
    assert header.dataset.get("SOPInstanceUID") == ds.SOPInstanceUID and header.length == len(data)


@pytest.mark.parametrize("cut", [1, 100, 1000, 5000])
def test_truncated_data_sets_are_refused(cut: int) -> None:
    study, series = new_study()
    data = _encode(ct_slice(study, series, 0, rows=64, cols=64))
    with pytest.raises(DatasetError):
        read_header(data[: len(data) - cut], "1.2.840.10008.1.2.1")


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 7, bytes(range(256)) * 4, b"DICM" * 100])
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(DatasetError):
        read_header(garbage, "1.2.840.10008.1.2.1")


def test_file_meta_makes_a_valid_part10_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    study, series = new_study()
    ds = ct_slice(study, series, 1, rows=32, cols=32)
    path = tmp_path / "x.dcm"
    path.write_bytes(encode_file_meta(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1", "CT01") + _encode(ds))
    back = dcmread(path)
    assert back.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.file_meta.SourceApplicationEntityTitle == "CT01"
    assert back.PixelData == ds.PixelData


def _sequence(item_length: int, content: bytes, implicit: bool = False) -> bytes:
    """A defined-length Referenced Series Sequence (0008,1115) holding one item, then a Modality element."""
    item = struct.pack("<HHI", 0xFFFE, 0xE000, item_length) + content
    if implicit:
        head = struct.pack("<HHI", 0x0008, 0x1115, len(item))
        tail = struct.pack("<HHI", 0x0008, 0x0060, 2) + b"CT"
    else:
        head = struct.pack("<HH2s2xI", 0x0008, 0x1115, b"SQ", len(item))
        tail = struct.pack("<HH2sH", 0x0008, 0x0060, b"CS", 2) + b"CT"
    return head + item + tail


@pytest.mark.parametrize(("implicit", "ts"), [(False, "1.2.840.10008.1.2.1"), (True, "1.2.840.10008.1.2")])
def test_nested_items_must_fit_their_sequence(implicit: bool, ts: str) -> None:
    uid = b"1.2.3\x00"
    element = (
        struct.pack("<HHI", 0x0020, 0x000E, len(uid))
        if implicit
        else struct.pack("<HH2sH", 0x0020, 0x000E, b"UI", len(uid))
    ) + uid
    assert read_header(_sequence(len(element), element, implicit), ts).dataset.get("Modality") == "CT"
    with pytest.raises(DatasetError, match="longer than its sequence"):
        read_header(_sequence(100, element, implicit), ts)
    with pytest.raises(DatasetError):  # the item's content does not fill the item exactly
        read_header(_sequence(len(element) - 2, element, implicit), ts)
