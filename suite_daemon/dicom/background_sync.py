"""An `fdatasync` started now and waited for later: Linux native AIO (`IOCB_CMD_FDSYNC`).

A store writes a small object into the ingest log before it checks it (`store.py`, `_write_ahead`); the sync
that must end before the answer is then started at once and runs in a kernel worker while this thread
checks the object, summarises it and looks for a stored copy. `sync_file_range` could only start the data
write (about 80 us of a 9 KB object's 250 us sync here); this also overlaps the disk cache flush that
follows it. The `sched_yield` after submitting lets the kernel worker, queued on this CPU, submit the write
before the checks take the CPU. No threads of ours and no GIL are involved (ctypes releases it while the
thread waits).

Where native AIO is missing (not Linux, an architecture not listed, a seccomp filter, `aio-max-nr`
reached, a file system without AIO fsync), `start` returns None and the caller syncs as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import sys
import threading
from typing import Any

import structlog

log = structlog.get_logger()

_SYSCALLS = {
    # io_setup, io_destroy, io_getevents, io_submit
    "x86_64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
    "riscv64": (0, 1, 4, 2),
}
_IOCB_CMD_FDSYNC = 3
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP})


class _Iocb(ctypes.Structure):
    _fields_ = [  # struct iocb, little-endian layout (aio_key before aio_rw_flags)
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


def _load() -> tuple[Any, tuple[int, int, int, int]] | None:
    numbers = _SYSCALLS.get(platform.machine())
    if os.uname().sysname != "Linux" or numbers is None or ctypes.sizeof(_Iocb) != 64 or sys.byteorder != "little":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    return syscall, numbers


_loaded = _load()


class _Context:
    """An AIO context with room for one request, used by one store at a time."""

    def __init__(self) -> None:
        assert _loaded is not None
        syscall, (setup, _, _, _) = _loaded
        self.id = ctypes.c_ulong(0)
        if syscall(setup, ctypes.c_uint(1), ctypes.byref(self.id)) != 0:
            raise OSError(ctypes.get_errno(), "io_setup")
        self.iocb = _Iocb(aio_lio_opcode=_IOCB_CMD_FDSYNC)
        self.iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(self.iocb))
        self.event = _IoEvent()

    def submit(self, fd: int) -> None:
        assert _loaded is not None
        syscall, (_, _, _, submit) = _loaded
        self.iocb.aio_fildes = fd
        if syscall(submit, self.id, ctypes.c_long(1), self.iocbs) != 1:
            raise OSError(ctypes.get_errno(), "io_submit")

    def reap(self) -> int:
        """Wait for the request's completion; its result (0, or minus an errno)."""
        assert _loaded is not None
        syscall, (_, _, getevents, _) = _loaded
        while syscall(getevents, self.id, ctypes.c_long(1), ctypes.c_long(1), ctypes.byref(self.event), None) != 1:
            err = ctypes.get_errno()
            if err != errno.EINTR:
                raise OSError(err, "io_getevents")
        return int(self.event.res)


class PendingSync:
    """An `fdatasync` under way; `wait` for it exactly once."""

    def __init__(self, context: _Context) -> None:
        self._context: _Context | None = context

    def wait(self) -> None:
        """Returns once the data are durable; raises OSError as `fdatasync` would."""
        context, self._context = self._context, None
        if context is None:
            raise RuntimeError("waited for twice")
        result = context.reap()  # if this raises, the context is not given back: its request may be pending
        _pool.give_back(context)
        if result < 0:
            raise OSError(-result, os.strerror(-result))


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[_Context] = []
        self.available = _loaded is not None

    def take(self) -> _Context | None:
        with self._lock:
            if self._free:
                return self._free.pop()
            if not self.available:
                return None
        try:
            return _Context()
        except OSError as exc:
            self._unavailable("io_setup", exc)
            return None

    def give_back(self, context: _Context) -> None:
        with self._lock:
            self._free.append(context)

    def _unavailable(self, call: str, exc: OSError) -> None:
        with self._lock:
            was, self.available = self.available, False
        if was:
            log.info("dicom_background_sync_unavailable", call=call, error=exc.strerror)


_pool = _Pool()


def start(fd: int) -> PendingSync | None:
    """Start `fdatasync(fd)`; None when it cannot be started this way (sync as usual then)."""
    context = _pool.take()
    if context is None:
        return None
    try:
        context.submit(fd)
    except OSError as exc:
        _pool.give_back(context)
        if exc.errno == errno.EAGAIN:  # the kernel is short of resources now: sync as usual this time
            return None
        if exc.errno in _UNSUPPORTED:
            _pool._unavailable("io_submit", exc)
            return None
        raise
    os.sched_yield()
    return PendingSync(context)
