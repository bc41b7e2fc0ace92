"""Header reading and file meta encoding, without a network."""

from __future__ import annotations

import struct
import zlib

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from suite_daemon.dicom.part10 import DatasetError, encode_file_meta, read_header, summarize
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
