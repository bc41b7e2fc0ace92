"""`suite-daemon simulate`: the example suite's devices and its modality, played against a running daemon.

Devices are served where the config says they are (`socket://` ports as TCP servers, paths as
pseudo-terminal symlinks); the modality sends MPPS, images, dose and injector reports over DICOM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from drivers.simulate import SCENARIOS as DEVICE_SCENARIOS
from drivers.simulate import run_simulators
from suite_daemon.config import SuiteConfig
from suite_daemon.simulate.modality import SCENARIOS as MODALITY_SCENARIOS
from suite_daemon.simulate.modality import run_modality

log = structlog.get_logger(__name__)


def scenarios() -> list[str]:
    return sorted(set(DEVICE_SCENARIOS) | set(MODALITY_SCENARIOS))


async def simulate(
    config: SuiteConfig, scenario: str, *, modality: bool = True, duration_s: float | None = None, repeat: bool = True
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    device_scenario = scenario if scenario in DEVICE_SCENARIOS else "default"
    tasks = [asyncio.create_task(run_simulators(config, device_scenario, stop), name="devices")]
    if modality and config.dicom.enabled:
        tasks.append(asyncio.create_task(_modality(config, scenario, stop, repeat), name="modality"))
    log.info(
        "simulation_started",
        scenario=scenario,
        devices=[d.name for d in config.devices if d.enabled],
        modality=modality,
    )
    await stop.wait()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    log.info("simulation_stopped")
    return 0


async def _modality(config: SuiteConfig, scenario: str, stop: asyncio.Event, repeat: bool) -> None:
    """One procedure after another (a pause between them), until stopped."""
    while not stop.is_set():
        pause = 20.0
        try:
            await run_modality(config, scenario, stop)
        except Exception as exc:  # the daemon may not be up yet: try again shortly
            log.warning("simulated_modality_failed", error=str(exc))
            pause = 2.0
        if not repeat:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
