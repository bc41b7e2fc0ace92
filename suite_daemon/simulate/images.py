"""Small synthetic CT images (64x64, 16-bit) for the simulated modality: header-correct, no patient data."""

from __future__ import annotations

from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from suite_daemon.simulate.sr_builders import Study, part10_dataset

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _pixels(size: int, seed: int) -> bytes:
    out = bytearray()
    for y in range(size):
        for x in range(size):
            value = (x * 31 + y * 17 + seed * 7) % 1024
            out += value.to_bytes(2, "little")
    return bytes(out)


def build_ct_image(
    study: Study,
    series_uid: str,
    series_number: int,
    instance: int,
    acquired: datetime,
    *,
    description: str = "Guidance",
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    size: int = 64,
) -> Dataset:
    ds = part10_dataset(CT_IMAGE_STORAGE, study, None, series_uid, "CT", acquired)
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study.study_uid, "frame-of-reference"])
    ds.ImageType = list(image_type)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    ds.AcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S.%f")
    ds.ContentDate = acquired.strftime("%Y%m%d")
    ds.ContentTime = acquired.strftime("%H%M%S.%f")
    ds.KVP = "120"
    ds.SliceThickness = "2.5"
    ds.ImagePositionPatient = [0, 0, -2.5 * instance]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.PixelData = _pixels(size, instance)
    return ds
