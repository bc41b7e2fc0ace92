"""A component that fails is logged, reported and restarted with backoff; the others go on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from suite_daemon.config import SuiteConfig
from suite_daemon.config.models import SuiteSection
from suite_daemon.daemon import supervisor as supervisor_module
from suite_daemon.daemon.context import DaemonContext
from suite_daemon.daemon.supervisor import Supervisor
from suite_daemon.events import Alerted, Input
from suite_daemon.pipeline.correlation import Outcome


class Flaky:
    name = "flaky"
    critical = False

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0

    async def run(self, ctx: DaemonContext, started: Callable[[], None]) -> None:
        self.runs += 1
        started()
        if self.runs <= self.failures:
            raise RuntimeError(f"port vanished ({self.runs})")
        await asyncio.Event().wait()


class Steady:
    name = "steady"
    critical = True

    def __init__(self) -> None:
        self.cancelled = False

    async def run(self, ctx: DaemonContext, started: Callable[[], None]) -> None:
        started()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_failed_component_is_reported_and_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "BACKOFF_MIN_S", 0.01)
    config = SuiteConfig(suite=SuiteSection(id="t", state_dir=tmp_path))
    ctx = DaemonContext(config, asyncio.get_running_loop(), asyncio.Queue())
    changes: list[str] = []
    supervisor = Supervisor(ctx)
    supervisor.on_change = lambda: changes.append(supervisor.summary())
    flaky, steady = Flaky(failures=3), Steady()
    tasks = [asyncio.create_task(supervisor.keep_running(supervisor.add(c))) for c in (flaky, steady)]
    await asyncio.wait_for(supervisor.wait_started(), 5)
    for _ in range(200):
        if flaky.runs > 3:
            break
        await asyncio.sleep(0.01)
    assert flaky.runs == 4
    alerts: list[Input] = []
    while not ctx.inputs.empty():
        item, _ = ctx.inputs.get_nowait()
        assert item is not None and not isinstance(item, Outcome)  # components submit inputs only
        alerts.append(item)
    assert [a.kind for a in alerts if isinstance(a, Alerted)] == ["component_failed"] * 3
    assert isinstance(alerts[0], Alerted)
    assert alerts[0].level == "warning" and "port vanished (1)" in alerts[0].message
    assert supervisor.states["flaky"].failures == 3
    assert supervisor.states["steady"].state == "running"
    assert any("flaky restarting" in c for c in changes)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert steady.cancelled
    assert supervisor.states["steady"].state == "stopped"
