"""Writing a large spool file around the page cache (`O_DIRECT`).

A buffered write puts every byte into a page-cache page the kernel must first allocate, and the spool's
files are written once and seldom read again. On this project's virtual machine a page the guest has not
touched lately costs the host a fault, so filing a 0.5 MB CT slice into new page-cache pages took about
1.3 ms of CPU (370 MB/s), in the thread that shares the second core with the sender. Written directly, the
disk reads the bytes from one reused buffer: about 0.12 ms of CPU. The file's size and blocks are made
durable later by the checkpoint's fsync, as for a buffered file.

File systems without `O_DIRECT` (or refusing this alignment) make `write_file` return False: the caller
then writes the file as before.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from suite_daemon.dicom.ingest_log import write_chunks
from suite_daemon.dicom.writeback import PAGE

ALIGN = PAGE
"""Buffer address, file offset and length of every direct write: the largest logical block in use."""


class DirectWriter:
    """Writes files from a range of another file through one aligned buffer per thread."""

    def __init__(self) -> None:
        self.supported = True
        self._local = threading.local()
        self._spare_stages: list[tuple[mmap.mmap, mmap.mmap]] = []
        self._stages_lock = threading.Lock()

    def write_file(
        self, path: os.PathLike[str] | str, src_fd: int, offset: int, length: int, exclusive: bool = False
    ) -> bool:
        """Create (or truncate; with `exclusive`, FileExistsError if it exists) `path` holding `length` bytes of
        `src_fd` from `offset`. Returns False, having written nothing that stays, when the file system takes no
        direct writes."""
        if not self.supported:
            return False
        view = self._buffer(length)  # only whole pages are written from it directly: no padding
        try:
            _read_exactly(src_fd, view[:length], offset)
            try:
                create = os.O_EXCL if exclusive else os.O_TRUNC
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | create | os.O_CLOEXEC | os.O_DIRECT, 0o640)
            except OSError as exc:
                return self._refused(exc)
            try:
                whole = length & ~(ALIGN - 1)
                if whole:
                    write_chunks(fd, (view[:whole],), 0)
                if length > whole:
                    _write_tail(fd, view[whole:length], whole)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                return self._refused(exc)
            finally:
                os.close(fd)
        finally:
            view.release()
        return True

    def _refused(self, exc: OSError) -> bool:
        if exc.errno != errno.EINVAL:
            raise exc
        self.supported = False
        return False

    def take_stages(self) -> tuple[mmap.mmap, mmap.mmap]:
        """Staging buffers for one `DirectAppender`, its own until `give_back_stages`. Reused (their pages
        stay warm), and never shared: a stream finished on another thread while the next one is already
        being written must not have its last bytes overwritten."""
        with self._stages_lock:
            if self._spare_stages:
                return self._spare_stages.pop()
        return (mmap.mmap(-1, STAGE_BYTES), mmap.mmap(-1, STAGE_BYTES))

    def give_back_stages(self, stages: tuple[mmap.mmap, mmap.mmap]) -> None:
        with self._stages_lock:
            if len(self._spare_stages) < _SPARE_STAGES_MAX:
                self._spare_stages.append(stages)
                return
        for stage in stages:
            stage.close()

    def _buffer(self, size: int) -> memoryview:
        buffer: mmap.mmap | None = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) < size:
            if buffer is not None:
                buffer.close()
            buffer = mmap.mmap(-1, max(size, 1024 * 1024))  # page-aligned, and reused: its pages stay warm
            self._local.buffer = buffer
        return memoryview(buffer)


def _write_tail(fd: int, tail: memoryview, offset: int) -> None:
    """Write a file's last partial page through the page cache (`O_DIRECT` taken off `fd` first). Written
    directly, it would be padded to a whole page and the file then cut to its size, and cutting a file
    inside a page written around the cache reads that page back from the disk first: about 115 us, and
    a read in the disk's queue, per object here."""
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
    write_chunks(fd, (tail,), offset)


def _read_exactly(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, "short read from the ingest log")
        done += n


STAGE_BYTES = 1024 * 1024
"""What `DirectAppender` gathers before each direct write."""
_SPARE_STAGES_MAX = 8
"""Staging buffer pairs kept for reuse (one per association streaming at once, by default at most 8)."""
_WRITERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dicom-direct-io")
"""Direct writes wait for the disk: they run here while the receiving thread gathers the next MiB."""


class DirectAppender:
    """Appends to a file that is being written from its start, around the page cache: the bytes are gathered in
    two reused, page-aligned buffers in turn, each written with `O_DIRECT` when full (by a helper thread, while
    the other fills); `finish` writes the rest, its last partial page through `fd` (see `_write_tail`). Where
    a direct write is refused (EINVAL), the rest goes through `fd`."""

    def __init__(self, direct_fd: int, fd: int, writer: DirectWriter) -> None:
        self._direct_fd = direct_fd
        self._fd = fd
        self._writer = writer
        try:
            stages = writer.take_stages()
        except BaseException:
            os.close(direct_fd)
            raise
        self._stages: tuple[mmap.mmap, mmap.mmap] | None = stages
        self._stage = stages[0]
        self._filled = 0
        self._offset = 0
        self._writing: Future[None] | None = None

    @classmethod
    def open(cls, path: os.PathLike[str] | str, fd: int, writer: DirectWriter) -> DirectAppender | None:
        """None where the file system takes no direct writes."""
        if not writer.supported:
            return None
        try:
            direct_fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_DIRECT)
        except OSError as exc:
            writer._refused(exc)
            return None
        return cls(direct_fd, fd, writer)

    def append(self, chunk: bytes | memoryview) -> None:
        stages = self._stages
        assert stages is not None, "appended after close"
        with memoryview(chunk) as view:
            done = 0
            while done < len(view):
                n = min(len(view) - done, STAGE_BYTES - self._filled)
                self._stage[self._filled : self._filled + n] = view[done : done + n]
                self._filled += n
                done += n
                if self._filled == STAGE_BYTES:
                    self._wait()
                    self._writing = _WRITERS.submit(self._write, self._stage, STAGE_BYTES, self._offset)
                    self._offset += STAGE_BYTES
                    self._stage = stages[1] if self._stage is stages[0] else stages[0]
                    self._filled = 0

    def finish(self) -> None:
        """Write what is left (its last partial page through the page cache); the appender is closed after."""
        try:
            self._wait()
            whole = self._filled & ~(ALIGN - 1)
            if whole:
                self._write(self._stage, whole, self._offset)
            if self._filled > whole:
                with memoryview(self._stage) as view:
                    write_chunks(self._fd, (view[whole : self._filled],), self._offset + whole)
        finally:
            self.close()

    def close(self) -> None:
        """Stop; a write under way is waited for (its buffer is reused next)."""
        if self._writing is not None:
            self._writing.exception()
            self._writing = None
        if self._direct_fd >= 0 and self._direct_fd != self._fd:
            os.close(self._direct_fd)
        self._direct_fd = -1
        if self._stages is not None:
            self._writer.give_back_stages(self._stages)
            self._stages = None

    def _wait(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _write(self, stage: mmap.mmap, length: int, offset: int) -> None:
        with memoryview(stage) as view:
            try:
                write_chunks(self._direct_fd, (view[:length],), offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL or self._direct_fd == self._fd:
                    raise
                os.close(self._direct_fd)
                self._direct_fd = self._fd  # refused after all: this stage and the rest through the page cache
                write_chunks(self._fd, (view[:length],), offset)
