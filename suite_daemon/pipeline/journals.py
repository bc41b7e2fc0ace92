"""Where numbered events are journaled: their procedure's file, `daemon.jsonl` for daemon-level
security and lifecycle events, `unassigned.jsonl` for device data outside any procedure."""

from __future__ import annotations

from typing import Any

from suite_daemon.audit.journal_set import JournalSet
from suite_daemon.events import Event

DAEMON_LEVEL = frozenset({"association.rejected", "daemon.started", "daemon.stopping", "component.failed"})
SYNC_ON = frozenset({"procedure.opened", "procedure.closed", "daemon.started", "daemon.stopping"})
"""State changes are fsynced at once; everything else within the journal's fsync interval (1 s)."""


def event_fields(event: Event) -> dict[str, Any]:
    """The event's fields in a journal record (`seq` and `time` there belong to the hash chain)."""
    return {"event_seq": event.seq, "procedure_id": event.procedure_id, "source": event.source,
            "data": dict(event.data)}


class EventJournals:
    def __init__(self, journals: JournalSet) -> None:
        self.journals = journals

    def record_events(self, events: list[Event]) -> None:
        for event in events:
            sync = event.type in SYNC_ON
            fields = event_fields(event)
            if event.procedure_id is not None:
                self.journals.append(event.procedure_id, event.type, fields, sync=sync, time=event.time)
                if event.type == "procedure.closed":
                    self.journals.release(event.procedure_id)
            elif event.type in DAEMON_LEVEL or event.type == "alert":
                self.journals.daemon.append(event.type, fields, sync=sync, time=event.time)
            else:
                self.journals.unassigned.append(event.type, fields, sync=sync, time=event.time)

    def record(self, entries: list[tuple[str, str, dict[str, Any]]]) -> None:
        for name, event, fields in entries:
            if name == "daemon":
                self.journals.daemon.append(event, fields)
            elif name == "unassigned":
                self.journals.unassigned.append(event, fields)
            else:
                self.journals.append(name, event, fields)

    def audit_daemon(self, event: str, **fields: Any) -> None:
        self.journals.daemon.append(event, fields, sync=True)

    def flush(self) -> None:
        self.journals.sync()
