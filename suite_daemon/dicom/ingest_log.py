"""The ingest log: received objects made durable with one cheap sync, then filed into the spool later.

Making a new spool file durable costs a journal commit (the file's size and blocks, the rename, the directory)
on top of its data: on this kind of machine about 0.5 ms for a 9 KB object and 0.85 ms for a 0.5 MB CT slice.
Overwriting blocks that already exist costs only the data: 0.11 ms and 0.29 ms. So a store writes the object
into a segment file whose blocks already exist (zero-filled once when created, reused ever after),
`fdatasync`s it and answers; right after, it is copied to its spool file (no sync), and before a segment is
reused every file filed from it is fsynced (with its directory). That happens when the receiver is idle, or
when the log runs short of room, not in the middle of a burst. (`syncfs` would be one call, but it also
writes out whatever else is dirty on the file system, for an unbounded time.)

Segment layout: a 4 KiB header page (magic, generation), then records, each at a 4 KiB boundary: a 64-byte
header (magic, generation, payload and meta lengths, a 64-bit XXH3 digest of payload + meta, CRC-32 of the
header), the payload (the Part 10 file's bytes), the meta (the spool path, relative; empty for a record
written ahead of the store's checks, `LogWriter.write_ahead`, whose path is found from its payload at start
by the same checks), then zeros to the end of the page (so that no write covers part of a page: `_pad`).
A record is valid only with the segment's current generation and both checks; recovery reads a segment's
records up to the first invalid one. Reusing a segment bumps its generation,
which invalidates every old record at once. Records written before 2026-11-29 carry a CRC-32 of payload +
meta instead of the digest, under another magic, and are still read. (XXH3 takes about 16 us for a 0.5 MB
CT slice here, zlib's CRC-32 about 200 us, on the receiving thread: +10-18 % CT slices/s side by side.)

Only objects up to `LOG_OBJECT_MAX` go through the log; larger ones (multi-frame runs), whose sync is
dominated by their data anyway, are written to their spool file directly.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
import xxhash

from suite_daemon.dicom.writeback import PAGE, EarlyWriteback, page_ceil, start_writeback

log = structlog.get_logger()

LOG_OBJECT_MAX = 4 * 1024 * 1024
"""Objects larger than this skip the log (their own data dominate their sync cost)."""
SEGMENT_BYTES = 16 * 1024 * 1024
_SEAL_BELOW = 1024 * 1024
"""A segment with less room than this takes no new writers."""
_SHORT = 2
"""With this few segments left to write into, full ones are synced and reused even during a burst."""
_SEGMENT_MAGIC = b"SDINGEST"
_SEGMENT_HEADER = struct.Struct("<8sQI")
_RECORD_MAGIC = b"SDRECXH3"
_RECORD_HEADER = struct.Struct("<8sQQIQ")
"""Magic, generation, payload length, meta length, XXH3-64 digest of payload + meta; a CRC-32 of these follows."""
_CRC_RECORD_MAGIC = b"SDRECORD"
_CRC_RECORD_HEADER = struct.Struct("<8sQQII")
"""The same with a CRC-32 of payload + meta: records written by earlier versions, read at start."""
_RECORD_HEADER_SIZE = 64
_META_MAX = 1024
_ZERO_CHUNK = bytes(1024 * 1024)
_NO_HEADER = bytes(_RECORD_HEADER_SIZE)
_ZERO_PAGE = memoryview(_ZERO_CHUNK)[:PAGE]


def _pad(end: int) -> memoryview:
    """Zeros from `end` to the end of its page. Every write into a segment ends on a page boundary (and
    a record's first write starts on one): a write covering part of a page that is not in the page cache
    makes the kernel read that page from the disk first, synchronously. This VM's page cache is trimmed
    as its host takes memory back, so the log's pages are often cold: 110 us more per small object here,
    one read per object."""
    return _ZERO_PAGE[: page_ceil(end) - end]


class Segment:
    def __init__(self, path: Path, fd: int, size: int, generation: int) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self.generation = generation
        self.write_pos = PAGE
        self.records = 0
        self.filed = 0
        self.busy = False
        self.sealed = False
        self.files: list[Path] = []
        """Spool files filed from this segment: fsynced before it is reused."""

    @property
    def room(self) -> int:
        return self.size - self.write_pos

    @property
    def all_filed(self) -> bool:
        return self.filed == self.records


@dataclass(frozen=True, slots=True)
class RecordRef:
    segment: Segment
    payload_offset: int
    payload_len: int


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """A valid record found at start: its object may not be in the spool yet."""

    ref: RecordRef
    relative_path: str


class LogWriter:
    """One record being written into a segment the writer holds alone (one store at a time per segment)."""

    def __init__(self, ingest: IngestLog, segment: Segment) -> None:
        self._log = ingest
        self.segment = segment
        self._start = segment.write_pos
        self._pos = self._start + _RECORD_HEADER_SIZE
        self._limit = min(segment.size - _META_MAX, self._pos + LOG_OBJECT_MAX)
        self._digest = xxhash.xxh3_64()
        self._open = True
        self._writeback: EarlyWriteback | None = None

    @property
    def written(self) -> int:
        return self._pos - self._start - _RECORD_HEADER_SIZE

    def feed(self, chunk: bytes | memoryview) -> bool:
        """Append to the payload; False (nothing written) when it would not fit: use a spool file instead."""
        self._check_open()
        if self._pos + len(chunk) > self._limit:
            return False
        end = self._pos + len(chunk)
        if self._pos == self._start + _RECORD_HEADER_SIZE:  # the first chunk: the header's place too
            write_chunks(self.segment.fd, (_NO_HEADER, chunk, _pad(end)), self._start)
        else:
            write_chunks(self.segment.fd, (chunk, _pad(end)), self._pos)
        self._digest.update(chunk)
        if self._writeback is None:
            self._writeback = EarlyWriteback(self.segment.fd, self._start, self._pos)
        self._writeback.appended(len(chunk))
        self._pos += len(chunk)
        return True

    def payload_view(self, skip: int) -> memoryview:
        """What was fed so far, but its first `skip` bytes, without copying it: a read-only mapping of the
        record (records start on a page boundary), unmapped when the view is released. (Not one mapping
        kept per segment: every page it ever touched would stay mapped, whole large folios at a time.)"""
        mapping = mmap.mmap(self.segment.fd, self._pos - self._start, prot=mmap.PROT_READ, offset=self._start)
        return memoryview(mapping)[_RECORD_HEADER_SIZE + skip :]

    def copy_payload_to(self, fd: int) -> None:
        """Copy what was fed so far to `fd` (a spool file taking over a stream that outgrew the log)."""
        _copy_range(self.segment.fd, self._start + _RECORD_HEADER_SIZE, self.written, fd)

    def commit(self, relative_path: str) -> RecordRef:
        """Write the record header and meta, fdatasync: the object is durable when this returns."""
        meta = _meta(relative_path)
        self._seal(meta)
        return self._sync_record(len(meta))

    def write_whole(self, chunks: tuple[bytes | memoryview, ...], relative_path: str) -> RecordRef | None:
        """`feed` every chunk, then `commit`, in one write. None (nothing written) when it would not fit."""
        meta = _meta(relative_path)
        if not self._write_record(chunks, meta):
            return None
        return self._sync_record(len(meta))

    def write_ahead(self, chunks: tuple[bytes | memoryview, ...]) -> bool:
        """Write a whole record before the object is checked, and start its write-back: the disk writes it
        while the store checks the object, and `sync_ahead` waits for the rest. Its meta is empty: at
        start, the spool path is found from the payload (a Part 10 file), checked as the store checks it.
        False (nothing written) when it would not fit."""
        if not self._write_record(chunks, b""):
            return False
        start_writeback(self.segment.fd, self._start, self._pos - self._start)
        return True

    def seal_ahead(self) -> None:
        """`write_ahead` for a record fed chunk by chunk: its header is written (no meta) and the write-back
        of what is not on its way to the disk yet is started; `sync_ahead` then waits for it."""
        self._seal(b"")
        start_writeback(self.segment.fd, self._start, self._pos - self._start)

    def sync_ahead(self) -> RecordRef:
        """The record written by `write_ahead` or sealed by `seal_ahead` is durable when this returns."""
        self._check_open()
        return self._sync_record(0)  # no meta

    def void(self) -> None:
        """Make sure a record written or sealed ahead is never filed (its object was not stored: refused,
        a copy of a stored one, or failed), and give the segment back. Its header is overwritten and synced.
        Nothing once the record is synced as stored."""
        if not self._open:
            return
        try:
            write_chunks(self.segment.fd, (_NO_HEADER,), self._start)
            os.fdatasync(self.segment.fd)
        finally:
            self.abandon()

    def _seal(self, meta: bytes) -> None:
        """Complete a record fed chunk by chunk: its meta after the payload, then its header."""
        self._check_open()
        self._digest.update(meta)
        head = _record_header(self.segment.generation, self.written, meta, self._digest.intdigest())
        try:
            write_chunks(self.segment.fd, (meta, _pad(self._pos + len(meta))), self._pos)
            write_chunks(self.segment.fd, (head,), self._start)
        except BaseException:
            self.abandon()
            raise

    def _write_record(self, chunks: tuple[bytes | memoryview, ...], meta: bytes) -> bool:
        self._check_open()
        payload_len = sum(len(chunk) for chunk in chunks)
        if self.written or self._pos + payload_len > self._limit:
            return False
        for chunk in (*chunks, meta):
            self._digest.update(chunk)
        head = _record_header(self.segment.generation, payload_len, meta, self._digest.intdigest())
        end = self._pos + payload_len + len(meta)
        try:
            write_chunks(self.segment.fd, [head, *chunks, meta, _pad(end)], self._start)
        except BaseException:
            self.abandon()
            raise
        self._pos += payload_len
        return True

    def _sync_record(self, meta_len: int) -> RecordRef:
        try:
            os.fdatasync(self.segment.fd)
        except BaseException:
            self.abandon()
            raise
        return self._recorded(self.written, meta_len)

    def _recorded(self, payload_len: int, meta_len: int) -> RecordRef:
        ref = RecordRef(self.segment, self._start + _RECORD_HEADER_SIZE, payload_len)
        self._log._release(self, page_ceil(self._pos + meta_len), recorded=True)
        return ref

    def abandon(self) -> None:
        """Give the segment back without a record (its space is reused by the next one)."""
        if self._open:
            self._log._release(self, self._start, recorded=False)

    def _close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        """A writer given back no longer holds its segment: another may be writing there."""
        if not self._open:
            raise OSError(errno.EBADF, "the ingest log writer was given back")


class IngestLog:
    """The segments in `directory`: at most `total_bytes` of them, created (zero-filled) on demand."""

    def __init__(self, directory: Path, total_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_segments = total_bytes // segment_bytes if total_bytes > 0 else 0
        self._segments: list[Segment] = []
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_segments > 0

    # -- start and stop ---------------------------------------------------------------------------

    def open(self) -> list[LoggedRecord]:
        """Open the existing segments and return their valid records (to be filed before serving). Segments
        are read even when the log is now off or smaller (`ingest_log_mb` lowered since the last run): their
        records were answered; once filed, `checkpoint` removes the segments beyond the configured number."""
        if not self.enabled and not self.directory.is_dir():
            return []
        self.directory.mkdir(parents=True, exist_ok=True)
        pending: list[LoggedRecord] = []
        for path in sorted(self.directory.glob("seg-*.log")):
            segment = self._open_segment(path)
            if segment is None:
                continue
            self._segments.append(segment)
            pending.extend(self._scan(segment))
        self._make_segments()
        return pending

    def close(self) -> None:
        with self._lock:
            for segment in self._segments:
                os.close(segment.fd)
            self._segments.clear()

    def _open_segment(self, path: Path) -> Segment | None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            log.warning("dicom_ingest_segment_unreadable", path=str(path), error=str(exc))
            return None
        size = os.fstat(fd).st_size
        raw = os.pread(fd, _SEGMENT_HEADER.size, 0)
        magic, generation, crc = _SEGMENT_HEADER.unpack(raw) if len(raw) == _SEGMENT_HEADER.size else (b"", 0, 0)
        if magic != _SEGMENT_MAGIC or crc != zlib.crc32(raw[:16]) or size < 2 * PAGE:
            # Never completed (a crash while it was being created): it holds no record; make it again.
            os.close(fd)
            path.unlink(missing_ok=True)
            return None
        return Segment(path, fd, size, generation)

    def _scan(self, segment: Segment) -> Iterator[LoggedRecord]:
        pos = PAGE
        while pos + _RECORD_HEADER_SIZE <= segment.size:
            head = _parse_record_header(os.pread(segment.fd, _RECORD_HEADER_SIZE, pos))
            if head is None or head.generation != segment.generation:
                break
            payload_offset = pos + _RECORD_HEADER_SIZE
            end = payload_offset + head.payload_len + head.meta_len
            if end > segment.size or head.meta_len > _META_MAX:
                break
            check = head.checker()
            for chunk_offset in range(payload_offset, payload_offset + head.payload_len, 1 << 20):
                n = min(1 << 20, payload_offset + head.payload_len - chunk_offset)
                check.update(os.pread(segment.fd, n, chunk_offset))
            meta = os.pread(segment.fd, head.meta_len, payload_offset + head.payload_len)
            check.update(meta)
            if check.intdigest() != head.check:
                break  # torn: written but never answered
            segment.records += 1
            yield LoggedRecord(RecordRef(segment, payload_offset, head.payload_len), meta.decode("utf-8", "replace"))
            pos = page_ceil(end)
        segment.write_pos = pos

    # -- writers ---------------------------------------------------------------------------------

    def writer(self) -> LogWriter | None:
        """A segment with room, held alone until commit/abandon; None when none is ready."""
        if not self.enabled:
            return None
        with self._lock:
            best: Segment | None = None
            for segment in self._segments:
                if segment.busy or segment.sealed or segment.room < _SEAL_BELOW:
                    continue
                if best is None or segment.write_pos > best.write_pos:
                    best = segment  # fill the fullest first: the others stay spare
            if best is None:
                return None
            best.busy = True
        return LogWriter(self, best)

    def _release(self, writer: LogWriter, write_pos: int, recorded: bool) -> None:
        writer._close()
        segment = writer.segment
        with self._lock:
            segment.write_pos = write_pos
            if recorded:
                segment.records += 1
            if segment.room < _SEAL_BELOW:
                segment.sealed = True
            segment.busy = False

    def filed(self, ref: RecordRef, path: Path | None) -> None:
        """The record's object is in its spool file (not yet synced); None: the record is given up."""
        with self._lock:
            ref.segment.filed += 1
            if path is not None:
                ref.segment.files.append(path)

    # -- reuse -----------------------------------------------------------------------------------

    def checkpoint(self, idle: bool) -> int:
        """Make the filed objects durable and reuse their segments. Returns the segments reused.

        Only when `idle` (no store for a while, or stopping), or when the log runs short of room: the sync
        writes every filed object out at once, and a store's own sync waiting behind that write-back
        during a burst costs more than the burst's objects waiting in the log."""
        with self._lock:
            room = sum(1 for s in self._segments if not s.sealed and s.room >= _SEAL_BELOW)
            short = room <= _SHORT
            ready = [
                s for s in self._segments if not s.busy and s.records and s.all_filed and (idle or (short and s.sealed))
            ]
            for segment in ready:
                segment.busy = True  # no writer may take it while it is reset
        if not ready:
            self._retire_surplus()
            return 0
        try:
            self._sync_files(ready)
            for segment in ready:
                self._reset(segment)
        finally:
            with self._lock:
                for segment in ready:
                    segment.busy = False
        self._retire_surplus()
        return len(ready)

    def _retire_surplus(self) -> None:
        """Remove empty segments beyond `max_segments` (left by a run with a larger log, or with the log on)."""
        with self._lock:
            surplus = len(self._segments) - self.max_segments
            if surplus <= 0:
                return
            empty = [s for s in self._segments if not s.busy and not s.records]
            retired = sorted(empty, key=lambda s: s.path.name, reverse=True)[:surplus]
            for segment in retired:
                self._segments.remove(segment)
        for segment in retired:
            os.close(segment.fd)
            segment.path.unlink(missing_ok=True)
        if retired:
            fsync_path(self.directory)
            log.info("dicom_ingest_segments_retired", segments=len(retired), kept=len(self._segments))

    def _sync_files(self, segments: list[Segment]) -> None:
        """fsync the filed files, then the directories holding their entries (series, study, spool root):
        filing makes them without a sync."""
        series: set[Path] = set()
        for segment in segments:
            for path in segment.files:
                with contextlib.suppress(FileNotFoundError):  # removed since: nothing to keep
                    fsync_path(path)
                    series.add(path.parent)
        studies = {d.parent for d in series}
        for directory in [*series, *studies, *{d.parent for d in studies}]:
            with contextlib.suppress(FileNotFoundError):
                fsync_path(directory)

    def _reset(self, segment: Segment) -> None:
        generation = segment.generation + 1
        _write_segment_header(segment.fd, generation)
        os.fdatasync(segment.fd)
        with self._lock:
            segment.generation = generation
            segment.write_pos = PAGE
            segment.records = segment.filed = 0
            segment.sealed = False
            segment.files.clear()

    def _make_segments(self) -> None:
        """Make every missing segment before the receiver serves (at the first start: 256 MB of zeros by
        default, a few seconds). Made in the background while objects arrived, their write-back held up
        the stores' own syncs for seconds on this kind of disk."""
        while len(self._segments) < self.max_segments:
            index = max((int(s.path.stem[4:]) for s in self._segments), default=-1) + 1
            try:
                segment = self._create_segment(self.directory / f"seg-{index:03d}.log")
            except OSError as exc:  # e.g. the disk is full: fewer segments, and the direct path when none
                log.warning("dicom_ingest_segment_not_created", error=str(exc), segments=len(self._segments))
                return
            self._segments.append(segment)

    def _create_segment(self, path: Path) -> Segment:
        tmp = path.with_suffix(".new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            for offset in range(0, self.segment_bytes, len(_ZERO_CHUNK)):
                write_chunks(fd, (_ZERO_CHUNK[: self.segment_bytes - offset],), offset)
            _write_segment_header(fd, 1)
            os.fsync(fd)
            os.rename(tmp, path)
            fsync_path(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return Segment(path, fd, self.segment_bytes, 1)


def _write_segment_header(fd: int, generation: int) -> None:
    raw = _SEGMENT_MAGIC + struct.pack("<Q", generation)
    header = _SEGMENT_HEADER.pack(_SEGMENT_MAGIC, generation, zlib.crc32(raw))
    write_chunks(fd, (header, _pad(len(header))), 0)


def read_record(ref: RecordRef) -> bytes:
    """A record's payload."""
    return _read_exactly(ref.segment.fd, ref.payload_len, ref.payload_offset)


def _read_exactly(fd: int, count: int, offset: int) -> bytes:
    chunks = []
    while count:
        chunk = os.pread(fd, count, offset)
        if not chunk:
            raise OSError(errno.EIO, "the ingest log ended inside a record")
        chunks.append(chunk)
        offset += len(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def copy_record(ref: RecordRef, fd: int) -> None:
    """Copy a record's payload into `fd` (in the kernel)."""
    _copy_range(ref.segment.fd, ref.payload_offset, ref.payload_len, fd)


def _copy_range(src: int, offset: int, count: int, dst: int) -> None:
    """Copy `count` bytes at `offset` of `src` to `dst` at its file position (which advances)."""
    while count:
        n = os.copy_file_range(src, dst, count, offset)
        if n <= 0:
            raise OSError("copy_file_range copied nothing")
        offset += n
        count -= n


def _meta(relative_path: str) -> bytes:
    meta = relative_path.encode("utf-8")
    if len(meta) > _META_MAX:
        raise ValueError("spool path too long for the ingest log")
    return meta


def _record_header(generation: int, payload_len: int, meta: bytes, digest: int) -> bytes:
    """The 64-byte record header; `digest` (XXH3-64) covers the payload and the meta."""
    head = _RECORD_HEADER.pack(_RECORD_MAGIC, generation, payload_len, len(meta), digest)
    head += struct.pack("<I", zlib.crc32(head))
    return head.ljust(_RECORD_HEADER_SIZE, b"\0")


@dataclass(frozen=True, slots=True)
class _RecordHeader:
    generation: int
    payload_len: int
    meta_len: int
    check: int
    """The digest of payload + meta: XXH3-64, or a CRC-32 in a record written by an earlier version."""
    crc_record: bool

    def checker(self) -> xxhash.xxh3_64 | _Crc32:
        """Computes the check value piece by piece (`update`, `intdigest`), as the header says it was computed."""
        return _Crc32() if self.crc_record else xxhash.xxh3_64()


class _Crc32:
    """A running CRC-32 with the part of xxhash's interface that `_scan` uses."""

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def intdigest(self) -> int:
        return self._crc


def _parse_record_header(head: bytes) -> _RecordHeader | None:
    """The header at the start of `head` (64 bytes read at a record's place), or None where no valid
    record starts (zeros, a voided record, an old generation's bytes torn in half, garbage)."""
    magic = head[:8]
    if magic == _RECORD_MAGIC:
        layout, crc_record = _RECORD_HEADER, False
    elif magic == _CRC_RECORD_MAGIC:
        layout, crc_record = _CRC_RECORD_HEADER, True
    else:
        return None
    (head_crc,) = struct.unpack_from("<I", head, layout.size)
    if head_crc != zlib.crc32(head[: layout.size]):
        return None
    _, generation, payload_len, meta_len, check = layout.unpack_from(head)
    return _RecordHeader(generation, payload_len, meta_len, check, crc_record)


def write_chunks(fd: int, chunks: Sequence[bytes | memoryview], offset: int | None = None) -> None:
    """Write every chunk in order, with as few calls as the kernel allows: at `offset`, or at the file's
    position when None."""
    views = [memoryview(chunk) for chunk in chunks if len(chunk)]
    while views:
        if offset is None:
            written = os.writev(fd, views)
        else:
            written = os.pwritev(fd, views, offset)
            offset += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by its path."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
