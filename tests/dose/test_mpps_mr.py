"""Dose attributes of an MPPS, and MR exposure values from image headers."""

from __future__ import annotations

import math

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from suite_daemon.dose.mpps import parse_mpps
from suite_daemon.dose.mr import mr_exposure


def mpps_dataset() -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.TotalTimeOfFluoroscopy = 125
    ds.TotalNumberOfExposures = 14
    ds.ImageAndFluoroscopyAreaDoseProduct = "2345.5"  # dGy·cm²
    ds.EntranceDoseInmGy = "410.25"
    ds.EntranceDose = 4  # dGy; the mGy attribute wins
    step = Dataset()
    step.StudyInstanceUID = "1.2.826.0.1.3680043.10.55.1"
    ds.ScheduledStepAttributesSequence = Sequence([step])
    ct1, ct2 = Dataset(), Dataset()
    ct1.CTDIvol = 5.5
    ct2.CTDIvol = 11.25
    ds.CTExposureSequence = Sequence([ct1, ct2])
    exposure = Dataset()
    exposure.RadiationMode = "PULSED"
    exposure.KVP = "81"
    exposure.XRayTubeCurrentInuA = "12500"
    exposure.ExposureTime = 250
    ds.ExposureDoseSequence = Sequence([exposure])
    return ds


@pytest.mark.parametrize("as_json", [False, True])
def test_mpps_dose_attributes(as_json: bool) -> None:
    ds = mpps_dataset()
    report = parse_mpps(ds.to_json_dict() if as_json else ds, sop_instance_uid="1.2.3")
    assert report is not None
    assert report.source == "mpps" and report.sop_instance_uid == "1.2.3"
    assert report.study_instance_uid == "1.2.826.0.1.3680043.10.55.1"
    assert report.fluoro_time_s == 125
    assert math.isclose(report.dap_total_gym2 or 0, 2345.5e-5)
    assert math.isclose(report.air_kerma_total_gy or 0, 0.41025)
    assert report.mpps_exposure_count == 14
    assert report.ctdivol_max_mgy == 11.25
    assert report.dlp_total_mgycm is None
    assert any("entrance dose" in r for r in report.repairs)
    technique = [e for e in report.events if e.kind == "acquisition"]
    assert len(technique) == 1
    assert (technique[0].kvp_kv, technique[0].tube_current_ma, technique[0].duration_s) == (81.0, 12.5, 0.25)
    assert report.kind == "mixed"


def test_mpps_entrance_dose_in_dgy() -> None:
    ds = Dataset()
    ds.EntranceDose = 3
    report = parse_mpps(ds)
    assert report is not None and math.isclose(report.air_kerma_total_gy or 0, 0.3)


def test_mpps_without_dose_is_none_and_bad_values_are_repairs() -> None:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    assert parse_mpps(ds) is None
    bad = Dataset()
    bad.ImageAndFluoroscopyAreaDoseProduct = "-5"
    report = parse_mpps(bad)
    assert report is not None and report.dap_total_gym2 is None
    assert any("negative" in r for r in report.repairs)
    with pytest.raises(ValueError, match="JSON model"):
        parse_mpps({"00400300": {"vr": "XX", "Value": "nonsense"}})


def test_mr_exposure_from_summary_and_dataset() -> None:
    e = mr_exposure({"sar_wkg": 1.5, "dBdt": "22.0", "b1rms_ut": None})
    assert (e.sar_wkg, e.db_dt_ts, e.b1rms_ut) == (1.5, 22.0, None)
    ds = Dataset()
    ds.SAR = "2.25"
    ds.dBdt = "31.5"
    ds.B1rms = 1.75
    e = mr_exposure(ds)
    assert (e.sar_wkg, e.db_dt_ts, e.b1rms_ut) == (2.25, 31.5, 1.75)
    assert mr_exposure({"SAR": "garbage", "dBdt": -1}).empty
    # the receiver's summary keys (suite_daemon.dicom.part10)
    e = mr_exposure({"sar": 0.8, "db_dt": 12.0, "b1rms": 0.9, "modality": "MR"})
    assert (e.sar_wkg, e.db_dt_ts, e.b1rms_ut) == (0.8, 12.0, 0.9)


def test_mr_exposure_enhanced_functional_groups() -> None:
    inner = Dataset()
    inner.SAR = "3.0"
    group = Dataset()
    group.MRTimingAndRelatedParametersSequence = Sequence([inner])
    ds = Dataset()
    ds.SharedFunctionalGroupsSequence = Sequence([group])
    assert mr_exposure(ds).sar_wkg == 3.0
