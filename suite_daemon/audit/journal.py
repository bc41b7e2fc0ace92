"""The append-only, hash-chained audit journal: one JSON-lines file, written through structlog.

Each `append` runs a structlog processor chain that numbers the record (`seq`), stamps `time`, links it
to the previous record (`prev`) and seals it (`hash`, see `chain.py`); the final logger writes the line.

Durability policy (docs/audit.md):
- every record reaches the operating system (one `write`) before `append` returns, so a crash of the
  daemon loses nothing;
- `append(..., sync=True)` (procedure state changes) and `sync()` fsync before returning;
- any other record is fsynced at most `fsync_interval_s` (1 s) later: by the next append once the oldest
  unsynced record is that old, or by `flush_due()`, which `JournalSet` calls from a background thread.

Torn tail policy (a crash in the middle of a write leaves a last line without its newline): on open, a
fragment that is a complete, correctly chained record only lacks its newline and gets it; anything else
is moved aside to `<name>.torn-<UTC time>` and a `journal.recovered` record naming that file, its size
and SHA-256 is appended, so the kept file verifies and nothing is silently lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from enum import Enum
from pathlib import Path, PurePath
from time import monotonic
from typing import Any

import structlog

from suite_daemon.audit.chain import CHAIN_KEYS, GENESIS, record_hash
from suite_daemon.events import rfc3339, utc_now

DEFAULT_FSYNC_INTERVAL_S = 1.0

log = structlog.get_logger("suite_daemon.audit")


class AuditWriteError(Exception):
    """The journal cannot take the record (disk full, I/O error, closed, locked). Nothing was half-written."""


class JournalCorrupt(AuditWriteError):
    """The journal's last complete line is not a record, so the chain cannot be continued."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json_value(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields as plain JSON values (datetimes as RFC 3339, paths as strings), exactly as they will be hashed."""
    try:
        values: dict[str, Any] = json.loads(
            json.dumps(dict(fields), default=_json_default, allow_nan=False, ensure_ascii=False)
        )
        return values
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit record fields are not JSON: {exc}") from exc


class _RecordingLogger(structlog.BoundLoggerBase):
    def record(self, event: str, **fields: Any) -> Any:
        return self._proxy_to_logger("msg", event, **fields)


class _LineSink:
    """The structlog 'logger' at the end of the chain: writes one rendered line to the journal's file."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write

    def msg(self, line: str) -> None:
        self._write((line + "\n").encode("utf-8"))


class AuditJournal:
    """One journal file. Thread-safe. Holds an exclusive `flock` so two writers can never interleave."""

    def __init__(
        self,
        path: Path,
        *,
        fsync_interval_s: float = DEFAULT_FSYNC_INTERVAL_S,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.path = Path(path)
        self._fsync_interval_s = fsync_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._dirty_since: float | None = None
        self._pending: dict[str, Any] | None = None
        self._pending_time: datetime | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditWriteError(f"cannot open {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            raise AuditWriteError(f"{self.path} is already open for writing (by this or another process)") from exc
        # Bound once: the lazy proxy `wrap_logger` returns would assemble a new logger for every record.
        self._log: _RecordingLogger = structlog.wrap_logger(
            _LineSink(self._write),
            processors=[self._chain, self._render],
            wrapper_class=_RecordingLogger,
            context_class=dict,
            cache_logger_on_first_use=False,
        ).bind()
        try:
            self._seq, self._prev, self._size, torn = self._resume()
            if torn is not None:
                self.append("journal.recovered", torn, sync=True)
                log.warning("audit_journal_recovered", journal=str(self.path), **torn)
        except BaseException:
            os.close(self._fd)
            raise

    # -- public API -----------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The last record's seq (0 for an empty journal)."""
        return self._seq

    @property
    def last_hash(self) -> str:
        return self._prev

    @property
    def closed(self) -> bool:
        return self._closed

    def append(
        self, event: str, fields: Mapping[str, Any], *, sync: bool = False, time: datetime | None = None
    ) -> dict[str, Any]:
        """Seal and write one record; return it. `time` defaults to now (the record's write time).

        Raises ValueError for a bad event name or fields (reserved keys, values that are not JSON) and
        AuditWriteError when the record could not be written (the file is left as it was).
        """
        if not isinstance(event, str) or not event:
            raise ValueError("an audit record needs a non-empty event name")
        reserved = [key for key in fields if key in CHAIN_KEYS]
        if reserved:
            raise ValueError(f"audit record fields may not use the reserved keys {reserved}")
        values = to_json_value(fields)
        with self._lock:
            if self._closed:
                raise AuditWriteError(f"{self.path} is closed")
            self._pending_time = time
            try:
                self._log.record(event, **values)
            finally:
                self._pending_time = None
            record, self._pending = self._pending, None
            assert record is not None
            self._seq, self._prev = record["seq"], record["hash"]
            if sync:
                self._fsync()
            elif self._dirty_since is None:
                self._dirty_since = monotonic()
            elif monotonic() - self._dirty_since >= self._fsync_interval_s:
                self._fsync()
            return record

    def sync(self) -> None:
        """Make every record written so far durable (fsync)."""
        with self._lock:
            if not self._closed and self._dirty_since is not None:
                self._fsync()

    def flush_due(self, max_age_s: float | None = None) -> bool:
        """Fsync if the oldest unsynced record is `max_age_s` (default `fsync_interval_s`) old. True if it synced."""
        limit = self._fsync_interval_s if max_age_s is None else max_age_s
        with self._lock:
            due = self._dirty_since is not None and monotonic() - self._dirty_since >= limit
            if due and not self._closed:
                self._fsync()
                return True
            return False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._dirty_since is not None:
                    self._fsync()
            finally:
                self._closed = True
                os.close(self._fd)

    def __enter__(self) -> AuditJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the structlog chain ----------------------------------------------------------------------

    def _chain(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        event = event_dict.pop("event")
        record = {
            "seq": self._seq + 1,
            "time": rfc3339(self._pending_time or self._clock()),
            "event": event,
            **event_dict,
            "prev": self._prev,
        }
        record["hash"] = record_hash(record)
        self._pending = record
        return record

    @staticmethod
    def _render(_logger: Any, _method: str, record: MutableMapping[str, Any]) -> str:
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    # -- file I/O -----------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            # Never leave half a line behind: it would break the chain for every later record.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise AuditWriteError(f"cannot write to {self.path}: {exc.strerror or exc}") from exc
        self._size += len(data)

    def _fsync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise AuditWriteError(f"cannot fsync {self.path}: {exc.strerror or exc}") from exc
        self._dirty_since = None

    def _resume(self) -> tuple[int, str, int, dict[str, Any] | None]:
        """Find where the chain stands: (last seq, last hash, size of the kept file, torn-tail facts or None)."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0, GENESIS, 0, None
        last_nl = _rfind_newline(self._fd, size, size)
        kept = last_nl + 1  # 0 when there is no newline at all
        seq, prev = 0, GENESIS
        if kept > 0:
            start = _rfind_newline(self._fd, last_nl, size) + 1
            line = os.pread(self._fd, last_nl - start, start)
            # Not hash-checked: an edited last record is for `audit verify` to report, not a reason to stop.
            record = _parse_record(line, check_hash=False)
            if record is None:
                raise JournalCorrupt(
                    f"{self.path}: the last complete line is not an audit record; "
                    "run `suite-daemon audit verify` and move the file aside"
                )
            seq, prev = record["seq"], record["hash"]
        if kept == size:
            return seq, prev, size, None
        fragment = os.pread(self._fd, size - kept, kept)
        record = _parse_record(fragment)
        if record is not None and record["seq"] == seq + 1 and record.get("prev") == prev:
            self._size = size
            self._write(b"\n")
            os.fsync(self._fd)
            return record["seq"], record["hash"], size + 1, None
        torn_path = self._move_aside(fragment)
        os.ftruncate(self._fd, kept)
        os.fsync(self._fd)
        facts = {
            "torn_file": torn_path.name,
            "torn_bytes": len(fragment),
            "torn_sha256": hashlib.sha256(fragment).hexdigest(),
            "after_seq": seq,
        }
        return seq, prev, kept, facts

    def _move_aside(self, fragment: bytes) -> Path:
        stamp = utc_now().strftime("%Y%m%dT%H%M%S.%fZ")
        for attempt in range(100):
            suffix = f".torn-{stamp}" + (f"-{attempt}" if attempt else "")
            torn_path = self.path.with_name(self.path.name + suffix)
            try:
                fd = os.open(torn_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
            except FileExistsError:
                continue
            try:
                os.write(fd, fragment)
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(self.path.parent)
            return torn_path
        raise AuditWriteError(f"cannot find a free name to move the torn tail of {self.path} aside")


def _rfind_newline(fd: int, end: int, size: int, chunk: int = 65536) -> int:
    """Offset of the last b"\\n" before `end`, or -1."""
    pos = end
    while pos > 0:
        start = max(0, pos - chunk)
        data = os.pread(fd, pos - start, start)
        index = data.rfind(b"\n")
        if index >= 0:
            return start + index
        pos = start
    return -1


def _parse_record(line: bytes, *, check_hash: bool = True) -> dict[str, Any] | None:
    """The record on this line if it is one (and, with check_hash, its hash matches its content), else None."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if not isinstance(record.get("seq"), int) or not isinstance(record.get("hash"), str):
        return None
    if not check_hash:
        return record
    try:
        if record_hash(record) != record["hash"]:
            return None
    except ValueError:
        return None
    return record


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
