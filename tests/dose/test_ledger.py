"""DoseLedger: re-sent growing RDSRs, an older partial one after a newer, duplicates, sources kept apart."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.uid import generate_uid

from suite_daemon.dose.ledger import DoseLedger
from suite_daemon.dose.mpps import parse_mpps
from suite_daemon.dose.mr import MrExposure
from suite_daemon.dose.rdsr import DoseReport, parse_rdsr
from suite_daemon.events import DeviceSampled
from suite_daemon.simulate.sr_builders import (
    CtEvent,
    Study,
    Vendor,
    XrayEvent,
    build_ct_rdsr,
    build_projection_rdsr,
)

Plane = Literal["A", "B", "single"]


def events(n: int, plane: Plane = "single") -> list[XrayEvent]:
    return [
        XrayEvent(
            uid=f"1.2.826.0.1.3680043.10.777.{plane}.{i}".replace(".A.", ".1.")
            .replace(".B.", ".2.")
            .replace(".single.", ".3."),
            kind="fluoroscopy" if i % 2 else "acquisition",
            dap_gym2=2.0e-4 + i * 1e-5,
            dose_rp_gy=0.02 + i * 0.001,
            duration_s=2.0 + i,
            plane=plane,
        )
        for i in range(n)
    ]


def mpps_report(attributes: dict[str, Any], sop_instance_uid: str) -> DoseReport:
    report = parse_mpps(attributes, sop_instance_uid)
    assert report is not None
    return report


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9)


def test_growing_cumulative_reports_count_each_event_once() -> None:
    study = Study()
    all_events = events(6)
    ledger = DoseLedger()
    new_counts = [ledger.add_report(parse_rdsr(build_projection_rdsr(all_events[:n], study))) for n in (2, 4, 6)]
    assert new_counts == [2, 2, 2]
    summary = ledger.summary()
    assert summary["irradiation_events"] == 6
    assert close(summary["dap_total_gym2"], sum(e.dap_gym2 for e in all_events))
    assert close(summary["air_kerma_total_gy"], sum(e.dose_rp_gy for e in all_events))
    assert close(summary["fluoro_time_s"], sum(e.duration_s for e in all_events if e.kind == "fluoroscopy"))
    assert summary["totals_from"]["dap_total_gym2"] == "rdsr"


def test_older_partial_report_after_newer_does_not_shrink() -> None:
    study = Study()
    all_events = events(5)
    ledger = DoseLedger()
    ledger.add_report(parse_rdsr(build_projection_rdsr(all_events, study)))
    before = ledger.summary()
    assert ledger.add_report(parse_rdsr(build_projection_rdsr(all_events[:2], study))) == 0
    after = ledger.summary()
    for key in ("dap_total_gym2", "air_kerma_total_gy", "fluoro_time_s", "irradiation_events"):
        assert after[key] == before[key]


def test_duplicate_report_is_idempotent() -> None:
    ds = build_projection_rdsr(events(3))
    ledger = DoseLedger()
    ledger.add_report(parse_rdsr(ds))
    once = ledger.summary()
    assert ledger.add_report(parse_rdsr(ds)) == 0
    assert ledger.summary() == once


def test_biplane_planes_kept_apart_and_totals_summed() -> None:
    study = Study()
    a, b = events(3, "A"), events(2, "B")
    ledger = DoseLedger()
    ledger.add_report(parse_rdsr(build_projection_rdsr(a[:2] + b[:1], study)))
    ledger.add_report(parse_rdsr(build_projection_rdsr(a + b, study)))
    planes = ledger.plane_totals()
    assert close(planes["A"]["dap_total_gym2"], sum(e.dap_gym2 for e in a))
    assert close(planes["B"]["dap_total_gym2"], sum(e.dap_gym2 for e in b))
    assert close(ledger.summary()["dap_total_gym2"], sum(e.dap_gym2 for e in a + b))
    assert ledger.summary()["irradiation_events"] == 5


def test_two_modalities_add_and_ct_merges() -> None:
    xa = Study(modality_device_uid="1.2.3.1")
    ct = Study(study_uid=xa.study_uid, modality_device_uid="1.2.3.2")
    ct_events = [CtEvent(generate_uid(), 4.0, 100.0), CtEvent(generate_uid(), 9.5, 220.0)]
    ledger = DoseLedger()
    ledger.add_report(parse_rdsr(build_projection_rdsr(events(2), xa)))
    ledger.add_report(parse_rdsr(build_ct_rdsr(ct_events[:1], ct)))
    ledger.add_report(parse_rdsr(build_ct_rdsr(ct_events, ct)))
    s = ledger.summary()
    assert close(s["dlp_total_mgycm"], 320.0)
    assert close(s["ctdivol_max_mgy"], 9.5)
    assert s["irradiation_events"] == 4
    assert close(s["dap_total_gym2"], sum(e.dap_gym2 for e in events(2)))


def test_nothing_measured_is_null_not_zero() -> None:
    s = DoseLedger().summary()
    for key in ("dap_total_gym2", "air_kerma_total_gy", "fluoro_time_s", "ctdivol_max_mgy", "dlp_total_mgycm"):
        assert s[key] is None
    assert s["irradiation_events"] == 0 and s["sources"] == []
    assert "sar_max_wkg" not in s


def meter(device: str, dap: float, kerma: float, fluoro: float, segment: int = 0) -> DeviceSampled:
    return DeviceSampled(
        device=device,
        driver="sim-dap",
        kind="dose",
        values={"dap_gym2": dap, "air_kerma_gy": kerma, "fluoro_time_s": fluoro, "dap_rate_gym2_s": 1e-6},
        segment=segment,
    )


def test_meter_segments_and_gap_filling() -> None:
    ledger = DoseLedger()
    assert ledger.add_sample(meter("dap1", 1.0e-4, 0.010, 5.0))  # totals appear (0, not None)
    assert ledger.add_sample(meter("dap1", 3.0e-4, 0.030, 9.0))
    assert not ledger.add_sample(meter("dap1", 3.0e-4, 0.030, 9.0))
    # counter reset: a new segment starts
    for s in [meter("dap1", 0.0, 0.0, 0.0, 1), meter("dap1", 2.0e-4, 0.02, 4.0, 1)]:
        ledger.add_sample(s)
    totals = ledger.meter_totals()["dap1"]
    assert close(totals["dap_total_gym2"], 2.0e-4 + 2.0e-4)
    assert close(totals["air_kerma_total_gy"], 0.04)
    assert close(totals["fluoro_time_s"], 8.0)
    summary = ledger.summary()
    assert summary["totals_from"] == {
        "dap_total_gym2": "meter",
        "air_kerma_total_gy": "meter",
        "fluoro_time_s": "meter",
    }
    # a counter that goes down without a segment change is a restart too, and noted
    ledger.add_sample(meter("dap1", 1.0e-4, 0.01, 1.0, 1))
    ledger.add_sample(meter("dap1", 1.5e-4, 0.015, 2.0, 1))
    assert close(ledger.meter_totals()["dap1"]["dap_total_gym2"], 4.0e-4 + 1.5e-4)
    assert any("went down" in r for r in ledger.repairs)


def test_later_segment_counts_from_zero() -> None:
    # docs/drivers.md: the first segment counts from where the procedure found it, later ones from zero
    ledger = DoseLedger()
    ledger.add_sample(meter("dap1", 5.0e-4, 0.05, 50.0))
    ledger.add_sample(meter("dap1", 6.0e-4, 0.06, 55.0))
    ledger.add_sample(meter("dap1", 0.5e-4, 0.005, 2.0, segment=1))  # reset while the link was down
    ledger.add_sample(meter("dap1", 0.75e-4, 0.0075, 3.0, segment=1))
    totals = ledger.meter_totals()["dap1"]
    assert close(totals["dap_total_gym2"], 1.0e-4 + 0.75e-4)
    assert close(totals["fluoro_time_s"], 5.0 + 3.0)
    assert ledger.repairs == []


def test_rdsr_authoritative_meter_cross_check() -> None:
    evs = events(4)
    rdsr_dap = sum(e.dap_gym2 for e in evs)
    ledger = DoseLedger()
    ledger.add_report(parse_rdsr(build_projection_rdsr(evs)))
    ledger.add_sample(meter("dap1", 0.0, 0.0, 0.0))
    ledger.add_sample(meter("dap1", rdsr_dap * 1.1, sum(e.dose_rp_gy for e in evs), 8.0))
    s = ledger.summary()
    rdsr_totals = ledger.rdsr_totals()
    assert rdsr_totals is not None
    assert s["dap_total_gym2"] == rdsr_totals["dap_total_gym2"]
    assert [src["source"] for src in s["sources"]] == ["rdsr", "meter"]
    assert ledger.cross_check(20.0) == []
    found = {d.quantity: d for d in ledger.cross_check(5.0)}
    assert set(found) == {"dap_total_gym2"}
    assert math.isclose(found["dap_total_gym2"].percent, 10.0, rel_tol=1e-6)
    assert found["dap_total_gym2"].reference_source == "rdsr"


def test_mpps_fills_when_no_rdsr_and_sums_instances() -> None:
    ledger = DoseLedger()
    ledger.add_report(mpps_report({"00400300": {"vr": "US", "Value": [30]}}, "1.2.3.4"))
    ledger.add_report(
        mpps_report({"00400300": {"vr": "US", "Value": [60]}, "0018115E": {"vr": "DS", "Value": [50]}}, "1.2.3.4")
    )
    ledger.add_report(mpps_report({"00400300": {"vr": "US", "Value": [10]}}, "1.2.3.5"))
    s = ledger.summary()
    assert s["fluoro_time_s"] == 70.0
    assert close(s["dap_total_gym2"], 50 * 1e-5)
    assert s["totals_from"]["fluoro_time_s"] == "mpps"


def test_mr_maxima_are_extra_keys() -> None:
    ledger = DoseLedger()
    assert ledger.add_mr(MrExposure(sar_wkg=1.2, db_dt_ts=20.0))
    assert ledger.add_mr(MrExposure(sar_wkg=2.5, b1rms_ut=1.1))
    assert not ledger.add_mr(MrExposure(sar_wkg=0.4))
    s = ledger.summary()
    assert (s["sar_max_wkg"], s["db_dt_max_ts"], s["b1rms_max_ut"]) == (2.5, 20.0, 1.1)


def test_state_round_trip_continues_totals() -> None:
    study = Study()
    evs = events(4)
    ledger = DoseLedger()
    ledger.add_report(parse_rdsr(build_projection_rdsr(evs[:2], study)))
    ledger.add_sample(meter("dap1", 0.0, 0.0, 0.0))
    ledger.add_sample(meter("dap1", 1e-4, 0.01, 3.0))
    ledger.add_mr(MrExposure(sar_wkg=1.0))
    restored = DoseLedger.from_state(json.loads(json.dumps(ledger.to_state())))
    assert restored.summary() == ledger.summary()
    assert restored.add_report(parse_rdsr(build_projection_rdsr(evs, study))) == 2
    assert restored.summary()["irradiation_events"] == 4


def test_uidless_events_are_not_double_counted_on_resend() -> None:
    study = Study()
    evs = events(3)
    ledger = DoseLedger()
    vendor = Vendor(omit_event_uid=True)
    ledger.add_report(parse_rdsr(build_projection_rdsr(evs[:2], study, vendor=vendor)))
    ledger.add_report(parse_rdsr(build_projection_rdsr(evs, study, vendor=vendor)))
    ledger.add_report(parse_rdsr(build_projection_rdsr(evs[:1], study, vendor=vendor)))
    s = ledger.summary()
    assert s["irradiation_events"] == 3
    assert close(s["dap_total_gym2"], sum(e.dap_gym2 for e in evs))


_PREFIX_EVENTS = events(6, "A") + events(3, "B")
_STUDY = Study()
_PREFIX_REPORTS = [parse_rdsr(build_projection_rdsr(_PREFIX_EVENTS[:n], _STUDY)) for n in range(1, 10)]


@settings(max_examples=60, deadline=None)
@given(order=st.lists(st.integers(0, 8), min_size=1, max_size=12))
def test_any_order_of_cumulative_reports_never_shrinks_and_converges(order: list[int]) -> None:
    ledger = DoseLedger()
    previous: dict[str, float] = {}
    for index in [*order, 8]:  # the complete report arrives at some point (here last, after any others)
        ledger.add_report(_PREFIX_REPORTS[index])
        s = ledger.summary()
        for key in ("dap_total_gym2", "air_kerma_total_gy", "fluoro_time_s", "irradiation_events"):
            value = s[key] or 0.0
            assert value >= previous.get(key, 0.0) - 1e-15
            previous[key] = value
    final = ledger.summary()
    assert final["irradiation_events"] == 9
    assert close(final["dap_total_gym2"], sum(e.dap_gym2 for e in _PREFIX_EVENTS))
    assert close(final["air_kerma_total_gy"], sum(e.dose_rp_gy for e in _PREFIX_EVENTS))
