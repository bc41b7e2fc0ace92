"""Writes the `procedures` table of `state_dir/index.sqlite3` (DDL shared with `inspect/store.py`).

Called after the outbox commit (from a worker thread), so the index never shows what is not durable;
if the daemon dies between the two, the next upsert of that procedure brings the row up to date.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from suite_daemon.inspect.store import PROCEDURES_DDL

UPSERT = """
INSERT INTO procedures (procedure_id, state, opened_at, closed_at, study_instance_uid, accession_number, summary)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(procedure_id) DO UPDATE SET
  state = excluded.state, closed_at = excluded.closed_at, study_instance_uid = excluded.study_instance_uid,
  accession_number = excluded.accession_number, summary = excluded.summary
"""


class ProcedureIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(PROCEDURES_DDL)
            self._db = db
        return self._db

    def upsert(self, summary: dict[str, Any]) -> None:
        row = (
            summary["procedure_id"],
            summary["state"],
            summary["opened_at"],
            summary["closed_at"],
            summary["study_instance_uid"],
            summary["accession_number"],
            json.dumps(summary, separators=(",", ":")),
        )
        with self._lock:
            try:
                self._connect().execute(UPSERT, row)
            except sqlite3.Error:
                self._drop()  # reconnect next time (e.g. the file was replaced)
                raise

    def _drop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def close(self) -> None:
        with self._lock:
            self._drop()
