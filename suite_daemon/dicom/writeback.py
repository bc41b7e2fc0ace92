"""Starting the write-back of a data set while the rest of it still arrives (`sync_file_range`).

A data set that comes in several PDUs is written as it arrives; the store's `fdatasync` at the end then
waits for the whole data set to reach the disk. Started chunk by chunk instead, the disk writes while
the next PDUs come in, and the final sync waits only for the last chunk. Each call hands I/O to the
disk, which on this project's virtual machine costs about 35 us of the receiving thread (a notification
to the host); so it is made once per MiB or more. (Every 64 KiB until 2026-11-29: five calls per 0.5 MB
CT slice, about 170 us. Since, a CT slice's write-back starts when its record is sealed, ahead of the
store's checks; medians of 535 against 503 and 504 slices/s in two sets of alternating rounds, faster in
5 of 8 and 4 of 6 rounds.)
Only a hint: without `sync_file_range` (not Linux) or when the call fails, the final sync does all the
work, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

PAGE = 4096
MIN_BYTES = 1024 * 1024
"""Started in steps of at least this much (each call costs about 35 us here, see above)."""
_SYNC_FILE_RANGE_WRITE = 2


def page_ceil(n: int) -> int:
    """`n` rounded up to a whole number of pages."""
    return (n + PAGE - 1) & ~(PAGE - 1)


def _load() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load() if os.uname().sysname == "Linux" else None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing `length` bytes at `offset` out to the disk, without waiting (a hint, as above)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class EarlyWriteback:
    """Follows one file region as it is appended to, and starts the write-back of its whole pages."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        """The region starts at `start`; everything before `end` is written already."""
        self.fd = fd
        self._started = start & ~(PAGE - 1)
        self._end = end

    def appended(self, nbytes: int) -> None:
        """`nbytes` more were written at the region's end."""
        self._end += nbytes
        whole = self._end & ~(PAGE - 1)
        if whole - self._started < MIN_BYTES:
            return
        start_writeback(self.fd, self._started, whole - self._started)
        self._started = whole
