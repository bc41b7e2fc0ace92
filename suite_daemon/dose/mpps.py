"""Dose attributes an MPPS carries (Radiation Dose module of the MPPS N-CREATE/N-SET) -> `DoseReport`.

Read: Total Time of Fluoroscopy (0040,0300) s; Total Number of Exposures (0040,0301); Image and
Fluoroscopy Area Dose Product (0018,115E) in dGy·cm²; Entrance Dose (0040,0302) in dGy and Entrance
Dose in mGy (0040,8302), taken as the reference-point air kerma (a repair says so); Exposure Dose
Sequence (0040,030E) items as technique-only events (kVp, tube current in µA, exposure time in ms,
radiation mode); CT Exposure Sequence (0018,9321) items with CTDIvol (0018,9345). An MPPS has no DLP
attribute: DLP stays None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydicom.dataset import Dataset

from suite_daemon.dose.rdsr import DoseKind, DoseReport, IrradiationEvent, PlaneTotals

_DOSE_KEYWORDS = (
    "TotalTimeOfFluoroscopy",
    "TotalNumberOfExposures",
    "ImageAndFluoroscopyAreaDoseProduct",
    "EntranceDose",
    "EntranceDoseInmGy",
    "CTExposureSequence",
    "ExposureDoseSequence",
)


def as_dataset(attributes: Mapping[str, Any] | Dataset) -> Dataset:
    """A Dataset from the DICOM JSON model (as in `MppsReceived.attributes`) or a Dataset."""
    if isinstance(attributes, Dataset):
        return attributes
    return Dataset.from_json(dict(attributes))


def _number(ds: Dataset, keyword: str, repairs: list[str]) -> float | None:
    if keyword not in ds:
        return None
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        repairs.append(f"MPPS {keyword} value {value!r} is not a number; ignored")
        return None
    if number < 0:
        repairs.append(f"MPPS {keyword} value {number} is negative; ignored")
        return None
    return number


def parse_mpps(
    attributes: Mapping[str, Any] | Dataset,
    sop_instance_uid: str | None = None,
    study_instance_uid: str | None = None,
) -> DoseReport | None:
    """The MPPS's dose, or None when it carries no dose attribute at all."""
    try:
        ds = as_dataset(attributes)
    except Exception as exc:  # malformed JSON model: a clear error, the caller keeps running
        raise ValueError(f"MPPS attributes are not a valid DICOM JSON model: {exc}") from exc
    if not any(k in ds for k in _DOSE_KEYWORDS):
        return None
    repairs: list[str] = []
    fluoro_s = _number(ds, "TotalTimeOfFluoroscopy", repairs)
    exposures = _number(ds, "TotalNumberOfExposures", repairs)
    dap_dgycm2 = _number(ds, "ImageAndFluoroscopyAreaDoseProduct", repairs)
    dap = dap_dgycm2 * 1e-5 if dap_dgycm2 is not None else None
    entrance_gy: float | None = None
    entrance_mgy = _number(ds, "EntranceDoseInmGy", repairs)
    if entrance_mgy is not None:
        entrance_gy = entrance_mgy * 1e-3
    else:
        entrance_dgy = _number(ds, "EntranceDose", repairs)
        entrance_gy = entrance_dgy * 0.1 if entrance_dgy is not None else None
    if entrance_gy is not None:
        repairs.append("MPPS entrance dose taken as reference-point air kerma")

    events: list[IrradiationEvent] = []
    for item in ds.get("ExposureDoseSequence", None) or []:
        # Technique per exposure, no dose: kVp, tube current in µA, exposure time in ms.
        current_ua = _number(item, "XRayTubeCurrentInuA", repairs)
        time_ms = _number(item, "ExposureTime", repairs)
        mode = str(item.get("RadiationMode", "") or "").upper()
        events.append(
            IrradiationEvent(
                uid=None,
                kind="fluoroscopy" if mode == "CONTINUOUS" else "acquisition" if mode == "PULSED" else "unknown",
                kvp_kv=_number(item, "KVP", repairs),
                tube_current_ma=current_ua / 1000 if current_ua is not None else None,
                duration_s=time_ms / 1000 if time_ms is not None else None,
            )
        )
    for item in ds.get("CTExposureSequence", None) or []:
        ctdivol = _number(item, "CTDIvol", repairs)
        events.append(IrradiationEvent(uid=None, kind="ct", ctdivol_mgy=ctdivol))

    planes: tuple[PlaneTotals, ...] = ()
    if any(v is not None for v in (dap, entrance_gy, fluoro_s)):
        planes = (
            PlaneTotals(plane="single", dap_total_gym2=dap, dose_rp_total_gy=entrance_gy, fluoro_time_s=fluoro_s),
        )
    if not study_instance_uid:
        for step in ds.get("ScheduledStepAttributesSequence", None) or []:
            study_instance_uid = str(step.get("StudyInstanceUID", "") or "") or None
            if study_instance_uid:
                break
    has_ct = any(e.kind == "ct" for e in events)
    has_projection = bool(planes) or any(e.kind != "ct" for e in events)
    kind: DoseKind = (
        "mixed" if has_ct and has_projection else "ct" if has_ct else "projection" if has_projection else "unknown"
    )
    return DoseReport(
        source="mpps",
        kind=kind,
        study_instance_uid=study_instance_uid,
        sop_instance_uid=sop_instance_uid or (str(ds.get("SOPInstanceUID", "") or "") or None),
        content_datetime=f"{ds.get('PerformedProcedureStepEndDate', '') or ''}"
        f"{ds.get('PerformedProcedureStepEndTime', '') or ''}"
        or None,
        planes=planes,
        events=tuple(events),
        mpps_exposure_count=int(exposures) if exposures is not None else None,
        mpps_entrance_dose_gy=entrance_gy,
        repairs=tuple(repairs),
    )
