"""Durable object files: `spool/<study>/<series>/<sop>.dcm`.

An object is made durable either in the ingest log (`ingest_log.py`; one cheap fdatasync, filed into its
spool file afterwards by `file_record`) or, when the log has no room or the object is large, directly:
temporary file -> fdatasync -> rename -> directory fsync. A large object streamed into its temporary file is
written around the page cache where the file system allows it (`direct_io.DirectAppender`).

Creating a file costs about 0.3 ms on this kind of machine (ext4), as much as an fdatasync: a background
thread keeps a few empty temporary files ready in `spool/.incoming/`.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import mmap
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from suite_daemon.config.models import DIRECT_FILING_SMALLEST_KB
from suite_daemon.dicom.direct_io import DirectAppender, DirectWriter
from suite_daemon.dicom.ingest_log import (
    IngestLog,
    LoggedRecord,
    LogWriter,
    RecordRef,
    copy_record,
    fsync_path,
    write_chunks,
)
from suite_daemon.dicom.part10 import UID_RE
from suite_daemon.dicom.writeback import EarlyWriteback

_TMP_SUFFIX = ".tmp"
_POOL_SIZE = 8
_FREE_SPACE_TTL_S = 0.25
_LOCK_WAIT_S = 30.0
DIRECT_FILING_SMALLEST = DIRECT_FILING_SMALLEST_KB * 1024
"""The least `direct_filing_min` other than 0: smaller objects are filed by the storing thread right after its
answer, where a direct write's wait for the disk would hold up the next object."""
_TMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC  # read too: see `SpoolStream.data_view`


class Spool:
    def __init__(self, root: Path, ingest_log_bytes: int = 0, direct_filing_min: int = 0) -> None:
        """`direct_filing_min` (`dicom.direct_filing_min_kb`): logged objects of this size or more are filed
        around the page cache (`direct_io.py`), so that their spool copies go to the disk during a burst;
        0: every logged object is filed through the page cache, and its copy reaches the disk with the next
        checkpoint (docs/performance.md, "Filing through the page cache again")."""
        self.root = root
        if 0 < direct_filing_min < DIRECT_FILING_SMALLEST:  # the config refuses it too
            raise ValueError(f"direct_filing_min is 0 or at least {DIRECT_FILING_SMALLEST} bytes")
        self._direct_min = direct_filing_min
        self._root_prefix = f"{root}/"
        self.incoming = root / ".incoming"
        self.log = IngestLog(root / ".ingest", ingest_log_bytes)
        self._synced_dirs: set[Path] = set()
        self._lock_fd: int | None = None
        self._free_mb = 0.0
        self._free_read_at = -1e9
        self._written_lock = threading.Lock()
        self._written_since = 0
        self._made_dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()
        self._pool: collections.deque[tuple[Path, int]] = collections.deque()
        self._low = threading.Event()
        """Set when the pool runs low: the filler then tops it up in one go (one wake-up per few stores)."""
        self._names = itertools.count()
        self._stop = threading.Event()
        self._filler: threading.Thread | None = None
        self._direct = DirectWriter()

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        for uid in (study_uid, series_uid, sop_uid):
            if not UID_RE.fullmatch(uid) or len(uid) > 64:
                raise ValueError(f"{uid!r} is not a valid UID")
        return Path(f"{self._root_prefix}{study_uid}/{series_uid}/{sop_uid}.dcm")  # one parse, not three joins

    def relative(self, path: Path) -> str:
        text = str(path)
        if text.startswith(self._root_prefix):
            return text[len(self._root_prefix) :]
        return str(path.relative_to(self.root))

    def from_relative(self, relative: str) -> Path:
        """The spool path a log record names (checked: UIDs only, inside the spool)."""
        parts = relative.split("/")
        if len(parts) != 3 or not parts[2].endswith(".dcm"):
            raise ValueError(f"{relative!r} is not a spool path")
        return self.path_for(parts[0], parts[1], parts[2][: -len(".dcm")])

    def prepare(self) -> list[LoggedRecord]:
        """Create the spool root durably, drop temporary files a crash left behind, start the file pool.

        Returns the ingest log's records, whose objects may not be filed yet (`file_record` each, then
        `checkpoint(idle=True)`)."""
        self._ensure_dir(self.root)
        self._lock_spool()
        try:
            self.incoming.mkdir(exist_ok=True)
            for tmp in self.root.rglob(f"*{_TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)
            pending = self.log.open()
        except BaseException:
            self._unlock_spool()
            raise
        self._stop.clear()
        self._low.set()
        self._filler = threading.Thread(target=self._fill, name="dicom-spool-pool", daemon=True)
        self._filler.start()
        return pending

    def _lock_spool(self) -> None:
        """One receiver per spool. A receiver process left over from a daemon killed with SIGKILL stops by
        itself (its socket to the daemon closed), finishing its associations first: wait for it."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise OSError(f"the spool {self.root} is in use by another receiver") from None
                time.sleep(0.1)
        self._lock_fd = fd

    def close(self) -> None:
        self.log.close()
        self._stop.set()
        self._low.set()
        if self._filler is not None:
            self._filler.join(5)
        while self._pool:
            path, fd = self._pool.popleft()
            os.close(fd)
            path.unlink(missing_ok=True)
        self._unlock_spool()

    def _unlock_spool(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _fill(self) -> None:
        while not self._stop.is_set():
            self._low.wait()
            self._low.clear()
            while len(self._pool) < _POOL_SIZE and not self._stop.is_set():
                try:
                    self._pool.append(self._new_temp_file())
                except OSError:  # e.g. disk full: stores create their own file (and report the error)
                    self._stop.wait(1.0)
                    break

    def _new_temp_file(self) -> tuple[Path, int]:
        path = self.incoming / f"{os.getpid()}-{next(self._names)}{_TMP_SUFFIX}"
        return path, os.open(path, _TMP_FLAGS, 0o640)

    def _temp_file(self) -> tuple[Path, int]:
        try:
            item = self._pool.popleft()
        except IndexError:
            item = None
        if len(self._pool) <= _POOL_SIZE // 2 and not self._low.is_set():
            self._low.set()
        return item if item is not None else self._new_temp_file()

    def free_mb(self) -> float:
        """Free space, read at most every `_FREE_SPACE_TTL_S` (statvfs takes 10-30 us, more when the disk
        is busy; minus what was written since, so a burst cannot overshoot the threshold)."""
        with self._written_lock:
            now = time.monotonic()
            if now - self._free_read_at > _FREE_SPACE_TTL_S:
                # statvfs under the lock: bytes counted while it runs are not reset away, and a slower
                # thread's older reading cannot replace a newer one.
                st = os.statvfs(self.root)
                self._free_mb = st.f_bavail * st.f_frsize / (1024 * 1024)
                self._free_read_at = now
                self._written_since = 0
            return self._free_mb - self._written_since / (1024 * 1024)

    def count_written(self, nbytes: int) -> None:
        with self._written_lock:  # several associations' threads at once
            self._written_since += nbytes

    def write(self, path: Path, *chunks: bytes | memoryview) -> RecordRef | None:
        """Make the object `chunks` durable for `path`: in the ingest log (returns its record, to be filed
        with `file_record`) or, failing that, in `path` itself (returns None)."""
        writer = self.log.writer()
        if writer is not None:
            ref = writer.write_whole(chunks, self.relative(path))
            if ref is not None:
                return ref
            writer.abandon()
        self._write_file(path, chunks)
        return None

    def write_ahead(self, *chunks: bytes | memoryview) -> LogWriter | None:
        """Write an object into the ingest log before it is checked (`LogWriter.write_ahead`): the writer
        holding the record, or None (nothing written) when the log has no room for it."""
        writer = self.log.writer()
        if writer is None:
            return None
        if not writer.write_ahead(chunks):
            writer.abandon()
            return None
        return writer

    def seal_ahead(self, stream: SpoolStream) -> LogWriter | None:
        """`write_ahead` for an object streamed into the ingest log: its record sealed (no path) and its
        write-back started. None (nothing done) for a stream that is not in the log or failed."""
        writer = stream.writer
        if writer is None or stream.error is not None:
            return None
        writer.seal_ahead()
        return writer

    def _write_file(self, path: Path, chunks: tuple[bytes | memoryview, ...]) -> None:
        directory = path.parent
        self._ensure_dir(directory)
        tmp, fd = self._temp_file()
        try:
            write_chunks(fd, chunks)
            os.fdatasync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        os.rename(tmp, path)
        fsync_path(directory)

    def open_stream(self, head: bytes) -> SpoolStream:
        """Somewhere to write the object while its data set is still arriving: the ingest log, moving to a
        temporary spool file if it outgrows the log."""
        stream = SpoolStream(self, self.log.writer())
        stream.feed(head)
        stream.head_len = len(head)
        return stream

    def commit(self, stream: SpoolStream, path: Path) -> RecordRef | None:
        """Make the streamed object durable for `path` (as `write` does)."""
        if stream.writer is not None:
            try:
                stream.wait()
                ref = stream.writer.commit(self.relative(path))
            except BaseException:
                stream.discard()
                raise
            stream.committed = True
            return ref
        directory = path.parent
        self._ensure_dir(directory)
        try:
            stream.wait()
            os.fdatasync(stream.fd)
        except BaseException:
            stream.discard()
            raise
        stream.close()
        assert stream.path is not None  # a stream out of the log has its temporary file
        os.rename(stream.path, path)
        stream.committed = True
        fsync_path(directory)
        return None

    def file_record(self, ref: RecordRef, path: Path) -> None:
        """Copy a logged object into its spool file, in place: no temporary name is needed, because until
        `checkpoint` has synced it, the log still holds the object and a restart files it again. (The
        pipeline hears of an object only once it is filed.) A file that is already there (filed before a
        crash, maybe announced and being read) is replaced whole by a rename, never truncated under a reader."""
        self._ensure_dir(path.parent, sync=False)
        try:
            self._copy_record(ref, path, exclusive=True)  # no `exists()` first: one system call less per object
        except FileExistsError:
            tmp, fd = self._temp_file()  # a `.tmp` name: `prepare` drops it if a crash leaves it behind
            os.close(fd)
            try:
                self._copy_record(ref, tmp, exclusive=False)
                os.rename(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        self.log.filed(ref, path)

    def _copy_record(self, ref: RecordRef, path: Path, exclusive: bool) -> None:
        direct = 0 < self._direct_min <= ref.payload_len and self._direct.write_file(
            path, ref.segment.fd, ref.payload_offset, ref.payload_len, exclusive
        )
        if not direct:
            create = os.O_EXCL if exclusive else os.O_TRUNC
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | create | os.O_CLOEXEC, 0o640)
            try:
                copy_record(ref, fd)
            finally:
                os.close(fd)

    def checkpoint(self, idle: bool) -> int:
        return self.log.checkpoint(idle)

    def files(self) -> Iterator[Path]:
        yield from self.root.glob("*/*/*.dcm")

    def _ensure_dir(self, directory: Path, sync: bool = True) -> None:
        if directory in self._synced_dirs:
            return
        if not sync:
            if directory not in self._made_dirs:
                directory.mkdir(parents=True, exist_ok=True)  # made durable by the next checkpoint
                if len(self._made_dirs) > 10_000:
                    self._made_dirs.clear()
                self._made_dirs.add(directory)
            return
        with self._dirs_lock:
            directory.mkdir(parents=True, exist_ok=True)
            # Every entry on the way down from the spool's parent, also those filing made without a sync.
            d = directory
            while True:
                fsync_path(d.parent)
                if d == self.root or self.root not in d.parents:
                    break
                d = d.parent
            if len(self._synced_dirs) > 10_000:
                self._synced_dirs.clear()
            self._synced_dirs.add(directory)


class SpoolStream:
    """An object written chunk by chunk while its data set arrives (by the DUL thread): into the ingest log
    while it fits, else into a temporary spool file (with `O_DIRECT` where it can: a 7.5 MB XA run copied
    into new page-cache pages cost 2.5 to 22 ms of CPU here, depending on how lately the machine had freed
    memory; see docs/performance.md, "Fresh pages")."""

    def __init__(self, spool: Spool, writer: LogWriter | None) -> None:
        self._spool = spool
        self.writer = writer
        self.path: Path | None = None
        self.fd = -1
        self.error: OSError | None = None
        self.committed = False
        self.head_len = 0
        """The Part 10 head fed first; the data set follows it."""
        self._closed = False
        self._writeback: EarlyWriteback | None = None
        self._direct: DirectAppender | None = None
        """A temporary spool file written around the page cache (`direct_io.py`), until `wait`."""
        self._written_direct = False

    def feed(self, chunk: bytes | memoryview) -> None:
        if self.error is not None:
            return
        try:
            if self.writer is not None:
                if self.writer.feed(chunk):
                    return
                self._leave_log()
            elif self.fd < 0:
                self._to_file()
            if self._direct is not None:
                self._direct.append(chunk)
                return
            write_chunks(self.fd, (chunk,))
            if self._writeback is not None:
                self._writeback.appended(len(chunk))
        except OSError as exc:  # e.g. disk full: reported when the store is answered
            self.error = exc

    def _leave_log(self) -> None:
        assert self.writer is not None
        writer, self.writer = self.writer, None
        try:
            self._to_file()
            if self._direct is not None:
                with writer.payload_view(0) as logged:
                    self._direct.append(logged)
            else:
                writer.copy_payload_to(self.fd)
                self._writeback = EarlyWriteback(self.fd, 0, writer.written)
        finally:
            writer.abandon()

    def _to_file(self) -> None:
        self.path, self.fd = self._spool._temp_file()
        self._direct = DirectAppender.open(self.path, self.fd, self._spool._direct)
        self._written_direct = self._direct is not None
        if self._direct is None:
            self._writeback = EarlyWriteback(self.fd, 0, 0)

    def wait(self) -> None:
        """Finish writing; raise the first write error, if any."""
        if self._direct is not None and self.error is None:
            direct, self._direct = self._direct, None
            try:
                direct.finish()
            except OSError as exc:
                self.error = exc
        if self.error is not None:
            raise self.error

    def data_view(self) -> memoryview:
        """The data set as written so far, without copying it (it is read from the page cache through a
        read-only mapping, unmapped once the view is released). Raises the first write error."""
        self.wait()
        if self.writer is not None:
            return self.writer.payload_view(self.head_len)
        mapping = mmap.mmap(self.fd, 0, prot=mmap.PROT_READ)
        if self._written_direct:
            # Not in the page cache: read only the pages the header pass touches (a first touch read ahead
            # 2-5 ms of a 7.5 MB run).
            mapping.madvise(mmap.MADV_RANDOM)
        return memoryview(mapping)[self.head_len :]

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        if not self._closed:
            self._closed = True
            if self.writer is not None and not self.committed:
                self.writer.abandon()
            if self.fd >= 0:
                os.close(self.fd)

    def discard(self) -> None:
        self.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
