"""Each driver against its simulator over a real pseudo-terminal (or TCP), through the generic runner.

Faults are real: unplug closes the pty master, replug makes a new pair behind the same symlink.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

import pytest

from drivers.alaris_asena.simulator import AsenaSimulator
from drivers.link import PortSettings, ThreadSerialLink, open_link
from drivers.newera_pump.simulator import NewEraSimulator
from drivers.ptw_diamentor.simulator import DiamentorSimulator
from drivers.recorder.simulator import PrinterSimulator
from drivers.sim_transport import PtyDevice, TcpDevice
from suite_daemon.events import DeviceSampled
from tests.broker import free_port
from tests.drivers.device_harness import RunningDevice

FAST: dict[str, float] = {"poll_interval_s": 0.1, "response_timeout_s": 0.3, "retries": 1}


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def segment_total(samples: list[DeviceSampled], key: str) -> float:
    last: dict[int, float] = {}
    for s in samples:
        last[s.segment] = s.values[key]
    return sum(last.values()) - samples[0].values[key]


async def test_diamentor_over_pty_values_units_times(tmp_path: Path) -> None:
    port = tmp_path / "dap1"
    simulator = DiamentorSimulator(beam_on_s=0.6, beam_period_s=1.0)
    device = PtyDevice(simulator, port)
    await device.start()
    fds = open_fds()
    try:
        async with RunningDevice(
            tmp_path, {"name": "dap1", "driver": "ptw-diamentor", "port": str(port), **FAST}
        ) as running:
            await running.until(lambda: len(running.samples) >= 15, "15 samples")
            status = running.statuses[0]
            assert (status.state, status.detail) == ("connected", "DIAMENTOR SIM 1.0, serial 000123")
            samples = running.samples
            sample = samples[-1]
            assert (sample.device, sample.driver, sample.kind, sample.segment) == ("dap1", "ptw-diamentor", "dose", 0)
            assert set(sample.values) == {"dap_gym2", "dap_rate_gym2_s", "fluoro_time_s"}
            assert sample.values["dap_gym2"] == pytest.approx(simulator.dap_gym2, abs=2e-5 * 0.5 + 1e-8)
            assert sample.host_time.tzinfo is not None
            assert all(b.host_time >= a.host_time for a, b in itertools.pairwise(samples))
            topic, payload = running.live[-1]
            assert topic == "device/dap1/telemetry"
            assert set(payload) == {"schema", "device", "driver", "time", "values"}
            assert payload["time"].endswith("Z") and payload["values"] == dict(sample.values)
        assert running.states()[-1] == "disconnected"
        await asyncio.sleep(0.1)
        assert open_fds() <= fds  # the port is closed on stop
    finally:
        await device.close()


async def test_unplug_and_replug_within_the_backoff(tmp_path: Path) -> None:
    port = tmp_path / "dap1"
    simulator = DiamentorSimulator()
    simulator.beam = "on"
    device = PtyDevice(simulator, port)
    await device.start()
    try:
        async with RunningDevice(
            tmp_path, {"name": "dap1", "driver": "ptw-diamentor", "port": str(port), **FAST}
        ) as running:
            await running.until(lambda: len(running.samples) >= 3, "first samples")
            device.unplug()
            await running.until(lambda: running.states()[-1] == "disconnected", "disconnected")
            assert running.statuses[-1].detail.startswith("port lost")
            n = len(running.samples)
            device.replug()
            await running.until(
                lambda: running.states()[-1] == "connected" and len(running.samples) > n + 3,
                "reconnected with new samples",
            )
            assert running.component.counters["reconnects"] >= 1
            assert running.states()[:3] == ["connected", "disconnected", "connected"]
            assert {s.segment for s in running.samples} == {0}  # the counter went on: one segment
    finally:
        await device.close()


async def test_absent_device_does_not_delay_start_and_is_reported_once(tmp_path: Path) -> None:
    port = tmp_path / "absent"
    async with RunningDevice(
        tmp_path, {"name": "pump1", "driver": "newera-pump", "port": str(port), **FAST}
    ) as running:
        await running.until(lambda: bool(running.statuses), "a status")
        await asyncio.sleep(0.5)  # several failed opens
        (status,) = running.statuses
        assert status.state == "disconnected" and "cannot open" in status.detail
        device = PtyDevice(NewEraSimulator(), port)
        await device.start()
        try:
            await running.until(lambda: len(running.samples) >= 2, "samples once plugged in")
            assert running.states() == ["disconnected", "connected"]
        finally:
            await device.close()


async def test_stalled_device_is_a_fault_then_recovers(tmp_path: Path) -> None:
    port = tmp_path / "pump"
    simulator = AsenaSimulator()
    device = PtyDevice(simulator, port)
    await device.start()
    try:
        async with RunningDevice(
            tmp_path, {"name": "pump1", "driver": "alaris-asena", "port": str(port), **FAST}
        ) as running:
            await running.until(lambda: len(running.samples) >= 2, "samples")
            simulator.apply("stall", 0)
            await running.until(lambda: running.states()[-1] == "fault", "fault")
            fault = running.statuses[-1]
            assert fault.detail.startswith("no valid reply to") and fault.counters["timeouts"] >= 2
            simulator.apply("resume", 0)
            await running.until(lambda: running.states()[-1] == "connected", "recovered")
            assert running.states() == ["connected", "fault", "connected"]
    finally:
        await device.close()


async def test_garbage_and_bad_checksums_are_counted_and_the_device_stays_connected(tmp_path: Path) -> None:
    port = tmp_path / "pump"
    simulator = AsenaSimulator()
    device = PtyDevice(simulator, port)
    await device.start()
    try:
        async with RunningDevice(
            tmp_path, {"name": "pump1", "driver": "alaris-asena", "port": str(port), **FAST, "retries": 3}
        ) as running:
            await running.until(lambda: len(running.samples) >= 2, "samples")
            simulator.apply("garbage:64", 0)
            simulator.apply("corrupt:3", 0)
            counters = running.component.session.counters
            await running.until(lambda: counters.checksum_errors >= 3 and counters.garbage_bytes >= 64, "counted")
            n = len(running.samples)
            await running.until(lambda: len(running.samples) >= n + 3, "samples after the noise")
            assert running.states() == ["connected"]
            assert running.samples[-1].values["volume_ml"] == pytest.approx(simulator.volume_ml, abs=0.01)
    finally:
        await device.close()


async def test_counter_reset_over_pty_keeps_the_total_right(tmp_path: Path) -> None:
    port = tmp_path / "pump"
    simulator = NewEraSimulator()
    device = PtyDevice(simulator, port)
    await device.start()
    try:
        async with RunningDevice(
            tmp_path, {"name": "pump1", "driver": "newera-pump", "port": str(port), **FAST}
        ) as running:
            await running.until(
                lambda: len(running.samples) >= 5 and running.samples[-1].values["volume_ml"] > 0.2, "some volume"
            )
            before = running.samples[-1].values["volume_ml"]
            simulator.apply("reset", 0)
            await running.until(
                lambda: running.samples[-1].segment == 1 and running.samples[-1].values["volume_ml"] > 0.2,
                "a new segment with volume",
            )
            (reset,) = running.notices("counter_reset")
            assert reset.data["segment"] == 1
            assert [n.data["code"] for n in running.notices("alarm")] == ["R"]
            samples = running.samples
            expected = before + samples[-1].values["volume_ml"] - samples[0].values["volume_ml"]
            # Only the volume pumped between the last poll and the reset can be missing (one 0.1 s poll).
            assert segment_total(samples, "volume_ml") == pytest.approx(expected, abs=1.5 / 60 * 0.2 + 0.01)
            assert running.notices("phase")
    finally:
        await device.close()


async def test_recorder_over_pty_journals_raw_frames_with_times(tmp_path: Path) -> None:
    port = tmp_path / "printer"
    device = PtyDevice(PrinterSimulator(interval_s=0.1), port)
    await device.start()
    try:
        async with RunningDevice(tmp_path, {"name": "vacudap", "driver": "recorder", "port": str(port)}) as running:
            await running.until(lambda: len(running.notices("raw")) >= 3, "raw frames")
            raw = running.notices("raw")[0]
            frame = bytes.fromhex(raw.data["hex"])
            assert frame.endswith(b"\r\n") and b"DAP" in frame and raw.data["length"] == len(frame)
            assert raw.data["first_byte_time"].endswith("Z")
            assert not running.samples and not running.live  # nothing decoded, nothing on telemetry
            assert running.states() == ["connected"]
    finally:
        await device.close()


async def test_socket_url_like_a_terminal_server(tmp_path: Path) -> None:
    tcp_port = free_port()
    simulator = DiamentorSimulator()
    device = TcpDevice(simulator, "127.0.0.1", tcp_port)
    await device.start()
    try:
        url = f"socket://127.0.0.1:{tcp_port}"
        async with RunningDevice(tmp_path, {"name": "dap1", "driver": "ptw-diamentor", "port": url, **FAST}) as running:
            await running.until(lambda: len(running.samples) >= 3, "samples over TCP")
            await device.unplug_async()
            await running.until(lambda: running.states()[-1] == "disconnected", "disconnected")
            await device.replug_async()
            await running.until(lambda: running.states()[-1] == "connected", "reconnected")
    finally:
        await device.close()


async def test_thread_link_for_loop_urls() -> None:
    link = await open_link("loop://", PortSettings(9600, 8, "N", 1))
    assert isinstance(link, ThreadSerialLink)
    try:
        link.write(b"M\r\n")
        received = b""
        while received != b"M\r\n":
            _, chunk = await asyncio.wait_for(link.read(), 5)
            received += chunk
    finally:
        link.close()


async def test_one_device_failing_does_not_disturb_another(tmp_path: Path) -> None:
    dap_port, pump_port = tmp_path / "dap1", tmp_path / "pump1"
    dap = PtyDevice(DiamentorSimulator(), dap_port)
    pump = PtyDevice(NewEraSimulator(), pump_port)
    await dap.start()
    await pump.start()
    try:
        async with (
            RunningDevice(
                tmp_path, {"name": "dap1", "driver": "ptw-diamentor", "port": str(dap_port), **FAST}
            ) as first,
            RunningDevice(
                tmp_path, {"name": "pump1", "driver": "newera-pump", "port": str(pump_port), **FAST}
            ) as second,
        ):
            await second.until(lambda: len(second.samples) >= 2 and len(first.samples) >= 2, "both sampling")
            dap.unplug()
            await first.until(lambda: first.states()[-1] == "disconnected", "dap1 gone")
            n = len(second.samples)
            await second.until(lambda: len(second.samples) >= n + 5, "pump1 still sampling")
            assert second.states() == ["connected"]
    finally:
        await dap.close()
        await pump.close()
