"""`suite-daemon simulate`: the device side of every configured device, driven by a scenario.

A device whose port is `socket://HOST:PORT` is served as a TCP server on that address; a filesystem
path gets a pty pair whose slave is symlinked there. Other URLs (`loop://`, `rfc2217://`) are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from drivers.registry import DRIVERS
from drivers.sim_transport import PtyDevice, TcpDevice
from suite_daemon.config.models import DeviceSection, SuiteConfig

log = structlog.get_logger("suite_daemon.simulate")

Script = tuple[float, tuple[tuple[float, str], ...]]
"""(period in seconds, ((offset, action), ...)): the actions repeat every period."""

SCENARIOS: dict[str, Script] = {
    "default": (0.0, ()),
    "unplug": (20.0, ((8.0, "unplug:3"),)),
    "stall": (20.0, ((8.0, "stall"), (14.0, "resume"))),
    "garbage": (6.0, ((3.0, "garbage:40"),)),
    "checksum": (6.0, ((3.0, "corrupt:2"),)),
    "counter-reset": (30.0, ((20.0, "reset"),)),
    "faults": (
        60.0,
        (
            (6.0, "garbage:40"),
            (12.0, "corrupt:2"),
            (18.0, "stall"),
            (24.0, "resume"),
            (32.0, "reset"),
            (42.0, "unplug:3"),
        ),
    ),
}


def endpoint(device: DeviceSection) -> PtyDevice | TcpDevice | None:
    spec = DRIVERS[device.driver]
    simulator = spec.new_simulator(spec.Options.model_validate(device.options))
    if device.port.startswith("socket://"):
        url = urlsplit(device.port)
        return TcpDevice(simulator, url.hostname or "127.0.0.1", url.port or 0)
    if "://" in device.port:
        return None
    return PtyDevice(simulator, Path(device.port))


async def play(device: PtyDevice | TcpDevice, script: Script, stop: asyncio.Event) -> None:
    period, actions = script
    if not actions:
        return
    start = time.monotonic()
    cycle = 0
    while not stop.is_set():
        for offset, action in actions:
            delay = start + cycle * period + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            name, _, arg = action.partition(":")
            if name == "unplug":
                await _unplug(device, float(arg or 3))
            else:
                device.simulator.apply(action, time.monotonic())
        cycle += 1


async def _unplug(device: PtyDevice | TcpDevice, seconds: float) -> None:
    if isinstance(device, PtyDevice):
        device.unplug()
        await asyncio.sleep(seconds)
        device.replug()
    else:
        await device.unplug_async()
        await asyncio.sleep(seconds)
        await device.replug_async()


async def run_simulators(config: SuiteConfig, scenario: str, stop: asyncio.Event) -> None:
    """Serve every enabled device until `stop` is set. Raises ValueError for an unknown scenario."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (known: {', '.join(sorted(SCENARIOS))})")
    devices: list[PtyDevice | TcpDevice] = []
    players: list[asyncio.Task[None]] = []
    try:
        for device in config.devices:
            if not device.enabled:
                continue
            served = endpoint(device)
            if served is None:
                log.warning("simulator_skipped", device=device.name, port=device.port, reason="URL cannot be served")
                continue
            await served.start()
            devices.append(served)
            log.info("simulator_started", device=device.name, driver=device.driver, port=device.port)
            players.append(asyncio.create_task(play(served, SCENARIOS[scenario], stop)))
        await stop.wait()
    finally:
        for task in players:
            task.cancel()
        for task in players:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for served in devices:
            await served.close()
