"""Where numbered events are journaled: their procedure's file, `daemon.jsonl` for daemon-level
security and lifecycle events, `unassigned.jsonl` for device data outside any procedure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from suite_daemon.audit.journal_set import JournalSet
from suite_daemon.events import Event

log = structlog.get_logger(__name__)

DAEMON_LEVEL = frozenset({"association.rejected", "daemon.started", "daemon.stopping"})
SYNC_ON = frozenset({"procedure.opened", "procedure.closed", "daemon.started", "daemon.stopping"})
"""State changes are fsynced at once; everything else within the journal's fsync interval (1 s)."""


def event_fields(event: Event) -> dict[str, Any]:
    """The event's fields in a journal record (`seq` and `time` there belong to the hash chain)."""
    return {
        "event_seq": event.seq,
        "procedure_id": event.procedure_id,
        "source": event.source,
        "data": dict(event.data),
    }


class EventJournals:
    def __init__(self, journals: JournalSet) -> None:
        self.journals = journals

    def record_events(self, events: list[Event]) -> None:
        for event in events:
            sync = event.type in SYNC_ON
            if event.procedure_id is not None:
                name = event.procedure_id
            elif event.type in DAEMON_LEVEL or event.type == "alert":
                name = "daemon"
            else:
                name = "unassigned"
            self._append(name, event.type, event_fields(event), sync=sync, time=event.time)
            if event.type == "procedure.closed" and event.procedure_id is not None:
                self.journals.release(event.procedure_id)

    def record(self, entries: list[tuple[str, str, dict[str, Any]]]) -> None:
        for name, event, fields in entries:
            self._append(name, event, fields)

    def _append(
        self, name: str, event: str, fields: dict[str, Any], *, sync: bool = False, time: datetime | None = None
    ) -> None:
        try:
            if name == "daemon":
                self.journals.daemon.append(event, fields, sync=sync, time=time)
            elif name == "unassigned":
                self.journals.unassigned.append(event, fields, sync=sync, time=time)
            else:
                self.journals.append(name, event, fields, sync=sync, time=time)
        except ValueError as exc:
            # A record the journal cannot take (a programming error): say so in the journal itself.
            log.error("audit_record_rejected", journal=name, record_event=event, error=str(exc))
            self.journals.daemon.append(
                "audit.record_rejected", {"journal": name, "record_event": event, "error": str(exc)}, sync=True
            )

    def audit_daemon(self, event: str, **fields: Any) -> None:
        self.journals.daemon.append(event, fields, sync=True)

    def flush(self) -> None:
        self.journals.sync()
