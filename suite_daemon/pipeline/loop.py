"""The pipeline loop: inputs → correlator → numbered events → journal + outbox (one batch, group commit)
→ the publisher is woken. Callers waiting on `submit_durable` are released after the commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any, Protocol, TypeGuard

import structlog

from suite_daemon.daemon.context import Submission
from suite_daemon.events import Alerted, AlertLevel, Event, Input, utc_now
from suite_daemon.mqtt.outbox import Fill, Outbox, Route
from suite_daemon.pipeline.conversions import alert_event
from suite_daemon.pipeline.correlation import Correlator, Outcome

log = structlog.get_logger(__name__)

MAX_BATCH = 1000
TICK_S = 1.0
OVERFLOW_ALERT_EVERY_S = 60.0


class Journals(Protocol):
    def record_events(self, events: list[Event]) -> None: ...

    def record(self, entries: list[tuple[str, str, dict[str, Any]]]) -> None: ...

    def flush(self) -> None: ...


class Pipeline:
    def __init__(
        self,
        inputs: asyncio.Queue[Submission],
        correlator: Correlator,
        outbox: Outbox,
        route: Route,
        journals: Journals,
        wake_publisher: Callable[[], None],
        outbox_warn_ratio: float,
    ) -> None:
        self.inputs = inputs
        self.correlator = correlator
        self.outbox = outbox
        self.route = route
        self.journals = journals
        self.wake_publisher = wake_publisher
        self.warn_at = int(outbox.max_messages * outbox_warn_ratio)
        self._warned_full = False
        self.last_beat = 0.0
        self.events_written = 0
        self._stopping = False
        self._dropped = 0
        self._overflow_alerted_at = float("-inf")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self._commit(self.correlator.startup(utc_now(), self.outbox.load_state()), [])
        next_tick = loop.time() + TICK_S
        while not self._stopping:
            self.last_beat = loop.time()
            batch: list[Submission] = []
            if self.inputs.empty():
                # asyncio.timeout, not wait_for: no task per wait (this loop turns once per batch).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(next_tick):
                        batch.append(await self.inputs.get())
            while len(batch) < MAX_BATCH and not self.inputs.empty():
                batch.append(self.inputs.get_nowait())
            if any(self._needs_prepare(item) for item, _ in batch):
                await asyncio.to_thread(self._prepare, batch)
            outcome = Outcome()
            now = utc_now()
            for item, _ in batch:
                if item is not None:
                    outcome.extend(self._handle(item, now))
            if loop.time() >= next_tick:
                outcome.extend(self.correlator.tick(now))
                next_tick = loop.time() + TICK_S
            await self._commit(outcome, [done for _, done in batch if done is not None])

    def _needs_prepare(self, item: Input | Outcome | None) -> TypeGuard[Input]:
        if item is None or isinstance(item, Outcome):
            return False
        try:
            return self.correlator.needs_prepare(item)
        except Exception:
            return True  # `prepare` reports it

    def _prepare(self, batch: list[Submission]) -> None:
        for item, _ in batch:
            if self._needs_prepare(item):
                try:
                    self.correlator.prepare(item)
                except Exception:
                    log.exception("correlator_prepare_failed")  # `handle` tries again and reports it

    def _handle(self, item: Input | Outcome, now: Any) -> Outcome:
        if isinstance(item, Outcome):
            return item
        try:
            return self.correlator.handle(item, now)
        except Exception as exc:
            # A bug or an input the correlator cannot take must not stop the pipeline: record it.
            log.exception("correlator_failed", input=type(item).__name__)
            alert = Alerted("critical", "correlator_error", f"{type(item).__name__} not correlated: {exc}")
            return Outcome(events=[alert_event(alert)])

    def stop(self) -> None:
        """Finish the batch at hand, then return from `run`."""
        self._stopping = True
        self.inputs.put_nowait((None, None))

    async def emit(self, events: list[Event]) -> None:
        """Commit events made outside the correlator (daemon start and stop)."""
        await self._commit(Outcome(events=events), [])

    async def _commit(self, outcome: Outcome, waiting: list[concurrent.futures.Future[None]]) -> None:
        try:
            if outcome.events or outcome.messages or outcome.journal or outcome.state or outcome.after_commit:
                # Journaled in the outbox's writer thread right after the commit: one hand-over per batch.
                numbered, fill = await self.outbox.append(
                    outcome.events,
                    self.route,
                    outcome.messages,
                    outcome.saved_state(),
                    then=lambda events: self._after_commit(events, outcome),
                )
                self.events_written += len(numbered)
                self.wake_publisher()
                self._watch_fill(fill)
        except Exception as exc:
            # A full disk or a broken database: nothing in this batch was acknowledged to its sender
            # (stores waiting on it answer with a failure status); the daemon keeps running.
            log.exception("pipeline_commit_failed", events=len(outcome.events))
            for done in waiting:
                if not done.done():
                    done.set_exception(exc)
            return
        for done in waiting:
            if not done.done():
                done.set_result(None)

    def _after_commit(self, events: list[Event], outcome: Outcome) -> None:
        # A closed procedure's journal must end with `procedure.closed`: the journal-only records of a procedure
        # this batch closes (e.g. the operator's close command) go before that record, the others after the events.
        last_close = {e.procedure_id: i for i, e in enumerate(events) if e.type == "procedure.closed"}
        before: dict[int, list[tuple[str, str, dict[str, Any]]]] = {}
        for entry in outcome.journal:
            before.setdefault(last_close.get(entry[0], len(events)), []).append(entry)
        start = 0
        for index in sorted(before):
            self.journals.record_events(events[start:index])
            self.journals.record(before[index])
            start = index
        self.journals.record_events(events[start:])
        for work in outcome.after_commit:
            try:
                work()
            except Exception:
                log.exception("after_commit_failed")

    def _watch_fill(self, fill: Fill) -> None:
        # The alerts themselves take room in a full outbox: one overflow alert a minute at most.
        self._dropped += fill.dropped
        now = asyncio.get_running_loop().time()
        if self._dropped and now - self._overflow_alerted_at >= OVERFLOW_ALERT_EVERY_S:
            self._overflow_alerted_at = now
            dropped, self._dropped = self._dropped, 0
            log.error("outbox_overflow", dropped=dropped, bound=self.outbox.max_messages)
            self._alert(
                "critical",
                "outbox_overflow",
                f"outbox full: {dropped} oldest undelivered messages dropped",
                {"dropped": dropped, "bound": self.outbox.max_messages},
            )
        if fill.count >= self.warn_at and not self._warned_full:
            self._warned_full = True
            log.warning("outbox_near_full", count=fill.count, bound=self.outbox.max_messages)
            self._alert(
                "warning",
                "outbox_near_full",
                f"outbox holds {fill.count} of {self.outbox.max_messages}",
                {"count": fill.count, "bound": self.outbox.max_messages},
            )
        elif fill.count < self.warn_at // 2:
            self._warned_full = False

    def _alert(self, level: AlertLevel, kind: str, message: str, data: dict[str, Any]) -> None:
        self.inputs.put_nowait((Alerted(level, kind, message, data), None))

    async def drain(self) -> None:
        """At shutdown: process what is still queued."""
        batch: list[Submission] = []
        while not self.inputs.empty():
            batch.append(self.inputs.get_nowait())
        outcome = Outcome()
        now = utc_now()
        for item, _ in batch:
            if item is not None:
                outcome.extend(self._handle(item, now))
        await self._commit(outcome, [done for _, done in batch if done is not None])
