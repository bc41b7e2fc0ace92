"""Sessions against their simulators in virtual time: values, units, timeouts, retries, faults, segments."""

from __future__ import annotations

import itertools

import pytest

from drivers.alaris_asena import codec as asena
from drivers.alaris_asena.session import AsenaOptions, AsenaSession
from drivers.alaris_asena.simulator import AsenaSimulator
from drivers.newera_pump.session import NewEraOptions, NewEraSession
from drivers.newera_pump.simulator import NewEraSimulator
from drivers.ptw_diamentor.session import DiamentorOptions, DiamentorSession
from drivers.ptw_diamentor.simulator import DiamentorSimulator
from drivers.recorder.session import RecorderOptions, RecorderSession
from drivers.recorder.simulator import PrinterSimulator
from drivers.session import PolicyError, PolledSession
from tests.drivers.driver_bench import VirtualBench, total


def diamentor(**options: object) -> VirtualBench[DiamentorSession, DiamentorSimulator]:
    simulator = DiamentorSimulator(beam_on_s=8, beam_period_s=15)
    bench = VirtualBench(DiamentorSession(DiamentorOptions.model_validate(options)), simulator)
    bench.connect()
    return bench


def test_diamentor_values_units_and_times() -> None:
    bench = diamentor()
    bench.run(20.0)
    (health,) = bench.health
    assert health.ok and health.detail == "DIAMENTOR SIM 1.0, serial 000123"
    samples = bench.samples
    assert 38 <= len(samples) <= 41  # 2 Hz
    sim = bench.simulator
    last = samples[-1]
    # The display has two decimals of µGy·m²: 1e-8 Gy·m² resolution.
    assert last.values["dap_gym2"] == pytest.approx(sim.dap_gym2, abs=2e-8 + 2e-5 * 0.5)
    assert last.values["fluoro_time_s"] == pytest.approx(int(sim.beam_time_s), abs=1)
    rising = [s for s in samples if s.values["dap_rate_gym2_s"] > 0]
    holding = [s for s in samples if s.values["dap_rate_gym2_s"] == 0]
    assert rising and holding
    assert all(s.values["dap_rate_gym2_s"] == pytest.approx(2.0e-5) for s in rising)
    # The DAP never goes down without a reset, and holds while the beam is off.
    assert all(b.values["dap_gym2"] >= a.values["dap_gym2"] for a, b in itertools.pairwise(samples))
    assert {s.segment for s in samples} == {0}
    # Sample times are the first byte of the reply, spaced by the poll interval.
    gaps = [b.time - a.time for a, b in itertools.pairwise(samples)]
    assert all(g == pytest.approx(0.5, abs=0.02) for g in gaps[1:]), gaps[:3]


def test_diamentor_rate_per_minute_option() -> None:
    bench = diamentor(rate_per="min")
    bench.run(3.0)
    assert bench.samples[-1].values["dap_rate_gym2_s"] == pytest.approx(2.0e-5 / 60)


@pytest.mark.parametrize(("units", "factor"), [(1, 1e-6), (2, 1e-4), (3, 1e-6), (4, 8.76e-7)])
def test_diamentor_every_display_unit_converts_to_gym2(units: int, factor: float) -> None:
    simulator = DiamentorSimulator(units=units)
    simulator.beam = "on"
    bench = VirtualBench(DiamentorSession(DiamentorOptions()), simulator)
    bench.connect()
    bench.run(10.0)
    sample = bench.samples[-1]
    # Within one poll of dose and the display resolution (two decimals of the display unit).
    assert sample.values["dap_gym2"] == pytest.approx(simulator.dap_gym2, abs=0.5 * 2e-5 + 0.01 * factor)
    assert sample.values["dap_rate_gym2_s"] == pytest.approx(2e-5, abs=0.01 * factor)


def test_diamentor_counter_reset_starts_a_segment_and_totals_stay_right() -> None:
    bench = diamentor()
    bench.simulator.beam = "on"
    bench.run(10.0)
    before = bench.simulator.dap_gym2
    bench.simulator.apply("reset", bench.now)
    bench.run(10.0)
    after = bench.simulator.dap_gym2
    (reset,) = bench.notices("counter_reset")
    assert reset.data["segment"] == 1
    samples = bench.samples
    assert samples[-1].segment == 1
    # Lost at most: the dose between the last poll and the reset, and since the last poll (2 x 0.5 s).
    expected = before + after - samples[0].values["dap_gym2"]
    assert total(samples, "dap_gym2") == pytest.approx(expected, abs=2 * 0.5 * 2e-5 + 1e-7)


def test_diamentor_unit_change_is_noticed_and_values_stay_continuous() -> None:
    bench = diamentor()
    bench.simulator.beam = "on"
    bench.run(5.0)
    bench.simulator.apply("units:2", bench.now)
    bench.run(5.0)
    (change,) = bench.notices("unit_change")
    assert change.data == {"from": "µGy·m²", "to": "Gy·cm²"}
    assert not bench.notices("counter_reset")
    # Within one poll of dose (the sample is up to 0.5 s old) and the display resolution (0.01 Gy·cm²).
    assert bench.samples[-1].values["dap_gym2"] == pytest.approx(bench.simulator.dap_gym2, abs=1e-5 + 1e-6)


def test_stall_times_out_retries_marks_fault_then_recovers() -> None:
    bench = diamentor(response_timeout_s=1.0, retries=2)
    bench.run(2.0)
    bench.simulator.apply("stall", bench.now)
    sent_before = len(bench.simulator.received)
    bench.run(3.05)
    session = bench.session
    assert session.counters.timeouts == 3  # the first attempt and two retries
    # U three times, then the cycle goes on with M.
    assert bench.simulator.received[sent_before:] == ["U", "U", "U", "M"]
    assert [h.ok for h in bench.health] == [True, False]
    assert bench.health[-1].detail == "no valid reply to U after 3 attempts"
    n = len(bench.samples)
    bench.simulator.apply("resume", bench.now)
    bench.run(2.0)
    assert [h.ok for h in bench.health] == [True, False, True]
    assert len(bench.samples) > n


def test_garbage_and_damaged_replies_are_counted_and_survived() -> None:
    bench = diamentor(response_timeout_s=0.3)
    bench.run(2.0)
    bench.simulator.apply("garbage:50", bench.now)
    bench.run(1.0)
    bench.simulator.apply("corrupt:1", bench.now)
    bench.run(2.0)
    counters = bench.session.counters
    assert counters.bad_frames >= 1  # the noise-prefixed reply and the damaged one
    assert not any(not h.ok for h in bench.health)
    assert bench.samples[-1].time > bench.now - 1.0


def test_device_error_code_is_an_alarm_notice_once() -> None:
    bench = diamentor()
    bench.run(1.0)
    bench.simulator.apply("alarm:07", bench.now)
    bench.run(3.0)
    bench.simulator.apply("alarm:", bench.now)
    bench.run(1.0)
    (alarm,) = bench.notices("alarm")
    assert alarm.data["code"] == "E07"
    assert bench.samples[-1].time > bench.now - 1.0


def test_only_allow_listed_read_commands_are_sent() -> None:
    for session, simulator in [
        (DiamentorSession(DiamentorOptions()), DiamentorSimulator()),
        (NewEraSession(NewEraOptions(address=3)), NewEraSimulator(address=3)),
        (AsenaSession(AsenaOptions()), AsenaSimulator()),
    ]:
        bench = VirtualBench(session, simulator)
        bench.connect()
        bench.run(10.0)
        sent = {c.lstrip("0123456789").split("|")[0] for c in simulator.received}
        assert sent <= session.ALLOWED, sent
    assert "RES" not in DiamentorSession.ALLOWED
    assert not {"RUN", "STP", "CLD", "SAF", "PUR"} & NewEraSession.ALLOWED


def test_a_command_outside_the_allow_list_is_refused() -> None:
    session: PolledSession = DiamentorSession(DiamentorOptions())
    session.startup = ("RES",)
    with pytest.raises(PolicyError):
        session.connected(0.0)


def test_newera_pump_volumes_rates_phases() -> None:
    bench = VirtualBench(NewEraSession(NewEraOptions()), NewEraSimulator())
    bench.connect()
    bench.run(30.0)
    samples = bench.samples
    assert samples, bench.outputs
    last = samples[-1]
    assert last.values["volume_ml"] == pytest.approx(bench.simulator.infused_ml, abs=0.05)
    assert last.values["syringe_diameter_mm"] == pytest.approx(26.59)
    flows = {round(s.values["flow_mlps"], 4) for s in samples}
    assert {0.0, 0.5, 1.5} <= flows  # 30 and 90 mL/min, and pauses
    phases = [n.data["state"] for n in bench.notices("phase")]
    assert {"infusing", "pause_phase", "stopped"} <= set(phases)
    assert bench.health[0].detail == "NE1000V3.928"


def test_newera_stall_alarm_and_power_reset() -> None:
    bench = VirtualBench(NewEraSession(NewEraOptions()), NewEraSimulator())
    bench.connect()
    bench.run(5.0)
    bench.simulator.apply("alarm:S", bench.now)
    bench.run(2.0)
    (alarm,) = bench.notices("alarm")
    assert alarm.data == {"code": "S", "message": "motor stalled"}
    bench.simulator.apply("alarm:", bench.now)
    bench.run(2.0)
    before = bench.samples[-1].values["volume_ml"]
    bench.simulator.apply("reset", bench.now)
    bench.run(10.0)
    assert [n.data["code"] for n in bench.notices("alarm")] == ["S", "R"]
    (reset,) = bench.notices("counter_reset")
    assert reset.data["previous"]["volume_ml"] == pytest.approx(before, abs=0.01)
    samples = bench.samples
    assert samples[-1].segment == 1
    assert total(samples, "volume_ml") == pytest.approx(
        before + bench.simulator.infused_ml - samples[0].values["volume_ml"], abs=0.05
    )


def test_asena_values_pressure_mode_and_checksum_errors() -> None:
    bench = VirtualBench(AsenaSession(AsenaOptions(poll_interval_s=0.5)), AsenaSimulator())
    bench.connect()
    bench.run(20.0)
    samples = bench.samples
    last = samples[-1]
    assert last.values["volume_ml"] == pytest.approx(bench.simulator.volume_ml, abs=0.01)
    assert {round(s.values["pressure_kpa"], 2) for s in samples} >= {round(40 * asena.MMHG_TO_KPA, 2)}
    assert max(s.values["flow_mlps"] for s in samples) == pytest.approx(300 / 3600)
    assert bench.health[0].detail == "Asena serial 1234-56789"
    bench.simulator.apply("corrupt:2", bench.now)
    bench.run(3.0)
    assert bench.session.counters.checksum_errors == 2
    bench.simulator.apply("alarm:OCCLUSION", bench.now)
    bench.run(2.0)
    (alarm,) = bench.notices("alarm")
    assert alarm.data == {"code": "OCCLUSION"}
    assert bench.samples[-1].quality == "alarm"
    assert bench.samples[-1].values["pressure_kpa"] == pytest.approx(600 * asena.MMHG_TO_KPA, abs=0.1)


def test_recorder_hands_on_every_frame_raw() -> None:
    bench = VirtualBench(RecorderSession(RecorderOptions()), PrinterSimulator(interval_s=1.0))
    bench.connect()
    bench.run(5.0)
    raws = bench.notices("raw")
    assert len(raws) == 5
    first = bytes.fromhex(raws[0].data["hex"])
    assert first.startswith(b"00001 DAP") and first.endswith(b"\r\n")
    assert raws[0].data["length"] == len(first)
    assert [h.ok for h in bench.health] == [True]
    assert not bench.session.take_outgoing()
