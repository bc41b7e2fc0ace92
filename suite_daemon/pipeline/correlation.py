"""The seam between the pipeline and the correlator: what a correlator returns for each input."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from suite_daemon.events import Event, Input
from suite_daemon.mqtt.outbox import Message

StateValue = str | None | Callable[[], str]


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    """Numbered, journaled and published."""
    messages: list[Message] = field(default_factory=list)
    """Other messages committed with the events, in order: retained state (summaries,
    `procedure/current`) and command responses."""
    journal: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """Journal-only records: (journal name, record event, fields), e.g. raw device frames."""
    state: dict[str, StateValue] = field(default_factory=dict)
    """Correlator state to keep across restarts (key → JSON text; None deletes), committed in the same
    transaction as the events, so after SIGKILL state and numbering agree. Handed back to `startup`.
    A value may be a function giving the text: called once, when the batch is committed (`saved_state`),
    so a record that every input of a batch changes is serialised once per batch, not once per input."""
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    """Blocking work to run (in a worker thread) once the batch is durable, e.g. index updates."""

    def saved_state(self) -> dict[str, str | None]:
        """`state` with every deferred value made text (in the thread that owns the correlator)."""
        return {key: value() if callable(value) else value for key, value in self.state.items()}

    def extend(self, other: Outcome) -> None:
        self.events.extend(other.events)
        self.messages.extend(other.messages)
        self.journal.extend(other.journal)
        self.state.update(other.state)
        self.after_commit.extend(other.after_commit)


class Correlator(Protocol):
    def needs_prepare(self, item: Input) -> bool:
        """Whether `prepare` has work for this input (the pipeline skips the worker thread otherwise)."""
        ...

    def prepare(self, item: Input) -> None:
        """Blocking work for an input (parsing a received SR file), run in a worker thread before
        `handle`, so the pipeline's loop never waits on it. Must be thread-safe."""
        ...

    def handle(self, item: Input, now: datetime) -> Outcome: ...

    def tick(self, now: datetime) -> Outcome:
        """Called about once a second: idle timeouts, rate-limited summaries."""
        ...

    def startup(self, now: datetime, state: Mapping[str, str]) -> Outcome:
        """Restore from the state kept by earlier `Outcome.state`; say what to publish at start."""
        ...
