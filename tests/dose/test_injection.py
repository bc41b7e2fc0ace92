"""Agent administration SR phases and the injection ledger (SR and serial pump kept apart)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from suite_daemon.dose.agent_sr import parse_agent_sr
from suite_daemon.dose.injection_ledger import InjectionLedger
from suite_daemon.dose.rdsr import DoseParseError
from suite_daemon.events import DeviceNoticed, DeviceSampled
from suite_daemon.simulate.sr_builders import (
    AIR_DETECTED,
    CONTRAST,
    MANUAL_HOLD,
    PRESSURE_TERMINATION,
    SALINE,
    InjectionPhase,
    InjectorEvent,
    Study,
    Vendor,
    build_agent_sr,
    build_projection_rdsr,
    save,
)


def phases() -> list[InjectionPhase]:
    return [
        InjectionPhase(
            generate_uid(), CONTRAST, volume_ml=60.0, peak_flow_mlps=4.5, duration_s=13.3, peak_pressure_kpa=780.0
        ),
        InjectionPhase(
            generate_uid(), SALINE, volume_ml=30.0, peak_flow_mlps=5.0, duration_s=6.0, peak_pressure_kpa=650.5
        ),
    ]


def test_agent_sr_phases(tmp_path: Path) -> None:
    ps = phases()
    study = Study()
    path = save(build_agent_sr(ps, study), tmp_path / "agent.dcm")
    report = parse_agent_sr(path)
    assert report.study_instance_uid == study.study_uid
    assert [p.uid for p in report.phases] == [p.uid for p in ps]
    assert [p.agent for p in report.phases] == ["Iohexol", "Saline"]
    assert [p.volume_ml for p in report.phases] == [60.0, 30.0]
    assert [p.peak_flow_mlps for p in report.phases] == [4.5, 5.0]
    assert [p.peak_pressure_kpa for p in report.phases] == [780.0, 650.5]
    assert [p.duration_s for p in report.phases] == [13.3, 6.0]
    assert report.phases[0].pressure_limit_kpa == 2068.0
    assert report.phases[0].phase_type == "programmed_administration"
    assert report.volume_total_ml == 90.0 and report.peak_flow_mlps == 5.0 and report.peak_pressure_kpa == 780.0
    assert report.flags == () and report.completion_status == "Complete"
    assert report.repairs == ()


def test_agent_sr_events_and_pressure_in_psi() -> None:
    ps = phases()
    events = [
        InjectorEvent(MANUAL_HOLD, "20261122100010", ps[0].uid),
        InjectorEvent(PRESSURE_TERMINATION, "20261122100020", ps[0].uid),
        InjectorEvent(AIR_DETECTED, "20261122100030"),
    ]
    report = parse_agent_sr(build_agent_sr(ps, events=events, pressure_unit="[psi]", completed=False))
    assert math.isclose(report.phases[0].peak_pressure_kpa or 0, 780.0, rel_tol=1e-9)
    assert [(e.kind, e.level) for e in report.events] == [
        ("manual_hold_started", "notice"),
        ("terminated_pressure_limit", "critical"),
        ("air_detected", "critical"),
    ]
    assert report.events[1].phase_uid == ps[0].uid and report.events[1].detected == "20261122100020"
    assert [f.kind for f in report.flags] == ["terminated_pressure_limit", "air_detected"]
    assert any("converted" in r for r in report.repairs)


def test_agent_sr_without_template_and_not_an_agent_sr() -> None:
    report = parse_agent_sr(build_agent_sr(phases(), vendor=Vendor(declare_template=False)))
    assert any("no content template" in r for r in report.repairs)
    with pytest.raises(DoseParseError):
        parse_agent_sr(build_projection_rdsr([]))


def test_ledger_resent_sr_counts_once_and_flags_once() -> None:
    ps = phases()
    ev = [InjectorEvent(PRESSURE_TERMINATION, "20261122100020", ps[1].uid)]
    ledger = InjectionLedger()
    first = ledger.add_report(parse_agent_sr(build_agent_sr(ps[:1])))
    assert first == []
    flags = ledger.add_report(parse_agent_sr(build_agent_sr(ps, events=ev)))
    assert [(f.level, f.kind) for f in flags] == [("critical", "injection_terminated_pressure_limit")]
    assert ledger.add_report(parse_agent_sr(build_agent_sr(ps, events=ev))) == []
    s = ledger.summary()
    assert (s["volume_total_ml"], s["peak_flow_mlps"], s["peak_pressure_kpa"], s["phases"]) == (90.0, 5.0, 780.0, 2)
    assert s["totals_from"] == {k: "agent_sr" for k in ("volume_total_ml", "peak_flow_mlps", "peak_pressure_kpa")}


def pump_sample(t: datetime, volume: float, flow: float, pressure: float, segment: int = 0) -> DeviceSampled:
    return DeviceSampled(
        device="pump1",
        driver="alaris-asena",
        kind="injection",
        values={"volume_ml": volume, "flow_mlps": flow, "pressure_kpa": pressure, "rate_set_mlps": 2.0},
        host_time=t,
        segment=segment,
    )


def phase(t: datetime, state: str) -> DeviceNoticed:
    return DeviceNoticed(device="pump1", driver="alaris-asena", kind="phase", data={"state": state}, time=t)


def test_pump_phases_volume_and_peaks_and_alarm() -> None:
    t0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    at = [t0 + timedelta(seconds=i) for i in range(20)]
    ledger = InjectionLedger()
    ledger.add_sample(pump_sample(at[0], 10.0, 0.0, 5.0))
    ledger.add_notice(phase(at[1], "infusing"))
    ledger.add_sample(pump_sample(at[2], 14.0, 2.0, 90.0))
    ledger.add_sample(pump_sample(at[3], 18.0, 2.0, 120.0))
    ledger.add_notice(phase(at[4], "stopped"))
    ledger.add_sample(pump_sample(at[5], 18.0, 0.0, 10.0))
    # counter reset (new segment), second phase
    ledger.add_sample(pump_sample(at[6], 0.0, 0.0, 10.0, segment=1))
    ledger.add_notice(phase(at[7], "bolus"))
    ledger.add_sample(pump_sample(at[8], 5.0, 3.5, 200.0, segment=1))
    ledger.add_notice(phase(at[9], "stopped"))
    # a reset while the link was down: the new segment counts from zero
    ledger.add_sample(pump_sample(at[10], 1.5, 0.0, 10.0, segment=2))
    s = ledger.summary()
    assert s["volume_total_ml"] == 8.0 + 5.0 + 1.5
    assert s["peak_flow_mlps"] == 3.5 and s["peak_pressure_kpa"] == 200.0 and s["phases"] == 2
    assert s["totals_from"]["volume_total_ml"] == "pump"
    pump = s["sources"][0]
    assert [p["volume_ml"] for p in pump["phase_list"]] == [8.0, 5.0]
    assert [p["state"] for p in pump["phase_list"]] == ["infusing", "bolus"]
    flags = ledger.add_notice(
        DeviceNoticed(
            device="pump1", driver="newera-pump", kind="alarm", data={"code": "S", "message": "motor stalled"}
        )
    )
    assert [(f.level, f.kind, f.source) for f in flags] == [("critical", "injection_pump_alarm", "pump1")]
    assert (
        ledger.add_notice(DeviceNoticed("pump1", "newera-pump", "alarm", {"code": "R", "message": "pump reset"})) == []
    )


def test_sr_authoritative_pump_kept_apart() -> None:
    t0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    ledger = InjectionLedger()
    ledger.add_report(parse_agent_sr(build_agent_sr(phases())))
    ledger.add_sample(pump_sample(t0, 0.0, 0.0, 1.0))
    ledger.add_sample(pump_sample(t0 + timedelta(seconds=1), 3.0, 1.0, 50.0))
    s = ledger.summary()
    assert s["volume_total_ml"] == 90.0
    assert [src["source"] for src in s["sources"]] == ["agent_sr", "pump"]
    assert s["sources"][1]["volume_total_ml"] == 3.0


def test_nothing_injected_is_null() -> None:
    s = InjectionLedger().summary()
    assert (s["volume_total_ml"], s["peak_flow_mlps"], s["peak_pressure_kpa"], s["phases"]) == (None, None, None, 0)


def test_state_round_trip_mid_phase() -> None:
    import json

    t0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    ps = phases()
    ledger = InjectionLedger()
    ledger.add_report(parse_agent_sr(build_agent_sr(ps, events=[InjectorEvent(AIR_DETECTED, "20261122100030")])))
    ledger.add_sample(pump_sample(t0, 2.0, 0.0, 5.0))
    ledger.add_notice(phase(t0 + timedelta(seconds=1), "infusing"))
    ledger.add_sample(pump_sample(t0 + timedelta(seconds=2), 4.0, 2.0, 80.0))
    restored = InjectionLedger.from_state(json.loads(json.dumps(ledger.to_state())))
    assert restored.summary() == ledger.summary()
    # the open phase continues, and an already raised flag is not raised again
    restored.add_sample(pump_sample(t0 + timedelta(seconds=3), 7.0, 2.5, 90.0))
    restored.add_notice(phase(t0 + timedelta(seconds=4), "stopped"))
    pump = restored.summary()["sources"][1]
    assert pump["phase_list"][0]["volume_ml"] == 5.0 and pump["phase_list"][0]["peak_flow_mlps"] == 2.5
    again = restored.add_report(
        parse_agent_sr(build_agent_sr(ps, events=[InjectorEvent(AIR_DETECTED, "20261122100030")]))
    )
    assert again == []
