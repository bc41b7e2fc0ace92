"""The seam between the pipeline and the correlator: what a correlator returns for each input."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from suite_daemon.events import Event, Input
from suite_daemon.mqtt.outbox import Message


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    """Numbered, journaled and published."""
    messages: list[Message] = field(default_factory=list)
    """Other messages committed with the events, in order: retained state (summaries,
    `procedure/current`) and command responses."""
    journal: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """Journal-only records: (journal name, record event, fields), e.g. raw device frames."""

    def extend(self, other: Outcome) -> None:
        self.events.extend(other.events)
        self.messages.extend(other.messages)
        self.journal.extend(other.journal)


class Correlator(Protocol):
    def handle(self, item: Input, now: datetime) -> Outcome: ...

    def tick(self, now: datetime) -> Outcome:
        """Called about once a second: idle timeouts, rate-limited summaries."""
        ...

    def startup(self, now: datetime) -> Outcome:
        """State restored from disk; what to publish at start (retained current procedure, ...)."""
        ...
