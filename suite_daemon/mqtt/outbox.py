"""The durable outbox: every message bound for MQTT is committed here (SQLite, WAL, synchronous=FULL)
before it is published, and deleted only after the broker acknowledged it (PUBACK).

The outbox also numbers events: the last `seq` of every stream (a procedure, or "" for the
daemon-wide stream) is kept in the same transaction as the events, so numbering survives SIGKILL
without gaps or repeats.

All writes go through one worker thread, so the event loop never waits on fsync.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from suite_daemon.events import Event

_T = TypeVar("_T")
log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    stream TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False

    @classmethod
    def json(cls, topic: str, payload: object, *, qos: int = 1, retain: bool = False) -> Message:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(topic, body, qos, retain)


Route = Callable[[Event], Iterable[Message]]
"""Which messages publish a numbered event (its event topic, `R/alert` for alerts, ...)."""


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    message: Message


@dataclass(frozen=True, slots=True)
class Fill:
    """How full the outbox is after a write, and what was dropped to keep it bounded."""

    count: int
    dropped: int


class Outbox:
    def __init__(self, path: Path, max_messages: int) -> None:
        self.path = path
        self.max_messages = max_messages
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._write_db: sqlite3.Connection | None = None
        self._read_db: sqlite3.Connection | None = None
        self._seq: dict[str, int] = {}
        self.count = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await self._in_writer(self._open_sync)
        self._read_db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        db.executescript(SCHEMA)
        self._seq = dict(db.execute("SELECT stream, last_seq FROM streams").fetchall())
        self.count = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._write_db = db

    async def close(self) -> None:
        if self._write_db is not None:
            await self._in_writer(self._close_sync)
        if self._read_db is not None:
            self._read_db.close()
            self._read_db = None
        self._writer.shutdown(wait=True)

    def _close_sync(self) -> None:
        assert self._write_db is not None
        self._write_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._write_db.close()
        self._write_db = None

    async def _in_writer(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, fn, *args)

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self,
        events: Sequence[Event],
        route: Route,
        extra: Iterable[Message] = (),
        state: Mapping[str, str | None] | None = None,
        then: Callable[[list[Event]], None] | None = None,
    ) -> tuple[list[Event], Fill]:
        """Number `events` in their streams, turn them into messages with `route(event)`, and commit
        them with `extra` messages and `state` changes in one transaction. Returns the numbered events.

        `then(numbered)` runs in the writer thread once the transaction is committed (blocking follow-up
        work such as journaling, without a second hand-over to another thread); what it raises is raised
        here, the commit stands."""
        return await self._in_writer(self._append_sync, list(events), route, list(extra), dict(state or {}), then)

    def _append_sync(
        self,
        events: list[Event],
        route: Route,
        extra: list[Message],
        state: dict[str, str | None],
        then: Callable[[list[Event]], None] | None = None,
    ) -> tuple[list[Event], Fill]:
        assert self._write_db is not None
        db = self._write_db
        numbered: list[Event] = []
        touched: dict[str, int] = {}
        rows: list[tuple[str, bytes, int, int]] = []
        for event in events:
            seq = touched.get(event.stream, self._seq.get(event.stream, 0)) + 1
            touched[event.stream] = seq
            event = event.numbered(seq)
            numbered.append(event)
            rows.extend((m.topic, m.payload, m.qos, int(m.retain)) for m in route(event))
        rows.extend((m.topic, m.payload, m.qos, int(m.retain)) for m in extra)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT INTO streams (stream, last_seq) VALUES (?, ?) "
                "ON CONFLICT(stream) DO UPDATE SET last_seq = excluded.last_seq",
                touched.items(),
            )
            db.executemany("DELETE FROM state WHERE key = ?", ((k,) for k, v in state.items() if v is None))
            db.executemany(
                "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                ((k, v) for k, v in state.items() if v is not None),
            )
            dropped = 0
            overflow = self.count + len(rows) - self.max_messages
            if overflow > 0:
                dropped = db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (overflow,)
                ).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._seq.update(touched)
        self.count += len(rows) - dropped
        if then is not None:
            then(numbered)
        return numbered, Fill(self.count, dropped)

    async def ack(self, ids: Sequence[int]) -> None:
        """Delete acknowledged messages."""
        if ids:
            await self._in_writer(self._ack_sync, list(ids))

    def _ack_sync(self, ids: list[int]) -> None:
        assert self._write_db is not None
        db = self._write_db
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = db.executemany("DELETE FROM outbox WHERE id = ?", ((i,) for i in ids)).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.count -= max(deleted, 0)

    # -- reading (event loop thread; WAL readers never wait on the writer) ---------------

    def pending(self, after_id: int, limit: int) -> list[Row]:
        assert self._read_db is not None
        cursor = self._read_db.execute(
            "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [Row(i, Message(t, bytes(p), q, bool(r))) for i, t, p, q, r in cursor]

    def load_state(self) -> dict[str, str]:
        assert self._read_db is not None
        return dict(self._read_db.execute("SELECT key, value FROM state").fetchall())

    def last_seq(self, stream: str) -> int:
        return self._seq.get(stream, 0)
