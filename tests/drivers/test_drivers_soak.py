"""Soak: every fault of the `faults` scenario in turn, against the runner. Slow: `make soak` only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.simulate import SCENARIOS, run_simulators
from suite_daemon.config import DeviceSection, SuiteConfig
from suite_daemon.config.models import SuiteSection
from tests.broker import free_port
from tests.drivers.device_harness import RunningDevice

FAST: dict[str, float] = {"poll_interval_s": 0.2, "response_timeout_s": 0.4, "retries": 1}


@pytest.mark.slow
async def test_faults_scenario_every_device_recovers(tmp_path: Path) -> None:
    devices: list[dict[str, object]] = [
        {"name": "dap1", "driver": "ptw-diamentor", "port": f"socket://127.0.0.1:{free_port()}", **FAST},
        {"name": "pump1", "driver": "newera-pump", "port": str(tmp_path / "pump1"), **FAST},
        {"name": "pump2", "driver": "alaris-asena", "port": str(tmp_path / "pump2"), **FAST},
    ]
    config = SuiteConfig(
        suite=SuiteSection(id="t", state_dir=tmp_path), devices=[DeviceSection.model_validate(d) for d in devices]
    )
    stop = asyncio.Event()
    served = asyncio.create_task(run_simulators(config, "faults", stop))
    period = SCENARIOS["faults"][0]
    try:
        async with (
            RunningDevice(tmp_path, devices[0]) as dap,
            RunningDevice(tmp_path, devices[1]) as pump,
            RunningDevice(tmp_path, devices[2]) as asena,
        ):
            await asyncio.sleep(period + 5)
            for running in (dap, pump, asena):

                def connected(r: RunningDevice = running) -> bool:
                    return r.states()[-1] == "connected"

                await running.until(connected, "recovered", bound_s=15)
                states = running.states()
                assert "disconnected" in states[1:] and "fault" in states  # unplugged and stalled
                assert running.samples[-1].segment >= 1  # the reset was seen
                counters = running.component.counters
                assert counters["reconnects"] >= 1 and counters["timeouts"] >= 2
                assert counters["garbage_bytes"] >= 40 or counters["bad_frames"] >= 1
    finally:
        stop.set()
        await asyncio.wait_for(served, 10)
