"""Deterministic DICOM test objects made with pydicom (no third-party test data)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from suite_daemon.dicom.part10 import dataset_offset

ROOT = "1.2.826.0.1.3680043.10.1234.9."
CT = "1.2.840.10008.5.1.4.1.1.2"
XA = "1.2.840.10008.5.1.4.1.1.12.1"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
ENHANCED_XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.76"
PERFORMED_AGENT_SR = "1.2.840.10008.5.1.4.1.1.88.75"

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-SECRET-77"
BIRTH_DATE = "19700101"


def uid(*parts: int | str) -> str:
    return ROOT + ".".join(str(p) for p in parts)


def _tag(series: str) -> int:
    return zlib.crc32(series.encode()) % 100_000


def _base(sop_class: str, sop_instance: str, study: str, series: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = "20261122"
    ds.ContentDate = "20261122"
    ds.ContentTime = "101501.250"
    ds.AcquisitionDate = "20261122"
    ds.AcquisitionTime = "101500"
    ds.AccessionNumber = "ACC123"
    ds.Modality = modality
    ds.StationName = "ROOM1"
    ds.SeriesDescription = "test series"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.InstanceNumber = 1
    return ds


def _pixels(ds: Dataset, rows: int, cols: int, frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    shape = (frames, rows, cols) if frames > 1 else (rows, cols)
    ds.PixelData = rng.integers(0, 4096, size=shape, dtype=np.uint16).tobytes()


def ct_slice(study: str, series: str, index: int, rows: int = 256, cols: int = 256) -> Dataset:
    ds = _base(CT, uid(1, _tag(series), index), study, series, "CT")
    ds.InstanceNumber = index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    _pixels(ds, rows, cols, 1, index)
    return ds


def xa_run(study: str, series: str, index: int, frames: int = 10, rows: int = 256, cols: int = 256) -> Dataset:
    ds = _base(XA, uid(2, _tag(series), index), study, series, "XA")
    _pixels(ds, rows, cols, frames, 1000 + index)
    return ds


def mr_image(study: str, series: str, index: int) -> Dataset:
    ds = _base(MR, uid(3, index), study, series, "MR")
    ds.SAR = 1.25
    ds.dBdt = 42.0
    ds.B1rms = 2.5
    _pixels(ds, 64, 64, 1, 2000 + index)
    return ds


def small_object(study: str, series: str, index: int) -> Dataset:
    ds = _base(SC, uid(4, _tag(series), index), study, series, "OT")
    ds.ConversionType = "WSD"
    _pixels(ds, 64, 64, 1, 3000 + index)
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def dose_sr(study: str, series: str, index: int, sop_class: str = XRAY_DOSE_SR) -> Dataset:
    ds = _base(sop_class, uid(5, index, sop_class.rsplit(".", 1)[1]), study, series, "SR")
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("113701", "DCM", "X-Ray Radiation Dose Report")])
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    num = Dataset()
    num.RelationshipType = "CONTAINS"
    num.ValueType = "NUM"
    num.ConceptNameCodeSequence = Sequence([_code("113722", "DCM", "Dose Area Product Total")])
    measured = Dataset()
    measured.NumericValue = "0.00012"
    measured.MeasurementUnitsCodeSequence = Sequence([_code("Gy.m2", "UCUM", "Gy.m2")])
    num.MeasuredValueSequence = Sequence([measured])
    ds.ContentSequence = Sequence([num])
    return ds


def save(ds: Dataset, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{ds.SOPInstanceUID}.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw[dataset_offset(raw) :]


def new_study() -> tuple[str, str]:
    return generate_uid(prefix=ROOT), generate_uid(prefix=ROOT)
