"""RDSRs, agent SRs and MPPS dose through the correlator, from real Part 10 files built in the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from suite_daemon.simulate.sr_builders import (
    CONTRAST,
    PRESSURE_TERMINATION,
    SALINE,
    CtEvent,
    InjectionPhase,
    InjectorEvent,
    Study,
    Vendor,
    XrayEvent,
    build_agent_sr,
    build_ct_rdsr,
    build_projection_rdsr,
    save,
)
from tests.correlator.machine_harness import AGENT_SR, DOSE_SR, Machine, config, dose_sample, image, mpps


@pytest.fixture
def m(tmp_path: Path) -> Machine:
    return Machine(config(tmp_path, alerts={"air_kerma_mgy": [3000, 5000], "dose_source_tolerance_percent": 10}))


def test_growing_ct_rdsrs_and_older_resend_count_each_event_once(m: Machine, tmp_path: Path) -> None:
    study = Study()
    events = [CtEvent(generate_uid(), 1.0 + n, 10.0 + n) for n in range(4)]
    series = generate_uid()
    partial = build_ct_rdsr(events[:2], study, series_uid=series)
    full = build_ct_rdsr(events, study, series_uid=series)
    for n, ds in enumerate((partial, full)):
        m.feed(
            image(
                m.at(n),
                study.study_uid,
                sop=ds.SOPInstanceUID,
                sop_class=DOSE_SR,
                path=save(ds, tmp_path / f"rdsr{n}.dcm"),
            )
        )
    # the older partial report again, as a new object (some modalities give it a new SOP uid)
    again = build_ct_rdsr(events[:2], study, series_uid=series)
    m.feed(image(m.at(5), study.study_uid, sop_class=DOSE_SR, path=save(again, tmp_path / "again.dcm")))
    m.tick(10)
    [pid] = m.pids()
    dose = m.summary(pid)["dose"]
    assert dose["irradiation_events"] == 4
    assert dose["dlp_total_mgycm"] == pytest.approx(sum(e.dlp_mgycm for e in events))
    assert dose["ctdivol_max_mgy"] == pytest.approx(4.0)
    assert dose["totals_from"]["dlp_total_mgycm"] == "rdsr"
    reports = m.of(pid, "dose.report")
    assert [r.data["new_irradiation_events"] for r in reports] == [2, 2, 0]
    assert m.summary(pid)["images"]["count"] == 0 and m.summary(pid)["objects"] == 3


def test_projection_rdsr_vendor_units_repaired_alert_and_cross_check(m: Machine, tmp_path: Path) -> None:
    study = Study()
    events = [
        XrayEvent(generate_uid(), "fluoroscopy", 0.004, 2.0, 60.0, plane="A"),
        XrayEvent(generate_uid(), "acquisition", 0.006, 1.5, 5.0, plane="B"),
    ]
    ds = build_projection_rdsr(events, study, vendor=Vendor(dap_unit="dGy.cm2", dose_unit="mGy"))
    m.feed(image(m.at(0), study.study_uid, sop_class=DOSE_SR, path=save(ds, tmp_path / "xa.dcm")))
    [pid] = m.pids()
    dose = m.summary(pid)["dose"]
    assert dose["dap_total_gym2"] == pytest.approx(0.010)
    assert dose["air_kerma_total_gy"] == pytest.approx(3.5)
    assert [r for _, e, r in m.journal if e == "dose.repair"], "unit repairs are journaled"
    alerts = [e.data for e in m.of(pid, "alert")]
    assert [(a["kind"], a["level"]) for a in alerts] == [("air_kerma_threshold", "warning")]
    # a dose meter far from the RDSR: one disagreement alert, once
    m.feed(dose_sample(m.at(1), 0.0))
    m.feed(dose_sample(m.at(2), 0.02))
    m.feed(dose_sample(m.at(3), 0.03))
    kinds = [e.data["kind"] for e in m.of(pid, "alert")]
    assert kinds.count("dose_source_disagreement") == 1
    assert m.summary(pid)["dose"]["dap_total_gym2"] == pytest.approx(0.010)  # the RDSR stays authoritative


def test_agent_sr_phases_and_pressure_termination(m: Machine, tmp_path: Path) -> None:
    study = Study()
    phases = [
        InjectionPhase(generate_uid(), CONTRAST, 40.0, 3.0, 13.5, 620.0),
        InjectionPhase(generate_uid(), SALINE, 20.0, 3.0, 6.5, 480.0),
    ]
    ds = build_agent_sr(
        phases, study, events=[InjectorEvent(PRESSURE_TERMINATION, phase_uid=phases[0].uid)], completed=False
    )
    path = save(ds, tmp_path / "agent.dcm")
    m.feed(image(m.at(0), study.study_uid, sop=ds.SOPInstanceUID, sop_class=AGENT_SR, path=path))
    m.feed(image(m.at(1), study.study_uid, sop_class=AGENT_SR, path=path))  # re-sent under a new uid
    [pid] = m.pids()
    assert len(m.of(pid, "injection.phase")) == 2
    injection = m.summary(pid)["injection"]
    assert injection["volume_total_ml"] == pytest.approx(60.0) and injection["phases"] == 2
    assert injection["peak_pressure_kpa"] == pytest.approx(620.0)
    critical = [e.data for e in m.of(pid, "alert") if e.data["level"] == "critical"]
    assert len(critical) == 1


def test_unreadable_sr_is_an_alert_not_a_loss(m: Machine, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom")
    m.feed(image(m.at(0), "1.1", sop_class=DOSE_SR, path=bad))
    [pid] = m.pids()
    assert m.types(pid) == ["procedure.opened", "image.received", "alert"]
    assert m.of(pid, "alert")[0].data["kind"] == "dose_report_unreadable"


def test_mpps_dose_attributes(m: Machine) -> None:
    attrs = {
        "00400300": {"vr": "US", "Value": [120]},
        "0018115E": {"vr": "DS", "Value": [250.0]},
        "00080060": {"vr": "CS", "Value": ["XA"]},
    }
    m.feed(mpps(m.at(0), "9.1", "IN PROGRESS", "1.1"))
    m.feed(mpps(m.at(60), "9.1", "COMPLETED", "1.1", action="set", attributes=attrs))
    [pid] = m.pids()
    summary = m.summary(pid)
    assert summary["dose"]["fluoro_time_s"] == pytest.approx(120.0)
    assert summary["dose"]["dap_total_gym2"] == pytest.approx(250.0e-5)
    assert summary["dose"]["totals_from"]["fluoro_time_s"] == "mpps"
    assert summary["modality"] == "XA"


def test_mpps_set_for_unknown_step_is_kept_on_the_daemon_stream(m: Machine) -> None:
    m.feed(mpps(m.at(0), "9.9", "COMPLETED", "7.7", action="set"))
    assert m.pids() == []
    assert [e.type for e in m.of(None)] == ["dose.report", "alert"]


def test_mr_sar_maximum_and_alert(tmp_path: Path) -> None:
    m = Machine(config(tmp_path, alerts={"sar_wkg": [2.0]}))
    for n, sar in enumerate((1.2, 2.5, 1.9)):
        m.feed(image(m.at(n), "1.1", sar=sar))
    m.tick(5)
    [pid] = m.pids()
    assert m.summary(pid)["dose"]["sar_max_wkg"] == pytest.approx(2.5)
    assert [e.data["kind"] for e in m.of(pid, "alert")] == ["sar_threshold"]


def test_prepare_parses_once_off_the_loop(tmp_path: Path) -> None:
    from suite_daemon.correlator import ProcedureCorrelator
    from suite_daemon.dose.rdsr import DoseReport, parse_rdsr

    study = Study()
    path = save(build_ct_rdsr([CtEvent(generate_uid(), 2.0, 30.0)], study), tmp_path / "r.dcm")
    calls: list[Path] = []

    def reader(p: Path) -> DoseReport:
        calls.append(p)
        return parse_rdsr(p)

    m = Machine(config(tmp_path))
    m.correlator = ProcedureCorrelator(m.cfg, read_rdsr=reader)
    item = image(m.at(0), study.study_uid, sop_class=DOSE_SR, path=path)
    m.correlator.prepare(item)  # what the pipeline would run in a worker thread
    m.feed(item)
    [pid] = m.pids()
    assert calls == [path]
    assert m.summary(pid)["dose"]["dlp_total_mgycm"] == pytest.approx(30.0)
