"""RDSR parsing against builder-made files; expected values are the builder inputs, summed here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import pydicom
import pytest
from pydicom.uid import generate_uid

from suite_daemon.dose.rdsr import DoseParseError, parse_rdsr
from suite_daemon.simulate.sr_builders import (
    CtEvent,
    Study,
    Vendor,
    XrayEvent,
    build_ct_rdsr,
    build_projection_rdsr,
    save,
)

Plane = Literal["A", "B", "single"]
EventKind = Literal["fluoroscopy", "acquisition"]


def fluoro_events(planes: tuple[Plane, ...] = ("single",)) -> list[XrayEvent]:
    events = []
    for i, plane in enumerate(planes * 3):
        kind: EventKind = "fluoroscopy" if i % 3 else "acquisition"
        events.append(
            XrayEvent(
                uid=f"1.2.826.0.1.3680043.10.999.{i + 1}",
                kind=kind,
                dap_gym2=1.25e-4 * (i + 1),
                dose_rp_gy=0.0125 * (i + 1),
                duration_s=3.5 + i,
                plane=plane,
                kvp=(70.0, 0.0, 74.0) if i == 1 else (81.0,),
                tube_current_ma=(10.0, 0.0, 14.0) if i == 1 else (12.0,),
                pulse_width_ms=(5.0, 0.0, 7.0) if i == 1 else (8.0,),
            )
        )
    return events


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


def expected(events: list[XrayEvent]) -> dict[str, float]:
    return {
        "dap": sum(e.dap_gym2 for e in events),
        "rp": sum(e.dose_rp_gy for e in events),
        "fluoro": sum(e.duration_s for e in events if e.kind == "fluoroscopy"),
    }


def test_single_plane_fluoro_totals_and_events(tmp_path: Path) -> None:
    events = fluoro_events()
    study = Study()
    path = save(build_projection_rdsr(events, study), tmp_path / "rdsr.dcm")
    assert pydicom.dcmread(path).file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.88.67"
    report = parse_rdsr(path)
    want = expected(events)
    assert report.kind == "projection"
    assert report.study_instance_uid == study.study_uid
    assert close(report.dap_total_gym2, want["dap"])
    assert close(report.air_kerma_total_gy, want["rp"])
    assert close(report.fluoro_time_s, want["fluoro"])
    assert report.irradiation_events == len(events)
    assert report.ctdivol_max_mgy is None and report.dlp_total_mgycm is None
    assert report.device.uid == study.modality_device_uid
    assert report.repairs == ()
    by_uid = {e.uid: e for e in report.events}
    pulsed = by_uid[events[1].uid]
    # averaged over the non-zero pulses only
    assert close(pulsed.kvp_kv, 72.0) and close(pulsed.tube_current_ma, 12.0) and close(pulsed.pulse_width_ms, 6.0)
    assert pulsed.kind == "fluoroscopy" and by_uid[events[0].uid].kind == "acquisition"
    assert close(pulsed.dap_gym2, events[1].dap_gym2)


def test_biplane_planes_kept_apart_and_summed() -> None:
    events = fluoro_events(("A", "B"))
    report = parse_rdsr(build_projection_rdsr(events))
    planes = {p.plane: p for p in report.planes}
    assert set(planes) == {"A", "B"}
    for plane in ("A", "B"):
        mine = [e for e in events if e.plane == plane]
        assert close(planes[plane].dap_total_gym2, sum(e.dap_gym2 for e in mine))
        assert close(planes[plane].dose_rp_total_gy, sum(e.dose_rp_gy for e in mine))
    want = expected(events)
    assert close(report.dap_total_gym2, want["dap"])
    assert close(report.air_kerma_total_gy, want["rp"])
    assert close(report.fluoro_time_s, want["fluoro"])


def test_ct_events_and_dlp_total() -> None:
    events = [
        CtEvent(uid=generate_uid(), ctdivol_mgy=2.5, dlp_mgycm=40.0, phantom="body"),
        CtEvent(uid=generate_uid(), ctdivol_mgy=12.75, dlp_mgycm=180.5, phantom="head"),
        CtEvent(uid=generate_uid(), ctdivol_mgy=7.0, dlp_mgycm=3.25),
    ]
    report = parse_rdsr(build_ct_rdsr(events))
    assert report.kind == "ct"
    assert close(report.ctdivol_max_mgy, 12.75)
    assert close(report.dlp_total_mgycm, 40.0 + 180.5 + 3.25)
    assert report.ct_event_count == 3
    assert [e.phantom for e in report.events] == ["body", "head", "body"]
    assert [e.dlp_mgycm for e in report.events] == [40.0, 180.5, 3.25]
    assert report.dap_total_gym2 is None and report.air_kerma_total_gy is None


@pytest.mark.parametrize(
    ("vendor", "repair_fragment"),
    [
        (Vendor(dap_unit="Gym2"), "'Gym2' read as UCUM 'Gy.m2'"),
        (Vendor(dap_unit="dGy.cm2"), "converted"),
        (Vendor(dap_unit="dGycm2"), "'dGycm2' read as UCUM 'dGy.cm2'"),
        (Vendor(dose_unit="mGy"), "mGy"),
        (Vendor(time_unit="ms"), "ms"),
        (Vendor(declare_template=False), "no content template declared"),
        (Vendor(meaning_typos=True), "differs from the standard"),
        (Vendor(empty_items=True), "empty numeric item ignored"),
        (Vendor(omit_plane_in_accumulated=True), "names no acquisition plane"),
        (Vendor(no_unit_scheme=True), "not UCUM"),
        (Vendor(multivalued_pulses=True), None),
        (Vendor(legacy_codes=True), None),
        (Vendor(enhanced=True), None),
    ],
)
def test_vendor_variations_give_the_same_totals(vendor: Vendor, repair_fragment: str | None) -> None:
    events = fluoro_events()
    report = parse_rdsr(build_projection_rdsr(events, vendor=vendor))
    want = expected(events)
    assert close(report.dap_total_gym2, want["dap"])
    assert close(report.air_kerma_total_gy, want["rp"])
    assert close(report.fluoro_time_s, want["fluoro"])
    assert report.irradiation_events == len(events)
    pulsed = {e.uid: e for e in report.events}[events[1].uid]
    assert close(pulsed.kvp_kv, 72.0)
    if repair_fragment is None:
        assert report.repairs == ()
    else:
        assert any(repair_fragment in r for r in report.repairs), report.repairs


def test_missing_accumulated_container_sums_events() -> None:
    events = fluoro_events()
    report = parse_rdsr(build_projection_rdsr(events, vendor=Vendor(omit_accumulated=True)))
    want = expected(events)
    assert report.planes == ()
    assert close(report.dap_total_gym2, want["dap"])
    assert close(report.fluoro_time_s, want["fluoro"])
    assert any("summed from the irradiation events" in r for r in report.repairs)


def test_missing_fluoro_time_falls_back_to_event_durations() -> None:
    events = fluoro_events()
    report = parse_rdsr(build_projection_rdsr(events, vendor=Vendor(omit_fluoro_time=True)))
    assert close(report.fluoro_time_s, expected(events)["fluoro"])


def test_ct_mgycm_spelling_and_missing_dlp_total() -> None:
    events = [CtEvent(uid=generate_uid(), ctdivol_mgy=3.0, dlp_mgycm=55.5), CtEvent(generate_uid(), 4.0, 60.25)]
    report = parse_rdsr(build_ct_rdsr(events, vendor=Vendor(dlp_unit="mGycm", omit_dlp_total=True)))
    assert close(report.dlp_total_mgycm, 115.75)
    assert any("'mGycm' read as UCUM 'mGy.cm'" in r for r in report.repairs)
    assert any("summed from the CT acquisitions" in r for r in report.repairs)


def test_events_without_uid_are_counted_and_flagged() -> None:
    events = fluoro_events()
    report = parse_rdsr(build_projection_rdsr(events, vendor=Vendor(omit_event_uid=True)))
    assert report.irradiation_events == len(events)
    assert all(e.uid is None for e in report.events)
    assert any("no Irradiation Event UID" in r for r in report.repairs)


def test_unknown_unit_is_not_guessed() -> None:
    ds = build_projection_rdsr(fluoro_events())
    acc = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "113702")
    dap = next(i for i in acc.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "113722")
    dap.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue = "furlong"
    report = parse_rdsr(ds)
    assert report.planes[0].dap_total_gym2 is None
    assert any("'furlong' is not a known unit" in r for r in report.repairs)


def test_not_a_dose_report_is_a_clear_error(tmp_path: Path) -> None:
    ds = build_projection_rdsr(fluoro_events())
    ds.ConceptNameCodeSequence[0].CodeValue = "126000"
    ds.ContentSequence = [i for i in ds.ContentSequence if i.ValueType != "CONTAINER"]
    with pytest.raises(DoseParseError, match="not an X-Ray Radiation Dose Report"):
        parse_rdsr(ds)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not dicom at all")
    with pytest.raises(DoseParseError):
        parse_rdsr(garbage)


def test_to_data_is_json_ready_and_has_no_patient_identity() -> None:
    import json

    study = Study()
    data = parse_rdsr(build_projection_rdsr(fluoro_events(), study)).to_data()
    text = json.dumps(data)
    assert study.patient_name not in text and study.patient_id not in text
    assert data["source"] == "rdsr" and data["irradiation_events"] == 3
