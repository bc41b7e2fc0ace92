"""`suite-daemon run`: start everything, tell systemd, and stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from suite_daemon import __version__
from suite_daemon.audit.journal_set import JournalSet
from suite_daemon.config import ConfigError, SuiteConfig
from suite_daemon.daemon.component import Component
from suite_daemon.daemon.context import DaemonContext, Submission
from suite_daemon.daemon.sd_notify import Notifier, watchdog_interval_s
from suite_daemon.daemon.supervisor import Supervisor
from suite_daemon.events import Event, utc_now
from suite_daemon.mqtt.outbox import Outbox
from suite_daemon.mqtt.publisher import Publisher
from suite_daemon.pipeline.commands import CommandIntake
from suite_daemon.pipeline.correlation import Correlator
from suite_daemon.pipeline.journals import EventJournals
from suite_daemon.pipeline.loop import Pipeline
from suite_daemon.pipeline.routing import router

log = structlog.get_logger(__name__)

SHUTDOWN_DRAIN_S = 5.0
"""At shutdown, how long the broker gets to take the backlog before we say `offline` and go.
What is left stays in the outbox for the next start."""

ComponentFactory = Callable[[SuiteConfig], list[Component]]
CorrelatorFactory = Callable[[SuiteConfig, DaemonContext], Correlator]


def prepare_state_dir(config: SuiteConfig) -> Path:
    state_dir = config.suite.state_dir
    try:
        for sub in ("", "spool", "journal"):
            (state_dir / sub).mkdir(parents=True, exist_ok=True)
        probe = state_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError([("suite.state_dir", f"cannot write {state_dir}: {exc.strerror or exc}")]) from exc
    return state_dir


def lock_state_dir(state_dir: Path) -> int:
    """An exclusive lock on the state dir while the daemon runs (close the returned descriptor to release it):
    a second daemon on the same state dir would fight the first over its journals, outbox and broker session."""
    fd = os.open(state_dir / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        reason = f"{state_dir} is in use by another suite-daemon (pid {holder})"
        raise ConfigError([("suite.state_dir", reason)]) from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Daemon:
    def __init__(
        self,
        config: SuiteConfig,
        components: ComponentFactory,
        correlator: CorrelatorFactory,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.make_components = components
        self.make_correlator = correlator
        self.notifier = notifier or Notifier()
        self.started_at = utc_now()

    async def run(self, shutdown: asyncio.Event | None = None) -> int:
        state_dir = prepare_state_dir(self.config)
        lock = lock_state_dir(state_dir)
        try:
            return await self._run(state_dir, shutdown)
        finally:
            os.close(lock)

    async def _run(self, state_dir: Path, shutdown: asyncio.Event | None) -> int:
        config = self.config
        loop = asyncio.get_running_loop()
        stop = shutdown or asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        journals = JournalSet(state_dir / "journal")
        event_journals = EventJournals(journals)
        outbox = Outbox(state_dir / "outbox.sqlite3", config.mqtt.outbox_max_events)
        await outbox.open()
        publisher = Publisher(config, outbox, self.started_at)
        inputs: asyncio.Queue[Submission] = asyncio.Queue()
        ctx = DaemonContext(
            config, loop, inputs, publish_live=publisher.publish_live, audit_daemon=event_journals.audit_daemon
        )
        pipeline = Pipeline(
            inputs,
            self.make_correlator(config, ctx),
            outbox,
            router(config.topic_root),
            event_journals,
            publisher.wake,
            config.mqtt.outbox_warn_ratio,
        )
        publisher.on_command = CommandIntake(ctx).receive
        supervisor = Supervisor(ctx)

        def report_status() -> None:
            broker = "broker connected" if publisher.connected.is_set() else "broker disconnected"
            status = f"{supervisor.summary()}; {broker}; outbox {outbox.count}"
            self.notifier.status(status)

        supervisor.on_change = report_status
        publisher.on_state = lambda _state: report_status()
        component_states = [supervisor.add(c) for c in self.make_components(config)]
        log.info(
            "daemon_starting",
            version=__version__,
            suite=config.suite.id,
            state_dir=str(state_dir),
            components=[s.component.name for s in component_states],
            backlog=outbox.count,
        )
        await pipeline.emit([Event("daemon.started", "daemon", {"version": __version__, "pid": os.getpid()})])

        core: list[asyncio.Task[Any]] = [
            asyncio.create_task(publisher.run(), name="publisher"),
            asyncio.create_task(pipeline.run(), name="pipeline"),
        ]
        workers = [asyncio.create_task(supervisor.keep_running(s), name=s.component.name) for s in component_states]
        watchdog = asyncio.create_task(self._watchdog(pipeline, core), name="watchdog")
        started = asyncio.create_task(supervisor.wait_started())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([started, stopped, *core], return_when=asyncio.FIRST_COMPLETED)
            if started.done() and not stop.is_set():
                log.info("daemon_ready", components=supervisor.summary())
                self.notifier.ready(f"ready; {supervisor.summary()}")
                await asyncio.wait([stopped, *core], return_when=asyncio.FIRST_COMPLETED)
            for task in core:
                failure = task.exception() if task.done() else None
                if failure is not None:
                    raise failure
        finally:
            log.info("daemon_stopping")
            self.notifier.stopping()
            await _cancel([started, stopped, *workers])
            pipeline.stop()
            await asyncio.wait([core[1]], timeout=10)
            await pipeline.drain()
            await pipeline.emit([Event("daemon.stopping", "daemon", {"version": __version__})])
            await _cancel([core[1]])
            await publisher.drain_and_close(SHUTDOWN_DRAIN_S)
            await _cancel([core[0], watchdog])
            event_journals.audit_daemon("daemon.stopped", undelivered=outbox.count)
            await outbox.close()
            journals.close()
            log.info("daemon_stopped", undelivered=outbox.count)
            self.notifier.close()
        return 0

    async def _watchdog(self, pipeline: Pipeline, core: list[asyncio.Task[None]]) -> None:
        interval = watchdog_interval_s()
        if interval is None or not self.notifier.enabled:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            alive = all(not t.done() for t in core) and loop.time() - pipeline.last_beat < max(2 * interval, 5.0)
            if alive:
                self.notifier.watchdog()
            else:
                log.error("watchdog_withheld", pipeline_beat_age_s=round(loop.time() - pipeline.last_beat, 1))


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
