"""Re-filing and free-space counting at their edges: a first filing in place and a re-filing by rename; what a
failed re-filing leaves; and the bytes counted for the free-space estimate while other threads read it.

(`test_spool_refiling.py` covers a reader of the old file and a garbled file being replaced.)"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from suite_daemon.dicom import spool as spool_module
from suite_daemon.dicom.ingest_log import RecordRef, copy_record
from suite_daemon.dicom.spool import _TMP_SUFFIX, Spool
from tests.dicom.dicom_harness import FILING_SIZES, ready_spool

MIB = 1024 * 1024
_STATVFS = os.statvfs_result((4096, 4096, 0, 0, 256 * 1024, 0, 0, 0, 0, 255))
"""1024 MiB free."""


def _logged(spool: Spool, sop: str, data: bytes) -> tuple[RecordRef, Path]:
    path = spool.path_for("1.2.3", "1.2.3.4", sop)
    ref = spool.write(path, data)
    assert ref is not None
    return ref, path


def _leftovers(root: Path) -> list[Path]:
    """Temporary files with bytes in them (the pool's are empty)."""
    return [p for p in root.rglob(f"*{_TMP_SUFFIX}") if p.stat().st_size > 0]


@pytest.mark.parametrize(("size", "direct_min"), FILING_SIZES)
def test_a_first_filing_writes_in_place_and_a_refiling_renames_a_name_prepare_drops(
    tmp_path: Path, size: int, direct_min: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "spool"
    renames: list[tuple[Path, Path, bool]] = []
    rename = os.rename

    def recording_rename(src: Path, dst: Path) -> None:
        if Path(dst).suffix == ".dcm":  # not the ingest log's segments
            renames.append((Path(src), Path(dst), Path(src) in set(root.rglob(f"*{_TMP_SUFFIX}"))))
        rename(src, dst)

    monkeypatch.setattr(os, "rename", recording_rename)
    spool, _ = ready_spool(root, direct_filing_min=direct_min)
    data = os.urandom(size)
    try:
        ref, path = _logged(spool, "1.2.3.4.7", data)
        spool.file_record(ref, path)
        assert renames == []
        assert path.read_bytes() == data
    finally:
        spool.close()  # as a crash before the checkpoint leaves it: filed, and still in the log

    again, [record] = ready_spool(root, direct_filing_min=direct_min)
    try:
        assert again.from_relative(record.relative_path) == path
        again.file_record(record.ref, path)
        [(src, dst, cleaned_by_prepare)] = renames
        assert dst == path and cleaned_by_prepare
        assert not src.exists()
        assert path.read_bytes() == data
        assert record.ref.segment.files == [path]  # synced by the checkpoint
        assert again.checkpoint(idle=True) >= 1
    finally:
        again.close()


@pytest.mark.parametrize(("size", "direct_min"), FILING_SIZES)
@pytest.mark.parametrize("failing", ["copy", "rename"])
def test_a_failed_refiling_leaves_the_file_there_and_no_temporary_file(
    tmp_path: Path, size: int, direct_min: int, failing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, direct_filing_min=direct_min)
    try:
        data, there = os.urandom(size), os.urandom(size)
        ref, path = _logged(spool, "1.2.3.4.8", data)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(there)
        filed = ref.segment.filed

        def disk_full(*_: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def after(real: Callable[..., object]) -> Callable[..., object]:
            def written_then_full(*args: object) -> object:
                real(*args)
                disk_full()
                return None

            return written_then_full

        with monkeypatch.context() as patched:
            if failing == "rename":
                patched.setattr(os, "rename", disk_full)
            elif direct_min and size >= direct_min:
                patched.setattr(spool._direct, "write_file", after(spool._direct.write_file))
            else:
                patched.setattr(spool_module, "copy_record", after(copy_record))
            with pytest.raises(OSError, match="No space"):
                spool.file_record(ref, path)
        assert path.read_bytes() == there
        assert _leftovers(root) == []
        assert ref.segment.filed == filed  # still only in the log: filed on the next try

        spool.file_record(ref, path)
        assert path.read_bytes() == data
        assert _leftovers(root) == []
    finally:
        spool.close()


def test_bytes_counted_while_free_space_is_read_are_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool, _ = ready_spool(tmp_path / "spool")
    try:
        monkeypatch.setattr(spool_module, "_FREE_SPACE_TTL_S", 3600.0)
        counter = threading.Thread(target=spool.count_written, args=(3 * MIB,))

        def slow_statvfs(path: object) -> os.statvfs_result:
            counter.start()
            counter.join(0.1)  # an object stored meanwhile on another association
            return _STATVFS

        monkeypatch.setattr(os, "statvfs", slow_statvfs)
        spool._free_read_at = -1e9
        assert spool.free_mb() == 1024.0  # the count waited for the reading
        counter.join()
        assert spool.free_mb() == 1021.0
    finally:
        spool.close()


def test_bytes_counted_on_many_threads_while_others_read_free_space_all_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool, _ = ready_spool(tmp_path / "spool")
    try:
        monkeypatch.setattr(spool_module, "_FREE_SPACE_TTL_S", 3600.0)
        monkeypatch.setattr(os, "statvfs", lambda _: _STATVFS)
        spool._free_read_at = -1e9
        before = spool.free_mb()
        stop = threading.Event()

        def count() -> None:
            for _ in range(10_000):
                spool.count_written(1024)

        def read() -> None:
            while not stop.is_set():
                spool.free_mb()

        readers = [threading.Thread(target=read) for _ in range(2)]
        counters = [threading.Thread(target=count) for _ in range(8)]
        for thread in readers + counters:
            thread.start()
        for thread in counters:
            thread.join()
        stop.set()
        for thread in readers:
            thread.join()
        assert spool.free_mb() == before - 8 * 10_000 * 1024 / MIB
    finally:
        spool.close()
