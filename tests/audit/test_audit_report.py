"""`report`: html, pdf and json files; what they hold; unknown ids; the timeline's readings of records."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from suite_daemon.audit import AuditJournal
from suite_daemon.inspect import cmd_report
from suite_daemon.inspect.timeline import build_timeline, find_quantity
from tests.audit.audit_fixtures import T0, State, event, index_procedure, summary, write_fluoro_procedure

FLUORO, CT = "20261122-0001", "20261122-0002"


@pytest.mark.parametrize("fmt", ["html", "pdf", "json"])
@pytest.mark.parametrize("procedure_id", [FLUORO, CT])
def test_every_format_writes_a_valid_file(
    populated: State, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, procedure_id: str
) -> None:
    out = tmp_path / f"report.{fmt}"
    assert cmd_report(populated.config, procedure_id, fmt, out) == 0
    data = out.read_bytes()
    assert len(data) > 1000
    if fmt == "pdf":
        assert data.startswith(b"%PDF")
        assert data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") + data.count(b"/Type/Page") >= 2
    elif fmt == "json":
        assert json.loads(data)["procedure_id"] == procedure_id
    else:
        text = data.decode("utf-8")
        assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
        assert "http://" not in text and "https://" not in text  # self-contained
    assert capsys.readouterr().out == ""  # data goes to the file, diagnostics to stderr
    assert not list(tmp_path.glob(".report.*"))  # no temporary file left behind


def test_json_report_content(populated: State, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert cmd_report(populated.config, FLUORO, "json", out) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["summary"]["injection"]["volume_total_ml"] == 80.0
    by_source = report["dose_by_source"]
    # a meter counts from its first reading (2e-6 Gy·m², 5 mGy), as the daemon's ledger totals it
    assert by_source["dap1"]["dap_gym2"] == pytest.approx(0.000638)
    assert by_source["dap1"]["air_kerma_gy"] == pytest.approx(1.595)
    assert by_source["rdsr"]["dap_gym2"] == pytest.approx(0.00068)
    assert by_source["dap1"]["readings"] == 59
    assert [p["label"] for p in report["injection_phases"]] == ["contrast", "saline"]
    assert report["injection_phases"][0]["start"].startswith("2026-11-22T09:06:40")
    assert report["alerts"][0]["kind"] == "air_kerma"
    assert report["audit"]["ok"] is True and report["audit"]["records"] == 107
    assert report["clock_offset_s"] == 2.4
    assert len(report["timeline"]["images"]) == 11


def test_html_report_content_and_escaping(state: State, tmp_path: Path) -> None:
    write_fluoro_procedure(state.root, FLUORO)
    with AuditJournal(state.journal("P-x")) as j:
        event(j, "procedure.opened", T0, "operator", {})
        event(j, "alert", T0, "correlator", {"level": "critical", "kind": "x", "message": "<script>alert(1)</script>"})
    index_procedure(state.root, summary("P-x", "open", T0, None, modality="<b>XA</b>"))
    out = tmp_path / "r.html"
    assert cmd_report(state.config, "P-x", "html", out) == 0
    text = out.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "&lt;b&gt;XA&lt;/b&gt;" in text
    assert cmd_report(state.config, FLUORO, "html", out) == 0
    text = out.read_text(encoding="utf-8")
    for expected in ("audit chain intact", "Injection phases", "air kerma passed 1000 mGy", "6.8 Gy·cm²"):
        assert expected in text


def test_unknown_id_writes_nothing(populated: State, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.pdf"
    assert cmd_report(populated.config, "nope", "pdf", out) == 1
    assert not out.exists()
    assert "unknown procedure" in capsys.readouterr().err


def test_unwritable_destination(populated: State, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_report(populated.config, FLUORO, "json", tmp_path / "missing-dir" / "r.json") == 1
    assert "cannot write the report" in capsys.readouterr().err


def test_bad_format_is_a_usage_error(populated: State, tmp_path: Path) -> None:
    assert cmd_report(populated.config, FLUORO, "docx", tmp_path / "r.docx") == 64


def test_report_of_tampered_journal_says_so(
    populated: State, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = populated.journal(FLUORO)
    lines = path.read_bytes().split(b"\n")
    assert b'"image.received"' in lines[7]
    lines[7] = lines[7].replace(b'"dicom"', b'"DICOM"')
    path.write_bytes(b"\n".join(lines))
    out = tmp_path / "r.json"
    assert cmd_report(populated.config, FLUORO, "json", out) == 0
    assert json.loads(out.read_text())["audit"] == {
        "file": str(path),
        "ok": False,
        "records": 7,
        "first_bad_line": 8,
        "first_bad_seq": 8,
        "reason": "hash mismatch: the record was changed after it was written",
    }
    assert "does not verify" in capsys.readouterr().err
    assert cmd_report(populated.config, FLUORO, "html", tmp_path / "r.html") == 0
    assert "audit chain FAILED at line 8" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_empty_procedure_still_reports(state: State, tmp_path: Path) -> None:
    index_procedure(state.root, summary("P-empty", "open", T0, None))
    for fmt in ("html", "pdf", "json"):
        assert cmd_report(state.config, "P-empty", fmt, tmp_path / f"r.{fmt}") == 0


@pytest.mark.parametrize(
    ("values", "quantity", "expected"),
    [
        ({"dap_gym2": 5e-5}, "dap_gym2", 5e-5),
        ({"dap_total_gym2": 5e-5}, "dap_gym2", 5e-5),
        ({"dap_gycm2": 0.5}, "dap_gym2", 5e-5),
        ({"dap_dgycm2": 5.0}, "dap_gym2", 5e-5),
        ({"dap_rate_gym2_s": 1.0}, "dap_gym2", None),
        ({"air_kerma_mgy": 1500.0}, "air_kerma_gy", 1.5),
        ({"air_kerma_total_gy": 1.5}, "air_kerma_gy", 1.5),
        ({"dlp_total_mgycm": 310.0}, "dlp_mgycm", 310.0),
        ({"dap_gym2": "5e-5"}, "dap_gym2", None),
        ({"dap_gym2": True}, "dap_gym2", None),
    ],
)
def test_quantities_are_read_in_contract_units(values: dict[str, Any], quantity: str, expected: float | None) -> None:
    found = find_quantity(values, quantity)
    assert found == (pytest.approx(expected) if expected is not None else None)


def test_timeline_adds_meter_segments_and_places_phases() -> None:
    def rec(seconds: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"time": (T0 + timedelta(seconds=seconds)).isoformat(), "event": kind, "source": "m", "data": data}

    records = [
        rec(0, "procedure.opened", {}),
        rec(10, "dose.sample", {"values": {"dap_gym2": 1e-4}, "segment": 0}),
        rec(20, "dose.sample", {"values": {"dap_gym2": 2e-4}, "segment": 0}),
        rec(30, "dose.sample", {"values": {"dap_gym2": 0.5e-4}, "segment": 1}),  # the meter restarted
        rec(40, "injection.phase", {"phase": "contrast", "start": (T0 + timedelta(seconds=32)).isoformat()}),
        rec(50, "injection.phase", {"phase": "saline", "duration_s": 5}),
        {"time": "not a time", "event": "dose.sample", "data": {"values": {"dap_gym2": 9.0}}},
        rec(60, "procedure.closed", {}),
    ]
    timeline = build_timeline(records, {"clock_offset_s": -1.5})
    # counted from the first reading; after the restart from zero, continuing the total
    assert [v for _, v in timeline.dose["dap_gym2"]["m"]] == pytest.approx([0.0, 1e-4, 1.5e-4])
    contrast, saline = timeline.phases
    assert (contrast.end - contrast.start).total_seconds() == 8
    assert saline.end == T0 + timedelta(seconds=50) and (saline.end - saline.start).total_seconds() == 5
    assert timeline.clock_offset_s == -1.5
    assert timeline.closed == T0 + timedelta(seconds=60)


def test_timeline_reads_injector_report_and_pump_phase_shapes() -> None:
    """The shapes the dose package produces: an agent SR's `phases` list, a pump phase with started/ended."""
    end = T0 + timedelta(seconds=100)
    sr = {
        "source": "agent_sr",
        "phases": [
            {"index": 1, "agent": "Iohexol", "volume_ml": 60.0, "peak_flow_mlps": 4.0, "duration_s": 15.0},
            {"index": 2, "agent": None, "phase_type": "saline", "volume_ml": 30.0, "duration_s": 10.0,
             "peak_pressure_kpa": 900.0},
        ],
        "events": [{"kind": "pressure_limit", "level": "critical"}],
    }  # fmt: skip
    pump = {"device": "pump1", "state": "infusing", "started": T0.isoformat(), "ended": None, "volume_ml": 5.0}
    records = [
        {"time": end.isoformat(), "event": "injection.phase", "source": "dicom", "data": sr},
        {"time": (T0 + timedelta(seconds=20)).isoformat(), "event": "injection.phase", "source": "p", "data": pump},
    ]
    first, second, third = build_timeline(records).phases
    assert (first.label, first.source, first.volume_ml, first.flow_mlps) == ("Iohexol", "agent_sr", 60.0, 4.0)
    assert second.label == "saline" and second.peak_pressure_kpa == 900.0
    assert second.end == end and second.start == end - timedelta(seconds=10) == first.end
    assert first.start == end - timedelta(seconds=25)
    assert second.events == ["pressure_limit"]
    assert (third.label, third.source, third.start, third.end) == ("infusing", "pump1", T0, T0 + timedelta(seconds=20))


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def test_meter_series_agrees_with_the_summary_total() -> None:
    """A meter whose counter ran on from earlier procedures: the report's reading is the procedure's share
    (last minus first reading), which is what the summary's meter total says, not the raw counter."""
    records = [{"time": _at(0), "event": "procedure.opened", "data": {}}]
    for i, raw in enumerate((2.721e-4, 2.821e-4, 2.921e-4, 6.415e-4)):
        data = {"device": "dap1", "driver": "ptw-diamentor", "values": {"dap_gym2": raw}, "segment": 0}
        records.append({"time": _at(1 + i), "event": "dose.sample", "source": "device:dap1", "data": data})
    records.append({"time": _at(1.5), "event": "dose.sample", "data": {"device": "dap2", "values": {}}})
    timeline = build_timeline(records)
    assert timeline.dose_by_source()["dap1"]["dap_gym2"] == pytest.approx(6.415e-4 - 2.721e-4)
    # a counter that went down without a segment change restarted: it counts on from zero
    records.append({"time": _at(9), "event": "dose.sample", "data": {"device": "dap1", "values": {"dap_gym2": 1e-5}}})
    assert build_timeline(records).dose_by_source()["dap1"]["dap_gym2"] == pytest.approx(6.415e-4 - 2.721e-4 + 1e-5)


def test_pump_state_changes_become_phases_with_their_volume() -> None:
    """Pumps report state changes (`injection.phase` {device, kind: phase, state, previous}): a phase runs from
    entering a flowing state to the next change, its volume is the counter's growth; pauses are not phases."""

    def notice(seconds: float, state: str) -> dict[str, Any]:
        data = {"device": "pump1", "driver": "newera-pump", "kind": "phase", "state": state, "previous": "x"}
        return {"time": _at(seconds), "event": "injection.phase", "source": "device:pump1", "data": data}

    def sample(seconds: float, volume: float, flow: float) -> dict[str, Any]:
        data = {"device": "pump1", "driver": "newera-pump", "values": {"volume_ml": volume, "flow_mlps": flow}}
        return {"time": _at(seconds), "event": "injection.sample", "source": "device:pump1", "data": data}

    records = [
        {"time": _at(0), "event": "procedure.opened", "data": {}},
        sample(1, 10.0, 0.0),
        notice(2, "infusing"),
        sample(3, 10.5, 0.5),
        sample(4, 11.0, 0.5),
        notice(5, "pause_phase"),
        sample(6, 11.0, 0.0),
        notice(7, "infusing"),
        sample(8, 12.5, 1.5),
        {"time": _at(10), "event": "procedure.closed", "data": {}},
    ]
    first, second = build_timeline(records).phases
    assert (first.source, first.label, first.start, first.end) == ("pump1", "infusing", T0 + timedelta(seconds=2),
                                                                   T0 + timedelta(seconds=5))  # fmt: skip
    assert first.volume_ml == pytest.approx(1.0) and first.flow_mlps == 0.5
    assert second.volume_ml == pytest.approx(1.5) and second.flow_mlps == 1.5
    assert second.end == T0 + timedelta(seconds=10)  # still running at the close


def test_injector_phases_sent_one_record_each_are_laid_end_to_end() -> None:
    """The correlator journals an agent SR's phases as one `injection.phase` record each, all at the time the
    SR arrived, with a duration but no times: they follow each other, they do not overlap."""
    sop = "1.2.826.0.1.3680043.8.498.43"

    def phase(index: int, agent: str, duration: float) -> dict[str, Any]:
        data = {"source": "agent_sr", "sop_instance_uid": sop, "index": index, "agent": agent, "duration_s": duration}
        return {"time": _at(100), "event": "injection.phase", "source": "dicom", "data": data}

    contrast, saline = build_timeline([phase(1, "Iohexol", 13.5), phase(2, "Saline", 6.5)]).phases
    assert saline.end == T0 + timedelta(seconds=100) and saline.start == T0 + timedelta(seconds=93.5)
    assert contrast.end == saline.start and contrast.start == T0 + timedelta(seconds=80)


def test_devices_are_listed_by_name(state: State, tmp_path: Path) -> None:
    devices = [
        {"device": "dap1", "driver": "ptw-diamentor", "kind": "dose", "samples": 69, "state": "connected"},
        {"device": "pump1", "driver": "newera-pump", "kind": "injection", "samples": 35},
    ]
    opened = T0
    with AuditJournal(state.journal("p-dev")) as j:
        event(j, "procedure.opened", opened, "correlator", {}, sync=True)
    index_procedure(state.root, summary("p-dev", "open", opened, None, devices=devices))
    out = tmp_path / "r.html"
    assert cmd_report(state.config, "p-dev", "html", out) == 0
    text = out.read_text(encoding="utf-8")
    assert "dap1 (ptw-diamentor, 69 samples, connected), pump1 (newera-pump, 35 samples)" in text
    assert "{&#x27;device&#x27;" not in text and "{'device'" not in text


def test_pdf_text_keeps_long_alert_kinds_and_messages_whole(state: State) -> None:
    from suite_daemon.inspect.report import LINE_WIDTH, _text_lines, collect
    from suite_daemon.inspect.store import StateStore

    message = "injector reported terminated pressure limit during the contrast phase of the second injection"
    with AuditJournal(state.journal("p-alert")) as j:
        event(j, "procedure.opened", T0, "correlator", {}, sync=True)
        event(j, "alert", T0 + timedelta(seconds=5), "daemon",
              {"level": "critical", "kind": "injection_terminated_pressure_limit", "message": message})  # fmt: skip
    index_procedure(state.root, summary("p-alert", "open", T0, None))
    data = collect(StateStore(state.root), "p-alert")
    assert data is not None
    lines = [text for _, text in _text_lines(data)]
    assert all(len(line) <= LINE_WIDTH for line in lines)
    start = next(n for n, line in enumerate(lines) if "injection_terminated_pressure_limit" in line)
    assert " ".join(" ".join(lines[start : start + 3]).split()).count(message) == 1


def test_device_status_changes_close_together_share_one_label() -> None:
    from suite_daemon.inspect.plot import _grouped_devices

    def status(seconds: float, device: str, state: str) -> dict[str, Any]:
        return {"time": _at(seconds), "event": "device.status", "data": {"device": device, "state": state}}

    records = [status(1, "dap1", "connected"), status(1.1, "pump1", "connected"), status(1.2, "pump1", "fault"),
               status(30, "dap1", "connected")]  # fmt: skip
    labels = [label for _, label in _grouped_devices(build_timeline(records))]
    assert labels == ["connected: dap1, pump1", "fault: pump1", "connected: dap1"]
