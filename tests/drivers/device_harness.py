"""A device component on the test's event loop with a real DaemonContext, its inputs read back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from drivers.backoff import Backoff
from drivers.runner import DeviceComponent
from suite_daemon.config import DeviceSection, SuiteConfig
from suite_daemon.config.models import SuiteSection
from suite_daemon.daemon.context import DaemonContext
from suite_daemon.events import DeviceNoticed, DeviceSampled, DeviceStatusChanged, Input
from suite_daemon.pipeline.correlation import Outcome


class RunningDevice:
    def __init__(self, tmp_path: Path, device: Mapping[str, object]) -> None:
        device = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.2, **device}
        self.config = SuiteConfig(
            suite=SuiteSection(id="t", state_dir=tmp_path), devices=[DeviceSection.model_validate(device)]
        )
        self.ctx = DaemonContext(self.config, asyncio.get_running_loop(), asyncio.Queue(), publish_live=self._live)
        self.component = DeviceComponent(self.config.devices[0], backoff=Backoff(0.05, 0.2))
        self.inputs: list[Input] = []
        self.live: list[tuple[str, Mapping[str, Any]]] = []
        self.started = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _live(self, topic: str, payload: Mapping[str, Any]) -> None:
        self.live.append((topic, payload))

    async def __aenter__(self) -> RunningDevice:
        self.task = asyncio.create_task(self.component.run(self.ctx, self.started.set))
        await asyncio.wait_for(self.started.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.drain()

    def drain(self) -> None:
        while not self.ctx.inputs.empty():
            item, _ = self.ctx.inputs.get_nowait()
            assert item is not None and not isinstance(item, Outcome)  # components submit inputs only
            self.inputs.append(item)

    @property
    def samples(self) -> list[DeviceSampled]:
        self.drain()
        return [i for i in self.inputs if isinstance(i, DeviceSampled)]

    @property
    def statuses(self) -> list[DeviceStatusChanged]:
        self.drain()
        return [i for i in self.inputs if isinstance(i, DeviceStatusChanged)]

    def notices(self, kind: str) -> list[DeviceNoticed]:
        self.drain()
        return [i for i in self.inputs if isinstance(i, DeviceNoticed) and i.kind == kind]

    def states(self) -> list[str]:
        return [s.state for s in self.statuses]

    async def until(self, predicate: Callable[[], bool], what: str, bound_s: float = 20.0) -> None:
        """Wait (bounded, not a timing assertion) until `predicate()` holds."""
        deadline = time.monotonic() + bound_s
        while not predicate():
            if self.task is not None and self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; states {self.states()}")
            await asyncio.sleep(0.02)
