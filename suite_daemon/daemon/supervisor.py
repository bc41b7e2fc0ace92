"""Runs components and restarts the ones that fail, with capped exponential backoff.

A failing component is logged, reported (a `component_failed` alert reaches MQTT and the journal)
and restarted; it never takes the daemon down.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from suite_daemon.daemon.component import Component
from suite_daemon.daemon.context import DaemonContext
from suite_daemon.events import Alerted

log = structlog.get_logger(__name__)

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0
HEALTHY_AFTER_S = 60.0
"""A component that ran this long before failing starts its backoff from the minimum again."""


@dataclass
class ComponentState:
    component: Component
    state: str = "starting"
    started: asyncio.Event = field(default_factory=asyncio.Event)
    failures: int = 0


class Supervisor:
    def __init__(self, ctx: DaemonContext, on_change: Callable[[], None] = lambda: None) -> None:
        self.ctx = ctx
        self.on_change = on_change
        self.states: dict[str, ComponentState] = {}

    def add(self, component: Component) -> ComponentState:
        state = ComponentState(component)
        self.states[component.name] = state
        return state

    async def wait_started(self, critical_only: bool = True) -> None:
        await asyncio.gather(
            *(s.started.wait() for s in self.states.values() if s.component.critical or not critical_only)
        )

    def summary(self) -> str:
        return ", ".join(f"{name} {s.state}" for name, s in self.states.items())

    def critical_running(self) -> bool:
        return all(s.state == "running" for s in self.states.values() if s.component.critical)

    def _set(self, state: ComponentState, value: str) -> None:
        if state.state != value:
            state.state = value
            self.on_change()

    async def keep_running(self, state: ComponentState) -> None:
        component = state.component
        loop = asyncio.get_running_loop()
        delay = BACKOFF_MIN_S
        while True:
            began = loop.time()

            def started() -> None:
                state.started.set()
                self._set(state, "running")
                log.info("component_started", component=component.name)

            self._set(state, "starting")
            try:
                await component.run(self.ctx, started)
                error = "stopped by itself"
            except asyncio.CancelledError:
                self._set(state, "stopped")
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("component_failed", component=component.name)
            state.failures += 1
            if loop.time() - began > HEALTHY_AFTER_S:
                delay = BACKOFF_MIN_S
            retry = delay * random.uniform(0.8, 1.2)
            self._set(state, "restarting")
            log.error(
                "component_restarting",
                component=component.name,
                error=error,
                retry_s=round(retry, 1),
                failures=state.failures,
            )
            self.ctx.submit(
                Alerted(
                    "critical" if component.critical else "warning",
                    "component_failed",
                    f"{component.name} failed ({error}); restarting in {retry:.1f} s",
                    {"component": component.name, "error": error, "failures": state.failures},
                )
            )
            await asyncio.sleep(retry)
            delay = min(delay * 2, BACKOFF_MAX_S)
