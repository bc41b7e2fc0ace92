"""The handle every component gets: config, state dir, and the doors into the event pipeline."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite_daemon.config import SuiteConfig
from suite_daemon.events import Input

if TYPE_CHECKING:
    from suite_daemon.pipeline.correlation import Outcome

Submission = tuple["Input | Outcome | None", "concurrent.futures.Future[None] | None"]
"""What the pipeline's queue carries: an input, with the future a durable submitter waits on; an outcome
made elsewhere, committed as it is (an operator command's rejection); or `(None, None)`, to stop."""


@dataclass
class DaemonContext:
    config: SuiteConfig
    loop: asyncio.AbstractEventLoop
    inputs: asyncio.Queue[Submission]
    publish_live: Callable[[str, Mapping[str, Any]], None] = field(default=lambda topic, payload: None)
    """QoS 0, not durable, dropped while the broker is away: `publish_live("device/dap1/telemetry", {...})`.
    The topic is relative to `R = <topic_prefix>/<suite.id>`."""
    audit_daemon: Callable[..., None] = field(default=lambda event, **fields: None)
    """Append a record to `journal/daemon.jsonl` (security events: rejected callers, start/stop)."""

    @property
    def state_dir(self) -> Path:
        return self.config.suite.state_dir

    @property
    def index_path(self) -> Path:
        return self.state_dir / "index.sqlite3"

    def submit(self, item: Input) -> None:
        """Hand an input to the correlator. Thread-safe, never blocks, never waits for durability."""
        self.loop.call_soon_threadsafe(self.inputs.put_nowait, (item, None))

    def submit_durable(self, item: Input) -> concurrent.futures.Future[None]:
        """Hand an input over; the future resolves once the events it produced are in the outbox and
        the journal (fsynced). Thread-safe: a pynetdicom handler can wait on `.result(timeout)`."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(self.inputs.put_nowait, (item, done))
        return done

    def submit_durable_many(self, items: list[Input]) -> list[concurrent.futures.Future[None]]:
        """`submit_durable` for a batch, with one wake-up of the event loop."""
        batch: list[Submission] = [(item, concurrent.futures.Future()) for item in items]

        def _put_all() -> None:
            for submission in batch:
                self.inputs.put_nowait(submission)

        self.loop.call_soon_threadsafe(_put_all)
        return [done for _, done in batch if done is not None]

    async def submit_and_wait(self, item: Input) -> None:
        """`submit_durable` from the event loop."""
        await asyncio.wrap_future(self.submit_durable(item))
