"""The procedure state machine in virtual time: no sleeps, no broker, the clock injected."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from tests.correlator.machine_harness import (
    Machine,
    command,
    config,
    dose_sample,
    image,
    mpps,
    pump_alarm,
    pump_sample,
)

ID_RE = re.compile(r"^ir-1-\d{8}T\d{6}-[0-9a-f]{6}(-\d+)?$")


@pytest.fixture
def m(tmp_path: Path) -> Machine:
    return Machine(config(tmp_path, {"idle_timeout_s": 600, "preroll_s": 60, "summary_min_interval_s": 1.0}))


def test_idle_at_start(m: Machine) -> None:
    assert m.current()["state"] == "idle"
    assert m.events == []


def test_mpps_opens_and_completes(m: Machine) -> None:
    m.feed(mpps(m.at(0), "9.1", "IN PROGRESS", "1.1"))
    [pid] = m.pids()
    assert ID_RE.match(pid)
    m.feed(image(m.at(5), "1.1"))
    m.feed(mpps(m.at(10), "9.1", "COMPLETED", "1.1", action="set"))
    assert m.types(pid) == ["procedure.opened", "dose.report", "image.received", "dose.report", "procedure.closed"]
    assert [e.seq for e in m.of(pid)] == [1, 2, 3, 4, 5]
    closed = m.of(pid, "procedure.closed")[0]
    assert closed.data["reason"] == "mpps_completed"
    summary = m.summary(pid)
    assert summary["state"] == "closed" and summary["closed_at"] == "2026-11-22T10:00:10.000Z"
    assert summary["images"] == {"count": 1, "series": 1, "bytes": 1000}
    assert summary["study_instance_uid"] == "1.1" and summary["accession_number"] == "A1.1"
    assert summary["dose"]["dap_total_gym2"] is None and summary["dose"]["irradiation_events"] == 0
    assert m.current()["state"] == "idle"


def test_first_object_of_unseen_study_opens(m: Machine) -> None:
    m.feed(image(m.at(0), "1.1"))
    [pid] = m.pids()
    assert m.of(pid, "procedure.opened")[0].data["opened_by"] == "image"
    assert m.current()["procedure_id"] == pid and m.current()["state"] == "open"


def test_new_study_closes_previous_with_reason(m: Machine) -> None:
    m.feed(image(m.at(0), "1.1"))
    m.feed(image(m.at(10), "2.2"))
    first, second = m.pids()
    closed = m.of(first, "procedure.closed")[0]
    assert closed.data["reason"] == "new_study" and closed.data["next_procedure_id"] == second
    assert m.summary(first)["state"] == "closed"
    assert m.current()["procedure_id"] == second


def test_operator_link_keeps_two_studies_in_one_procedure(m: Machine) -> None:
    m.feed(image(m.at(0), "1.1"))
    m.feed(command(m.at(5), "open", "link-1", study_instance_uid="2.2", operator="dr-a"))
    m.feed(image(m.at(10), "2.2"))
    [pid] = m.pids()
    assert m.responses()[-1] == {**m.responses()[-1], "request_id": "link-1", "status": "ok", "procedure_id": pid}
    assert m.summary(pid)["study_instance_uids"] == ["1.1", "2.2"]
    assert m.summary(pid)["images"]["count"] == 2
    assert "operator.command" in [e for _, e, _ in m.journal]
    [record] = [f for name, e, f in m.journal if e == "operator.command"]
    assert record["outcome"] == "linked" and record["operator"] == "dr-a"


def test_operator_open_then_first_object_names_the_study(m: Machine) -> None:
    m.feed(command(m.at(0), "open", "o1", operator="tech"))
    [pid] = m.pids()
    m.feed(image(m.at(3), "3.3"))
    assert m.pids() == [pid]
    assert m.summary(pid)["study_instance_uid"] == "3.3"


def test_operator_open_by_accession_then_objects_attach(m: Machine) -> None:
    m.feed(command(m.at(0), "open", "o1", accession_number="ACC7"))
    m.feed(mpps(m.at(1), "9.1", "IN PROGRESS", "4.4", accession="ACC7"))
    m.feed(image(m.at(2), "4.4", accession="ACC7"))
    [pid] = m.pids()
    m.tick(5)
    assert m.summary(pid)["study_instance_uid"] == "4.4" and m.summary(pid)["images"]["count"] == 1


def test_operator_errors_are_answered_and_audited(m: Machine) -> None:
    m.feed(command(m.at(0), "close", "c0"))
    assert m.responses()[-1]["status"] == "error" and m.responses()[-1]["error"] == "no procedure is open"
    assert [n for n, e, _ in m.journal if e == "operator.command"] == ["daemon"]
    m.feed(command(m.at(1), "open", "o1"))
    m.feed(command(m.at(2), "open", "o2"))
    assert m.responses()[-1]["status"] == "error" and "already open" in m.responses()[-1]["error"]
    m.feed(command(m.at(3), "close", "c1", study_instance_uid="9.9"))
    assert m.responses()[-1]["status"] == "error"
    m.feed(command(m.at(4), "close", "c2", reason="done"))
    [pid] = m.pids()
    assert m.responses()[-1] == {**m.responses()[-1], "status": "ok", "procedure_id": pid}
    assert m.of(pid, "procedure.closed")[0].data["reason"] == "operator"
    assert [n for n, e, _ in m.journal if e == "operator.command"] == ["daemon", pid, pid, pid, pid]


def test_late_image_after_close_is_attached_and_reclosed(m: Machine) -> None:
    m.feed(mpps(m.at(0), "9.1", "IN PROGRESS", "1.1"))
    m.feed(mpps(m.at(10), "9.1", "COMPLETED", "1.1", action="set"))
    [pid] = m.pids()
    m.feed(image(m.at(20), "1.1"))
    late = m.of(pid, "image.received")[0]
    assert late.data["late"] is True
    assert m.summary(pid)["images"]["count"] == 1 and m.summary(pid)["late_arrivals"] == 1
    assert m.summary(pid)["state"] == "closed"
    assert m.current()["state"] == "idle"
    m.tick(21)
    assert m.types(pid)[-1] == "procedure.closed" and m.of(pid)[-1].data["reclosed"] is True
    assert m.pids() == [pid]


def test_duplicates_counted_once(m: Machine) -> None:
    m.feed(image(m.at(0), "1.1", sop="5.1"))
    m.feed(image(m.at(1), "1.1", sop="5.1"))
    m.feed(image(m.at(2), "1.1", sop="5.2", duplicate=True))
    [pid] = m.pids()
    assert [e.data["duplicate"] for e in m.of(pid, "image.received")] == [False, True, True]
    m.tick(5)
    assert m.summary(pid)["images"]["count"] == 1


def test_preroll_attached_and_unassigned_kept(m: Machine) -> None:
    m.feed(dose_sample(m.at(0), 1.0))  # older than the 60 s preroll by the time of the opening
    m.feed(dose_sample(m.at(50), 2.0))
    m.feed(dose_sample(m.at(100), 3.0))
    assert [e.type for e in m.of(None)] == ["dose.sample"] * 3  # the unassigned stream has all three
    m.feed(mpps(m.at(105), "9.1", "IN PROGRESS", "1.1"))
    [pid] = m.pids()
    samples = m.of(pid, "dose.sample")
    assert [e.data["values"]["dap_gym2"] for e in samples] == [2.0, 3.0]
    assert all(e.data["preroll"] for e in samples)
    m.feed(dose_sample(m.at(110), 4.5))
    m.tick(112)
    assert m.summary(pid)["dose"]["dap_total_gym2"] == pytest.approx(2.5)
    assert m.summary(pid)["dose"]["totals_from"]["dap_total_gym2"] == "meter"
    assert m.summary(pid)["devices"][0]["device"] == "dap1"


def test_samples_without_procedure_are_unassigned(m: Machine) -> None:
    m.feed(dose_sample(m.at(0), 1.0))
    m.feed(image(m.at(1), "1.1"))
    m.feed(command(m.at(2), "close", "c"))
    m.feed(dose_sample(m.at(3), 1.5))
    [pid] = m.pids()
    assert [e.type for e in m.of(None)] == ["dose.sample", "dose.sample"]
    assert m.of(pid, "dose.sample")[0].data["preroll"] is True
    assert len(m.of(pid, "dose.sample")) == 1


def test_two_procedures_back_to_back(m: Machine) -> None:
    for n, study in enumerate(("1.1", "2.2")):
        base = n * 100
        m.feed(mpps(m.at(base), f"9.{n}", "IN PROGRESS", study))
        m.feed(image(m.at(base + 1), study))
        m.feed(dose_sample(m.at(base + 2), 1.0 + n))
        m.feed(dose_sample(m.at(base + 3), 1.5 + n))
        m.feed(mpps(m.at(base + 10), f"9.{n}", "COMPLETED", study, action="set"))
    first, second = m.pids()
    assert first != second
    for pid in (first, second):
        assert m.summary(pid)["state"] == "closed"
        assert m.summary(pid)["dose"]["dap_total_gym2"] == pytest.approx(0.5)
        assert [e.seq for e in m.of(pid)] == list(range(1, len(m.of(pid)) + 1))
    assert m.of(first, "procedure.closed")[0].data["reason"] == "mpps_completed"
    assert m.current()["state"] == "idle"


def test_idle_timeout_closes_from_last_activity(m: Machine) -> None:
    m.feed(image(m.at(0), "1.1"))
    [pid] = m.pids()
    m.feed(image(m.at(300), "1.1"))
    m.tick(899)
    assert m.summary(pid)["state"] == "open"
    m.tick(900)
    assert m.summary(pid)["state"] == "closed"
    assert m.of(pid, "procedure.closed")[0].data["reason"] == "idle_timeout"
    assert m.current()["state"] == "idle"


def test_unchanging_meter_is_not_activity(m: Machine) -> None:
    m.feed(image(m.at(0), "1.1"))
    for t in range(0, 700, 50):
        m.feed(dose_sample(m.at(t), 1.0))
        m.tick()
    [pid] = m.pids()
    assert m.summary(pid)["state"] == "closed"


def test_dose_alert_levels_fire_once(tmp_path: Path) -> None:
    m = Machine(config(tmp_path, alerts={"dap_gycm2": [100, 200], "injection_pressure_kpa": [800]}))
    m.feed(image(m.at(0), "1.1"))
    [pid] = m.pids()
    for n, dap in enumerate((0.0, 0.011, 0.012, 0.025, 0.03)):  # Gy·m²: 0 … 300 Gy·cm²
        m.feed(dose_sample(m.at(1 + n), dap))
    alerts = [e.data for e in m.of(pid, "alert")]
    assert [(a["kind"], a["level"], a["data"]["threshold"]) for a in alerts] == [
        ("dap_threshold", "warning", 100),
        ("dap_threshold", "critical", 200),
    ]
    m.feed(pump_sample(m.at(10), 1.0, pressure=900))
    m.feed(pump_sample(m.at(11), 2.0, pressure=950))
    assert [a.data["kind"] for a in m.of(pid, "alert")][-1] == "injection_pressure_threshold"
    assert len(m.of(pid, "alert")) == 3
    m.tick(20)
    assert [a["kind"] for a in m.summary(pid)["alerts"]] == [
        "dap_threshold",
        "dap_threshold",
        "injection_pressure_threshold",
    ]


def test_pump_occlusion_is_one_critical_alert(m: Machine) -> None:
    m.feed(image(m.at(0), "1.1"))
    m.feed(pump_alarm(m.at(1), "occlusion downstream"))
    [pid] = m.pids()
    [alert] = m.of(pid, "alert")
    assert alert.data["level"] == "critical" and alert.data["kind"] == "injection_pump_alarm"


def test_summary_is_rate_limited_and_flushed_by_tick(m: Machine) -> None:
    m.feed(image(m.at(0), "1.1"))
    [pid] = m.pids()
    topic = f"suite/ir-1/procedure/{pid}/summary"
    before = len([1 for t, _, _ in m.messages if t == topic])
    for n in range(5):
        m.feed(image(m.at(0.1 + n * 0.1), "1.1"))
    assert len([1 for t, _, _ in m.messages if t == topic]) == before
    m.tick(2)
    assert len([1 for t, _, _ in m.messages if t == topic]) == before + 1
    assert m.summary(pid)["images"]["count"] == 6
    assert all(retain for t, _, retain in m.messages if t == topic)


def test_clock_offset_is_the_median(m: Machine) -> None:
    for n, offset in enumerate((-30, -31, -29, 500)):
        at = m.at(10 * n)
        acquired = (at + timedelta(seconds=offset)).replace(tzinfo=None).isoformat()
        m.feed(image(at, "1.1", acquired=acquired))
    m.tick(60)
    [pid] = m.pids()
    assert m.summary(pid)["clock_offset_s"] == pytest.approx(-29.5)
    assert m.of(pid, "image.received")[0].data["clock_offset_s"] == pytest.approx(-30)


def test_restart_continues_procedure(tmp_path: Path) -> None:
    m = Machine(config(tmp_path, {"idle_timeout_s": 600}))
    m.feed(mpps(m.at(0), "9.1", "IN PROGRESS", "1.1"))
    m.feed(image(m.at(1), "1.1", sop="5.1"))
    m.feed(dose_sample(m.at(2), 1.0))
    m.feed(dose_sample(m.at(3), 1.25))
    [pid] = m.pids()
    m.at(100)
    m.restart()
    assert m.current()["procedure_id"] == pid and m.current()["state"] == "open"
    m.feed(image(m.at(101), "1.1", sop="5.1"))  # a re-send after the restart is still a duplicate
    m.feed(dose_sample(m.at(102), 1.5))
    m.feed(mpps(m.at(110), "9.1", "COMPLETED", "1.1", action="set"))
    summary = m.summary(pid)
    assert summary["images"]["count"] == 1
    assert summary["dose"]["dap_total_gym2"] == pytest.approx(0.5)
    assert m.pids() == [pid]
    assert [e.seq for e in m.of(pid)] == list(range(1, len(m.of(pid)) + 1))


def test_restart_measures_idle_from_saved_activity(tmp_path: Path) -> None:
    m = Machine(config(tmp_path, {"idle_timeout_s": 600}))
    m.feed(image(m.at(0), "1.1"))
    [pid] = m.pids()
    m.at(700)
    m.restart()
    m.tick()
    assert m.summary(pid)["state"] == "closed"
    assert m.of(pid, "procedure.closed")[0].data["last_activity_at"] == "2026-11-22T10:00:00.000Z"
    assert m.summary(pid)["closed_at"] == "2026-11-22T10:10:00.000Z"  # when the timeout ran out, not noticed


def test_restart_keeps_late_reclose(tmp_path: Path) -> None:
    m = Machine(config(tmp_path))
    m.feed(image(m.at(0), "1.1"))
    m.feed(command(m.at(1), "close", "c"))
    m.feed(image(m.at(2), "1.1"))
    [pid] = m.pids()
    m.restart()
    m.tick(3)
    assert m.types(pid)[-1] == "procedure.closed"


def test_index_rows_written_after_commit(tmp_path: Path) -> None:
    from suite_daemon.correlator.index_store import ProcedureIndex
    from suite_daemon.inspect.store import StateStore

    m = Machine(config(tmp_path), index=ProcedureIndex(tmp_path / "index.sqlite3"))
    m.feed(image(m.at(0), "1.1"))
    m.feed(image(m.at(10), "2.2"))
    rows = StateStore(tmp_path).procedures()
    assert [p.state for p in rows] == ["open", "closed"]
    assert rows[1].summary["images"]["count"] == 1


def test_object_without_identity_goes_to_the_open_procedure_or_daemon_stream(m: Machine) -> None:
    m.feed(image(m.at(0), "", accession=None))
    assert m.pids() == [] and [e.type for e in m.of(None)] == ["image.received"]
    m.feed(image(m.at(1), "1.1"))
    m.feed(image(m.at(2), "", accession=None))
    [pid] = m.pids()
    assert len(m.of(pid, "image.received")) == 2


def test_unreadable_saved_state_is_an_alert_and_the_daemon_continues(tmp_path: Path) -> None:
    m = Machine(config(tmp_path))
    m.feed(image(m.at(0), "1.1"))
    [pid] = m.pids()
    m.state[f"procedure/{pid}"] = "{not json"
    m.restart()
    [alert] = [e for e in m.of(None) if e.type == "alert"]
    assert alert.data["kind"] == "correlator_state_unreadable" and alert.data["level"] == "critical"
    assert m.current()["state"] == "idle"
    m.feed(image(m.at(5), "2.2"))
    assert len(m.pids()) == 2


def test_malformed_mpps_dose_attributes_are_an_alert(m: Machine) -> None:
    m.feed(mpps(m.at(0), "9.1", "IN PROGRESS", "1.1", attributes={"00400300": {"vr": "XX", "Value": "bad"}}))
    [pid] = m.pids()
    kinds = [e.data["kind"] for e in m.of(pid, "alert")]
    assert kinds == ["mpps_dose_unreadable"]
    assert m.types(pid) == ["procedure.opened", "alert", "dose.report"]


def test_late_mpps_completion_after_a_new_study_opened(m: Machine) -> None:
    m.feed(mpps(m.at(0), "9.1", "IN PROGRESS", "1.1"))
    m.feed(image(m.at(10), "2.2"))
    m.feed(mpps(m.at(20), "9.1", "COMPLETED", "1.1", action="set"))
    first, second = m.pids()
    assert m.of(first, "dose.report")[-1].data["late"] is True
    assert m.current()["procedure_id"] == second
    m.tick(21)
    assert m.types(first)[-1] == "procedure.closed" and m.summary(first)["mpps"][0]["status"] == "COMPLETED"


def test_pump_phases_status_and_raw_frames(m: Machine) -> None:
    from suite_daemon.events import DeviceNoticed, DeviceStatusChanged

    m.feed(DeviceNoticed("rec1", "recorder", "raw", {"frame": "abc"}, m.at(0)))
    m.feed(image(m.at(1), "1.1"))
    [pid] = m.pids()
    m.feed(DeviceStatusChanged("pump1", "newera-pump", "connected", time=m.at(2)))
    m.feed(pump_sample(m.at(3), 0.0))
    m.feed(DeviceNoticed("pump1", "newera-pump", "phase", {"state": "infusing"}, m.at(4)))
    m.feed(pump_sample(m.at(5), 4.0))
    m.feed(DeviceNoticed("pump1", "newera-pump", "phase", {"state": "stopped"}, m.at(6)))
    m.feed(DeviceNoticed("rec1", "recorder", "raw", {"frame": "def"}, m.at(7)))
    m.tick(10)
    assert [n for n, e, _ in m.journal if e == "device.raw"] == ["unassigned", pid]
    assert len(m.of(pid, "injection.phase")) == 2
    summary = m.summary(pid)
    assert summary["injection"]["volume_total_ml"] == pytest.approx(4.0) and summary["injection"]["phases"] == 1
    [pump] = summary["devices"]
    assert pump["state"] == "connected" and pump["kind"] == "injection" and pump["samples"] == 2


def test_summary_has_the_contract_shape(m: Machine) -> None:
    m.feed(image(m.at(0), "1.1"))
    [pid] = m.pids()
    summary = m.summary(pid)
    contract = {
        "schema",
        "procedure_id",
        "state",
        "opened_at",
        "closed_at",
        "study_instance_uid",
        "accession_number",
        "modality",
        "images",
        "dose",
        "injection",
        "alerts",
        "devices",
        "time",
    }
    assert contract <= set(summary) and summary["schema"] == 1
    assert set(summary["images"]) == {"count", "series", "bytes"}
    assert {
        "dap_total_gym2",
        "air_kerma_total_gy",
        "fluoro_time_s",
        "ctdivol_max_mgy",
        "dlp_total_mgycm",
        "irradiation_events",
        "sources",
    } <= set(summary["dose"])
    assert {"volume_total_ml", "peak_flow_mlps", "peak_pressure_kpa", "phases"} <= set(summary["injection"])
    assert summary["injection"]["volume_total_ml"] is None and summary["injection"]["phases"] == 0
    assert summary["dose"]["sources"] == [] and summary["alerts"] == [] and summary["devices"] == []
    assert ID_RE.match(summary["procedure_id"]) and summary["time"].endswith("Z")


def test_pump_phases_end_at_the_close_and_a_running_pump_starts_a_phase_at_the_next_opening(m: Machine) -> None:
    """A pump infusing across procedures: the closed procedure's phase ends at its close (not `ended: null`),
    and the next procedure, opened while the pump still delivers, has a phase from its opening, so its phases
    account for the volume it counts."""
    from suite_daemon.events import DeviceNoticed

    m.feed(image(m.at(0), "1.1"))
    first = m.pids()[0]
    m.feed(pump_sample(m.at(1), 10.0))
    m.feed(DeviceNoticed("pump1", "newera-pump", "phase", {"state": "infusing", "previous": "stopped"}, m.at(2)))
    m.feed(pump_sample(m.at(3), 11.0))
    m.feed(image(m.at(4), "2.2"))  # a new study: the first procedure closes, the second opens, the pump runs on
    second = m.pids()[1]
    m.feed(pump_sample(m.at(5), 12.5))
    m.feed(pump_sample(m.at(6), 13.0))
    m.feed(DeviceNoticed("pump1", "newera-pump", "phase", {"state": "stopped", "previous": "infusing"}, m.at(7)))
    m.tick(10)
    [closed_phase] = m.summary(first)["injection"]["sources"][0]["phase_list"]
    assert closed_phase["ended"] == "2026-11-22T10:00:04.000Z"
    injection = m.summary(second)["injection"]
    [phase] = injection["sources"][0]["phase_list"]
    assert phase["started"] == "2026-11-22T10:00:04.000Z" and phase["ended"] == "2026-11-22T10:00:07.000Z"
    assert phase["volume_ml"] == pytest.approx(injection["volume_total_ml"])
    continued = m.of(second, "injection.phase")[0]
    assert continued.data["state"] == "infusing" and continued.data["continued"] is True


def test_a_disconnected_pump_starts_no_phase_at_the_next_opening(m: Machine) -> None:
    from suite_daemon.events import DeviceNoticed, DeviceStatusChanged

    m.feed(DeviceNoticed("pump1", "newera-pump", "phase", {"state": "infusing"}, m.at(0)))
    m.feed(DeviceStatusChanged("pump1", "newera-pump", "disconnected", time=m.at(1)))
    m.feed(image(m.at(2), "1.1"))
    [pid] = m.pids()
    assert m.of(pid, "injection.phase") == []


def test_meta_record_is_saved_when_it_changes_and_until_a_commit_carried_it(tmp_path: Path) -> None:
    """The meta record (open procedure, order, evicted studies) is not rewritten with every event; after a
    restart or a commit that did not go through it is rewritten with the next change, as before."""
    m = Machine(config(tmp_path))
    assert "correlator" in m.feed(image(m.at(0), "1.1")).state  # opened
    assert "correlator" not in m.feed(image(m.at(1), "1.1")).state
    m.restart()
    assert "correlator" in m.feed(image(m.at(2), "1.1")).state  # the first change after a restart
    assert "correlator" not in m.feed(image(m.at(3), "1.1")).state
    lost = m.correlator.handle(image(m.at(4), "2.2"), m.now)  # opens 2.2; its commit fails: not applied
    assert "correlator" in lost.state
    saved = m.feed(image(m.at(5), "2.2")).state["correlator"]
    unsaved = lost.state["correlator"]
    assert isinstance(saved, str) and isinstance(unsaved, str)  # text, not a deferred value
    assert json.loads(saved)["open"] == json.loads(unsaved)["open"]
    assert "correlator" not in m.feed(image(m.at(6), "2.2")).state
