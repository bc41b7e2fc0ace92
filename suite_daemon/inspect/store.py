"""Read-only access to what the daemon left in its state dir: the `procedures` index and the journals.

The correlator owns and writes the `procedures` table (DDL below, shared so both sides agree);
the auditor's commands only read it, through a read-only SQLite connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite_daemon.audit.journal_set import SUFFIX, check_procedure_id

PROCEDURES_DDL = """
CREATE TABLE IF NOT EXISTS procedures (
  procedure_id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  opened_at TEXT NOT NULL,
  closed_at TEXT,
  study_instance_uid TEXT,
  accession_number TEXT,
  summary TEXT NOT NULL
)
"""
"""`summary` holds the contract's procedure summary as JSON."""

INDEX_NAME = "index.sqlite3"
JOURNAL_DIR = "journal"


class StoreError(Exception):
    """The index cannot be read (corrupt, locked, not SQLite)."""


@dataclass
class Procedure:
    procedure_id: str
    state: str
    opened_at: str
    closed_at: str | None
    summary: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    """Things that were wrong with the stored row (e.g. summary not JSON); shown as diagnostics."""

    @property
    def closed(self) -> bool:
        return self.state == "closed"


class StateStore:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.index_path = self.state_dir / INDEX_NAME
        self.journal_dir = self.state_dir / JOURNAL_DIR

    def journal_path(self, procedure_id: str) -> Path:
        return self.journal_dir / f"{procedure_id}{SUFFIX}"

    def procedures(self) -> list[Procedure]:
        """Every procedure in the index, newest first."""
        rows = self._query("SELECT * FROM procedures ORDER BY opened_at DESC, procedure_id DESC", ())
        return [_procedure(row) for row in rows]

    def procedure(self, procedure_id: str) -> Procedure | None:
        """The procedure from the index; failing that, one rebuilt from its journal alone; else None."""
        try:
            check_procedure_id(procedure_id)
        except ValueError:
            return None
        rows = self._query("SELECT * FROM procedures WHERE procedure_id = ?", (procedure_id,))
        if rows:
            return _procedure(rows[0])
        path = self.journal_path(procedure_id)
        if path.is_file():
            return _from_journal(procedure_id, read_journal(path)[0])
        return None

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        if not self.index_path.is_file():
            return []
        uri = self.index_path.resolve().as_uri()
        try:
            try:
                return self._read(f"{uri}?mode=ro", sql, params)
            except sqlite3.OperationalError as exc:
                if "unable to open" not in str(exc):
                    raise
                # A WAL database in a folder this user cannot write to (no -shm yet): read it as a snapshot.
                return self._read(f"{uri}?immutable=1", sql, params)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise StoreError(f"cannot read {self.index_path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read {self.index_path}: {exc}") from exc

    @staticmethod
    def _read(uri: str, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        with closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as db:
            db.row_factory = sqlite3.Row
            return list(db.execute(sql, params))


def _procedure(row: sqlite3.Row) -> Procedure:
    problems = []
    try:
        summary = json.loads(row["summary"])
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (TypeError, ValueError) as exc:
        problems.append(f"stored summary is not valid JSON ({exc}); showing the index columns only")
        summary = {}
    # The index columns are authoritative for identity and state.
    summary = {
        "schema": 1,
        **summary,
        "procedure_id": row["procedure_id"],
        "state": row["state"],
        "opened_at": row["opened_at"],
        "closed_at": row["closed_at"],
    }
    summary.setdefault("study_instance_uid", row["study_instance_uid"])
    summary.setdefault("accession_number", row["accession_number"])
    return Procedure(row["procedure_id"], row["state"], row["opened_at"], row["closed_at"], summary, problems)


def _from_journal(procedure_id: str, records: list[dict[str, Any]]) -> Procedure:
    opened = next((r["time"] for r in records if r.get("event") == "procedure.opened"), None)
    closed = next((r["time"] for r in reversed(records) if r.get("event") == "procedure.closed"), None)
    opened_at = opened or (records[0]["time"] if records else "")
    state = "closed" if closed else "open"
    summary = {"schema": 1, "procedure_id": procedure_id, "state": state, "opened_at": opened_at, "closed_at": closed}
    problems = ["not in the index: summary rebuilt from the journal alone"]
    return Procedure(procedure_id, state, opened_at, closed, summary, problems)


def read_journal(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of a journal, leniently (for display): bad lines are skipped and described."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(iter_lines(path), start=1):
        try:
            record = json.loads(line)
        except ValueError:
            problems.append(f"{path.name}: line {number} is not valid JSON, skipped")
            continue
        if isinstance(record, dict) and isinstance(record.get("time"), str):
            records.append(record)
        else:
            problems.append(f"{path.name}: line {number} is not an audit record, skipped")
    return records, problems


def iter_lines(path: Path) -> Iterator[str]:
    try:
        with path.open("rb") as f:
            for raw in f:
                if raw.strip():
                    yield raw.decode("utf-8", errors="replace")
    except FileNotFoundError:
        return
