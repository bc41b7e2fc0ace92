"""Filing a logged object again (after a crash, or the filer's retry) over a file that is already there."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.dicom.dicom_harness import FILING_SIZES, ready_spool


@pytest.mark.parametrize(("size", "direct_min"), FILING_SIZES)
def test_a_file_being_read_is_replaced_whole_never_rewritten_in_place(
    tmp_path: Path, size: int, direct_min: int
) -> None:
    """A consumer reading the file while the object is filed again goes on reading the file it opened, whole
    (here its bytes differ from the record's, so a rewrite in place would show)."""
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, direct_filing_min=direct_min)
    try:
        path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.5")
        logged, there = os.urandom(size), os.urandom(size)
        ref = spool.write(path, logged)
        assert ref is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(there)
        with path.open("rb") as reader:
            first = reader.read(100)
            spool.file_record(ref, path)
            assert first + reader.read() == there
        assert path.read_bytes() == logged
        assert all(p.stat().st_size == 0 for p in spool.incoming.iterdir())  # only the pool's empty files
    finally:
        spool.close()


@pytest.mark.parametrize(("size", "direct_min"), FILING_SIZES)
def test_a_short_or_garbled_file_is_replaced_by_the_logged_bytes(tmp_path: Path, size: int, direct_min: int) -> None:
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, direct_filing_min=direct_min)
    try:
        path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.6")
        data = os.urandom(size)
        ref = spool.write(path, data)
        assert ref is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * (size // 3))  # what a power loss may leave of an unsynced filing
        spool.file_record(ref, path)
        assert path.read_bytes() == data
    finally:
        spool.close()


def test_bytes_counted_from_many_threads_at_once_all_count(tmp_path: Path) -> None:
    spool, _ = ready_spool(tmp_path / "spool")
    try:

        def count() -> None:
            for _ in range(10_000):
                spool.count_written(1024)

        threads = [threading.Thread(target=count) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert spool._written_since == 8 * 10_000 * 1024
    finally:
        spool.close()
