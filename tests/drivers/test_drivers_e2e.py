"""Each driver end to end: simulator on a real pty -> daemon subprocess -> MQTT (telemetry, status, events)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.alaris_asena.simulator import AsenaSimulator
from drivers.newera_pump.simulator import NewEraSimulator
from drivers.ptw_diamentor.simulator import DiamentorSimulator
from drivers.recorder.simulator import PrinterSimulator
from drivers.sim_transport import PtyDevice
from drivers.simulator import Simulator
from tests.broker import Mosquitto
from tests.daemon_harness import DaemonProcess
from tests.mqtt_client import Collector, Received

FAST = "poll_interval_s = 0.2\nresponse_timeout_s = 0.5\nretries = 1\n"


def device_toml(name: str, driver: str, port: Path, options: str = FAST) -> str:
    return (
        f'[[devices]]\nname = "{name}"\ndriver = "{driver}"\nport = "{port}"\n'
        f"reconnect_min_s = 0.1\nreconnect_max_s = 0.5\n{options}\n"
    )


async def started(tmp_path: Path, broker: Mosquitto, suite_id: str, toml: str) -> tuple[DaemonProcess, Collector]:
    daemon = DaemonProcess(tmp_path / "daemon", broker, suite_id, toml, dicom_enabled=False)
    collector = Collector(broker.host, broker.port, f"suite/{suite_id}/#")
    await asyncio.to_thread(daemon.start)
    return daemon, collector


async def wait(collector: Collector, predicate: Callable[[list[Received]], bool], what: str) -> list[Received]:
    try:
        return await asyncio.to_thread(collector.wait_for, predicate, 30.0)
    except TimeoutError as exc:
        raise AssertionError(f"no {what} on MQTT") from exc


def of(messages: list[Received], topic: str) -> list[Any]:
    return [m.json() for m in messages if m.topic == topic]


CASES = [
    (
        "dap1",
        "ptw-diamentor",
        lambda: DiamentorSimulator(beam_on_s=1.0, beam_period_s=2.0),
        "dose.sample",
        {"dap_gym2", "dap_rate_gym2_s", "fluoro_time_s"},
    ),
    (
        "pump1",
        "newera-pump",
        NewEraSimulator,
        "injection.sample",
        {"volume_ml", "withdrawn_ml", "rate_set_mlps", "flow_mlps", "syringe_diameter_mm"},
    ),
    (
        "pump2",
        "alaris-asena",
        AsenaSimulator,
        "injection.sample",
        {"volume_ml", "rate_set_mlps", "flow_mlps", "pressure_kpa"},
    ),
]


@pytest.mark.parametrize(("name", "driver", "make", "event_type", "keys"), CASES, ids=[c[1] for c in CASES])
async def test_driver_to_mqtt(
    tmp_path: Path,
    broker: Mosquitto,
    suite_id: str,
    name: str,
    driver: str,
    make: Callable[[], Simulator],
    event_type: str,
    keys: set[str],
) -> None:
    port = tmp_path / name
    simulator: Simulator = make()
    device = PtyDevice(simulator, port)
    await device.start()
    daemon, collector = await started(tmp_path, broker, suite_id, device_toml(name, driver, port))
    root = f"suite/{suite_id}"
    try:
        telemetry = f"{root}/device/{name}/telemetry"
        messages = await wait(collector, lambda ms: len(of(ms, telemetry)) >= 3, "telemetry")
        status = of(messages, f"{root}/device/{name}/status")
        assert status and status[-1]["state"] == "connected"
        last = of(messages, telemetry)[-1]
        assert last["device"] == name and last["driver"] == driver
        assert set(last["values"]) == keys
        assert last["time"].endswith("Z")
        messages = await wait(
            collector,
            lambda ms: any(m.topic == f"{root}/event" and m.json()["type"] == event_type for m in ms),
            event_type,
        )
        sample = next(m.json() for m in messages if m.topic == f"{root}/event" and m.json()["type"] == event_type)
        assert sample["source"] == f"device:{name}"
        assert set(sample["data"]["values"]) == keys and sample["data"]["segment"] == 0
        events = [m.json() for m in messages if m.topic == f"{root}/event"]
        assert any(e["type"] == "device.status" and e["data"]["state"] == "connected" for e in events)
        # Values and units: the volume / DAP on MQTT is what the simulated device holds (within one poll).
        if driver == "ptw-diamentor":
            assert isinstance(simulator, DiamentorSimulator)
            assert last["values"]["dap_gym2"] == pytest.approx(simulator.dap_gym2, abs=2e-5 * 1.0)
        elif driver == "newera-pump":
            assert isinstance(simulator, NewEraSimulator)
            assert last["values"]["volume_ml"] == pytest.approx(simulator.infused_ml, abs=1.5 * 1.0)
        else:
            assert isinstance(simulator, AsenaSimulator)
            assert last["values"]["volume_ml"] == pytest.approx(simulator.volume_ml, abs=0.1)
    finally:
        await asyncio.to_thread(daemon.terminate)
        collector.close()
        await device.close()


async def test_unplug_replug_and_counter_reset_through_the_daemon(
    tmp_path: Path, broker: Mosquitto, suite_id: str
) -> None:
    port = tmp_path / "dap1"
    simulator = DiamentorSimulator()
    simulator.beam = "on"
    device = PtyDevice(simulator, port)
    await device.start()
    daemon, collector = await started(tmp_path, broker, suite_id, device_toml("dap1", "ptw-diamentor", port))
    root = f"suite/{suite_id}"
    status_topic = f"{root}/device/dap1/status"
    try:
        await wait(collector, lambda ms: len(of(ms, f"{root}/device/dap1/telemetry")) >= 2, "telemetry")
        device.unplug()
        await wait(collector, lambda ms: of(ms, status_topic)[-1]["state"] == "disconnected", "disconnected")
        device.replug()
        await wait(
            collector,
            lambda ms: [s["state"] for s in of(ms, status_topic)][-3:] == ["connected", "disconnected", "connected"],
            "reconnected",
        )
        simulator.apply("reset", 0.0)
        messages = await wait(
            collector,
            lambda ms: any(
                m.topic == f"{root}/event" and m.json()["type"] == "dose.sample" and m.json()["data"]["segment"] == 1
                for m in ms
            ),
            "a sample of segment 1",
        )
        alerts = [m.json() for m in messages if m.topic == f"{root}/event" and m.json()["type"] == "alert"]
        assert any(a["data"]["kind"] == "device_counter_reset" for a in alerts)
        samples = [
            m.json()["data"] for m in messages if m.topic == f"{root}/event" and m.json()["type"] == "dose.sample"
        ]
        last: dict[int, float] = {}
        for s in samples:
            last[s["segment"]] = s["values"]["dap_gym2"]
        total = sum(last.values()) - samples[0]["values"]["dap_gym2"]
        # Everything the beam gave since the first sample, but the dose between the last poll before the reset
        # and the reset, and what came after the last sample seen (one poll each, 0.2 s at 2e-5 Gy·m²/s).
        assert total == pytest.approx(simulator.dap_gym2 + last[0] - samples[0]["values"]["dap_gym2"], abs=2e-5)
    finally:
        await asyncio.to_thread(daemon.terminate)
        collector.close()
        await device.close()


async def test_recorder_frames_go_to_the_journal_not_to_mqtt(tmp_path: Path, broker: Mosquitto, suite_id: str) -> None:
    port = tmp_path / "printer"
    device = PtyDevice(PrinterSimulator(interval_s=0.2), port)
    await device.start()
    daemon, collector = await started(tmp_path, broker, suite_id, device_toml("vacudap", "recorder", port, ""))
    root = f"suite/{suite_id}"
    try:
        await wait(
            collector,
            lambda ms: any(m.topic == f"{root}/device/vacudap/status" and m.json()["state"] == "connected" for m in ms),
            "recorder connected",
        )
        journal = daemon.state_dir / "journal"

        def raw_lines() -> list[str]:
            return [
                line for f in journal.glob("*.jsonl") for line in f.read_text().splitlines() if '"device.raw"' in line
            ]

        for _ in range(150):
            if len(raw_lines()) >= 3:
                break
            await asyncio.sleep(0.1)
        assert len(raw_lines()) >= 3
        assert '"hex"' in raw_lines()[0]
        assert not [m for m in collector.messages if m.topic.endswith("/telemetry")]
        assert not [m for m in collector.messages if b"device.raw" in m.payload]
    finally:
        await asyncio.to_thread(daemon.terminate)
        collector.close()
        await device.close()
