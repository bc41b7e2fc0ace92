"""Durable object files: `spool/<study>/<series>/<sop>.dcm`, written tmp -> fdatasync -> rename -> dir fsync."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from suite_daemon.dicom.part10 import UID_RE

_TMP_SUFFIX = ".tmp"


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._synced_dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        for uid in (study_uid, series_uid, sop_uid):
            if not UID_RE.fullmatch(uid) or len(uid) > 64:
                raise ValueError(f"{uid!r} is not a valid UID")
        return self.root / study_uid / series_uid / f"{sop_uid}.dcm"

    def prepare(self) -> None:
        """Create the spool root durably and drop temporary files a crash left behind."""
        self._ensure_dir(self.root)
        for tmp in self.root.rglob(f"*{_TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)

    def free_mb(self) -> float:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize / (1024 * 1024)

    def write(self, path: Path, *chunks: bytes | memoryview) -> None:
        """Make `path` hold `chunks`, durably: it is complete and on disk when this returns."""
        directory = path.parent
        self._ensure_dir(directory)
        tmp = directory / f".{path.name}.{threading.get_ident()}{_TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            _write_all(fd, chunks)
            os.fdatasync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.rename(tmp, path)
        _fsync_dir(directory)

    def files(self) -> Iterator[Path]:
        yield from self.root.glob("*/*/*.dcm")

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._synced_dirs:
            return
        with self._dirs_lock:
            missing: list[Path] = []
            d = directory
            while not d.exists():
                missing.append(d)
                d = d.parent
            for d in reversed(missing):
                d.mkdir(exist_ok=True)
                _fsync_dir(d.parent)
            if len(self._synced_dirs) > 10_000:
                self._synced_dirs.clear()
            self._synced_dirs.add(directory)


def _write_all(fd: int, chunks: tuple[bytes | memoryview, ...]) -> None:
    views = [memoryview(c) for c in chunks if len(c)]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
