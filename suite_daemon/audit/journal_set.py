"""All journals of a state dir: `journal/<procedure_id>.jsonl`, `daemon.jsonl` and `unassigned.jsonl`.

Opens journals on first use and keeps up to `max_open` procedure journals open (least recently used
ones are closed and reopened on demand, continuing their chain). A background thread fsyncs, twice
per fsync interval, every journal with records half an interval old, so no record waits longer than
one interval (1 s) for its fsync, even when no further record follows it.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from suite_daemon.audit.journal import DEFAULT_FSYNC_INTERVAL_S, AuditJournal, AuditWriteError

PROCEDURE_ID_RE = re.compile(r"[A-Za-z0-9._-]+")
DAEMON_JOURNAL = "daemon"
UNASSIGNED_JOURNAL = "unassigned"
RESERVED_NAMES = frozenset({DAEMON_JOURNAL, UNASSIGNED_JOURNAL})
MAX_ID_LENGTH = 128
SUFFIX = ".jsonl"

log = structlog.get_logger("suite_daemon.audit")


def check_procedure_id(procedure_id: str) -> str:
    """Return the id if it may name a journal file; raise ValueError saying why not."""
    if not isinstance(procedure_id, str) or not PROCEDURE_ID_RE.fullmatch(procedure_id):
        raise ValueError(f"{procedure_id!r} is not a valid procedure id ([A-Za-z0-9._-]+)")
    if len(procedure_id) > MAX_ID_LENGTH:
        raise ValueError(f"procedure id is longer than {MAX_ID_LENGTH} characters")
    if procedure_id in RESERVED_NAMES or procedure_id in {".", ".."}:
        raise ValueError(f"{procedure_id!r} is reserved and cannot be a procedure id")
    return procedure_id


def journal_path(journal_dir: Path, procedure_id: str) -> Path:
    return journal_dir / f"{check_procedure_id(procedure_id)}{SUFFIX}"


class JournalSet:
    def __init__(
        self,
        journal_dir: Path,
        *,
        fsync_interval_s: float = DEFAULT_FSYNC_INTERVAL_S,
        max_open: int = 32,
        background_flush: bool = True,
    ) -> None:
        self.journal_dir = Path(journal_dir)
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self._fsync_interval_s = fsync_interval_s
        self._max_open = max_open
        self._lock = threading.Lock()
        self._procedures: OrderedDict[str, AuditJournal] = OrderedDict()
        self._fixed: dict[str, AuditJournal] = {}
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if background_flush:
            self._flusher = threading.Thread(target=self._flush_loop, name="audit-fsync", daemon=True)
            self._flusher.start()

    @property
    def daemon(self) -> AuditJournal:
        """`daemon.jsonl`: security events of the daemon itself (rejected callers, start/stop, config)."""
        return self._open_fixed(DAEMON_JOURNAL)

    @property
    def unassigned(self) -> AuditJournal:
        """`unassigned.jsonl`: samples and device events that belong to no procedure."""
        return self._open_fixed(UNASSIGNED_JOURNAL)

    def procedure(self, procedure_id: str) -> AuditJournal:
        path = journal_path(self.journal_dir, procedure_id)
        with self._lock:
            self._check_open()
            journal = self._procedures.get(procedure_id)
            if journal is not None and not journal.closed:
                self._procedures.move_to_end(procedure_id)
                return journal
            journal = AuditJournal(path, fsync_interval_s=self._fsync_interval_s)
            self._procedures[procedure_id] = journal
            while len(self._procedures) > self._max_open:
                _, oldest = self._procedures.popitem(last=False)
                oldest.close()
            return journal

    def append(
        self,
        procedure_id: str | None,
        event: str,
        fields: Mapping[str, Any],
        *,
        sync: bool = False,
        time: datetime | None = None,
    ) -> dict[str, Any]:
        """Append to the procedure's journal, or to `unassigned.jsonl` when `procedure_id` is None."""
        for attempt in range(3):
            journal = self.unassigned if procedure_id is None else self.procedure(procedure_id)
            try:
                return journal.append(event, fields, sync=sync, time=time)
            except AuditWriteError:
                # Closed under us by release() or the open-file limit: reopen and continue the chain.
                if attempt < 2 and journal.closed and procedure_id is not None and not self._stop.is_set():
                    continue
                raise
        raise AssertionError("unreachable")

    def release(self, procedure_id: str) -> None:
        """Close a procedure's journal (e.g. after `procedure.closed`); a later append reopens it."""
        with self._lock:
            journal = self._procedures.pop(procedure_id, None)
        if journal is not None:
            journal.close()

    def flush_due(self, max_age_s: float | None = None) -> None:
        """Fsync every journal whose oldest unsynced record is due. Safe to call from any thread."""
        for journal in self._open_journals():
            if not journal.closed:
                journal.flush_due(max_age_s)

    def sync(self) -> None:
        for journal in self._open_journals():
            if not journal.closed:
                journal.sync()

    def close(self) -> None:
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._lock:
            journals = [*self._procedures.values(), *self._fixed.values()]
            self._procedures.clear()
            self._fixed.clear()
        for journal in journals:
            journal.close()

    def __enter__(self) -> JournalSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_fixed(self, name: str) -> AuditJournal:
        with self._lock:
            self._check_open()
            journal = self._fixed.get(name)
            if journal is None:
                journal = AuditJournal(self.journal_dir / f"{name}{SUFFIX}", fsync_interval_s=self._fsync_interval_s)
                self._fixed[name] = journal
            return journal

    def _open_journals(self) -> list[AuditJournal]:
        with self._lock:
            return [*self._procedures.values(), *self._fixed.values()]

    def _check_open(self) -> None:
        if self._stop.is_set():
            raise RuntimeError("the journal set is closed")

    def _flush_loop(self) -> None:
        # Ticking every half interval and syncing what is half an interval old keeps every record's
        # time to fsync within one interval.
        half = self._fsync_interval_s / 2
        while not self._stop.wait(half):
            try:
                self.flush_due(half)
            except Exception as exc:  # the next append reports the same failure to its caller
                log.error("audit_fsync_failed", error=str(exc))
