"""`run_simulators`: every configured device served on its pty symlink or TCP address, scenarios played."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from drivers.ptw_diamentor.simulator import DiamentorSimulator
from drivers.sim_transport import PtyDevice
from drivers.simulate import SCENARIOS, play, run_simulators
from suite_daemon.config import DeviceSection, SuiteConfig
from suite_daemon.config.models import SuiteSection
from tests.broker import free_port
from tests.drivers.device_harness import RunningDevice

FAST: dict[str, float] = {"poll_interval_s": 0.1, "response_timeout_s": 0.3, "retries": 1}


async def test_simulators_serve_every_configured_device(tmp_path: Path) -> None:
    pty_path = tmp_path / "pump1"
    pty_path.symlink_to("/dev/pts/does-not-exist")  # a stale link from an earlier run is replaced
    tcp = f"socket://127.0.0.1:{free_port()}"
    devices: list[dict[str, object]] = [
        {"name": "dap1", "driver": "ptw-diamentor", "port": tcp, **FAST},
        {"name": "pump1", "driver": "newera-pump", "port": str(pty_path), **FAST},
        {"name": "skipped", "driver": "recorder", "port": "loop://"},
    ]
    config = SuiteConfig(
        suite=SuiteSection(id="t", state_dir=tmp_path), devices=[DeviceSection.model_validate(d) for d in devices]
    )
    stop = asyncio.Event()
    served = asyncio.create_task(run_simulators(config, "default", stop))
    try:
        for device in devices[:2]:
            async with RunningDevice(tmp_path, device) as running:
                await running.until(lambda: len(running.samples) >= 2, f"samples from {device['name']}")
                assert running.states()[-1] == "connected"  # possibly after one failed open while starting
    finally:
        stop.set()
        await asyncio.wait_for(served, 10)
    assert not pty_path.exists() and not pty_path.is_symlink()


async def test_unknown_scenario_is_refused(tmp_path: Path) -> None:
    config = SuiteConfig(suite=SuiteSection(id="t", state_dir=tmp_path), devices=[])
    with pytest.raises(ValueError, match="unknown scenario"):
        await run_simulators(config, "nope", asyncio.Event())
    assert {"default", "unplug", "stall", "garbage", "checksum", "counter-reset", "faults"} <= set(SCENARIOS)


async def test_unplug_scenario_disconnects_and_reconnects(tmp_path: Path) -> None:
    port = tmp_path / "dap1"
    device = PtyDevice(DiamentorSimulator(), port)
    await device.start()
    stop = asyncio.Event()
    player = asyncio.create_task(play(device, (1.0, ((0.3, "unplug:0.3"),)), stop))
    try:
        async with RunningDevice(
            tmp_path, {"name": "dap1", "driver": "ptw-diamentor", "port": str(port), **FAST}
        ) as running:
            await running.until(
                lambda: running.states()[:3] == ["connected", "disconnected", "connected"], "unplugged and back"
            )
    finally:
        stop.set()
        player.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await player
        await device.close()
