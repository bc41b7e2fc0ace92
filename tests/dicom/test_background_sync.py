"""An fdatasync started in the kernel and waited for later (`background_sync`), on a real file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from suite_daemon.dicom import background_sync
from tests.dicom.dicom_harness import ready_spool
from tests.dicom.dicom_testdata import ct_slice, new_study, save

pytestmark = pytest.mark.skipif(not background_sync._pool.available, reason="no native AIO here")


def test_a_started_sync_completes_and_its_context_is_reused(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        started = []
        for i in range(3):
            os.pwrite(fd, b"x" * 9000, i * 9000)
            pending = background_sync.start(fd)
            assert pending is not None
            pending.wait()
            started.append(pending)
        assert len(background_sync._pool._free) >= 1
        with pytest.raises(RuntimeError):
            started[-1].wait()
    finally:
        os.close(fd)


def test_a_sync_that_cannot_start_raises_as_fdatasync_would(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(OSError) as raised:
        background_sync.start(fd)  # closed
    assert raised.value.errno == errno.EBADF  # as fdatasync(fd) gives


def test_without_it_objects_written_ahead_are_synced_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background_sync._pool, "available", False)
    monkeypatch.setattr(background_sync._pool, "_free", [])
    assert background_sync.start(0) is None
    root = tmp_path / "spool"
    spool, _ = ready_spool(root)
    study, series = new_study()
    raw = save(ct_slice(study, series, 0, rows=64, cols=64), tmp_path / "src").read_bytes()
    writer = spool.write_ahead(raw)
    assert writer is not None
    writer.sync_ahead()
    spool.close()
    again, pending = ready_spool(root)
    again.close()
    assert [r.ref.payload_len for r in pending] == [len(raw)]
