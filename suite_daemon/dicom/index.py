"""The receiver's tables in the shared index database: stored instances and MPPS instances."""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite_daemon.dicom.uid_filter import UidFilter
from suite_daemon.events import rfc3339, utc_now

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dicom_instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    announced INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dicom_instances_unannounced ON dicom_instances(announced) WHERE announced = 0;
CREATE TABLE IF NOT EXISTS dicom_mpps (
    sop_instance_uid TEXT PRIMARY KEY,
    status TEXT,
    study_instance_uid TEXT,
    accession_number TEXT,
    attributes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredInstance:
    sop_instance_uid: str
    path: Path
    summary: dict[str, Any]
    announced: bool


@dataclass(frozen=True, slots=True)
class MppsRecord:
    sop_instance_uid: str
    status: str | None
    attributes: dict[str, Any]


class InstanceIndex:
    """Thread-safe; one connection guarded by a lock (writes are short).

    WAL with synchronous=NORMAL: a committed row survives the process being killed (the spool files,
    fsynced, are the source of truth after a power loss: `recover` re-indexes them).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        self._readers = threading.local()
        """Per-thread read connections: with WAL a lookup never waits for a batch being written."""
        self._announced: queue.SimpleQueue[str] = queue.SimpleQueue()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._known = self._filter_from_table()

    def _filter_from_table(self) -> UidFilter:
        """Every UID in the table (under the lock: no row can be added meanwhile), with room to grow."""
        (count,) = self._db.execute("SELECT count(*) FROM dicom_instances").fetchone()
        uids = (row[0] for row in self._db.execute("SELECT sop_instance_uid FROM dicom_instances"))
        return UidFilter(2 * int(count), uids)

    def close(self) -> None:
        self.flush_announced()
        with self._lock:
            self._db.close()

    # -- instances ---------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, isolation_level=None, timeout=30)
            self._readers.db = db
        return db

    def might_hold(self, sop_instance_uid: str) -> bool:
        """False only for a UID the index has certainly never held (its filter; no database read)."""
        return self._known.might_contain(sop_instance_uid)

    def lookup(self, sop_instance_uid: str) -> StoredInstance | None:
        """From any thread, without waiting for writes (each thread reads through its own connection). A UID
        the filter has never seen is not read from the database."""
        if not self.might_hold(sop_instance_uid):
            return None
        row = (
            self._reader()
            .execute(
                "SELECT path, summary, announced FROM dicom_instances WHERE sop_instance_uid = ?",
                (sop_instance_uid,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return StoredInstance(sop_instance_uid, Path(row[0]), json.loads(row[1]), bool(row[2]))

    def add(self, summary: Mapping[str, Any], path: Path) -> bool:
        """Record a stored instance (not yet announced). False if it was already there."""
        return self.add_many([(summary, path)]) == 1

    def add_many(self, instances: list[tuple[Mapping[str, Any], Path]]) -> int:
        """Record stored instances in one transaction; returns how many were new."""
        received_at = rfc3339(utc_now())
        rows = [
            (
                summary["sop_instance_uid"],
                summary["study_instance_uid"],
                summary["series_instance_uid"],
                summary["sop_class_uid"],
                str(path),
                summary["bytes"],
                received_at,
                json.dumps(summary, separators=(",", ":")),
            )
            for summary, path in instances
        ]
        with self._lock:
            for row in rows:  # before the rows exist: a lookup may then read the database needlessly, never miss
                self._known.add(row[0])
            self._db.execute("BEGIN")
            try:
                self._apply_announced()
                after_announced = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO dicom_instances (sop_instance_uid, study_instance_uid, series_instance_uid,"
                    " sop_class_uid, path, bytes, received_at, announced, summary) VALUES (?,?,?,?,?,?,?,0,?)",
                    rows,
                )
                added = self._db.total_changes - after_announced
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if self._known.full:
                self._known = self._filter_from_table()
        return added

    def mark_announced(self, sop_instance_uid: str) -> None:
        """Thread-safe and non-blocking (called from the pipeline's thread): applied with the next write."""
        self._announced.put(sop_instance_uid)

    def flush_announced(self) -> None:
        if self._announced.empty():
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._apply_announced()
            self._db.execute("COMMIT")

    def _apply_announced(self) -> None:
        uids: list[tuple[str]] = []
        while True:
            try:
                uids.append((self._announced.get_nowait(),))
            except queue.Empty:
                break
        if uids:
            self._db.executemany("UPDATE dicom_instances SET announced = 1 WHERE sop_instance_uid = ?", uids)

    def unannounced(self) -> list[StoredInstance]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sop_instance_uid, path, summary FROM dicom_instances WHERE announced = 0 ORDER BY rowid"
            ).fetchall()
        return [StoredInstance(r[0], Path(r[1]), json.loads(r[2]), False) for r in rows]

    def known_paths(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT path FROM dicom_instances")}

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM dicom_instances").fetchone()[0])

    # -- MPPS ----------------------------------------------------------------------------------

    def mpps(self, sop_instance_uid: str) -> MppsRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status, attributes FROM dicom_mpps WHERE sop_instance_uid = ?", (sop_instance_uid,)
            ).fetchone()
        if row is None:
            return None
        return MppsRecord(sop_instance_uid, row[0], json.loads(row[1]))

    def put_mpps(
        self,
        sop_instance_uid: str,
        status: str | None,
        attributes: Mapping[str, Any],
        study_instance_uid: str | None,
        accession_number: str | None,
    ) -> None:
        now = rfc3339(utc_now())
        with self._lock:
            self._db.execute(
                "INSERT INTO dicom_mpps (sop_instance_uid, status, study_instance_uid, accession_number, attributes,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT(sop_instance_uid) DO UPDATE SET"
                " status=excluded.status, study_instance_uid=excluded.study_instance_uid,"
                " accession_number=excluded.accession_number, attributes=excluded.attributes,"
                " updated_at=excluded.updated_at",
                (sop_instance_uid, status, study_instance_uid, accession_number, json.dumps(attributes), now, now),
            )
