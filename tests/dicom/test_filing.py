"""The filer on a real file system: an object it cannot file yet stays durable in the ingest log, unannounced,
and is filed and announced once it can be (on a later try, or at the next start)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from suite_daemon.dicom.filing import Filer
from suite_daemon.dicom.index import InstanceIndex, StoredInstance
from suite_daemon.dicom.part10 import dataset_offset
from suite_daemon.dicom.spool import Spool
from tests.dicom.dicom_harness import ready_spool
from tests.dicom.dicom_testdata import ct_slice, new_study, save

LOG_BYTES = 32 * 1024 * 1024


class _Announced:
    def __init__(self) -> None:
        self.uids: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, stored: list[StoredInstance], duplicates: list[tuple[dict[str, Any], Path]]) -> None:
        with self.changed:
            self.uids.extend(s.sop_instance_uid for s in stored)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[str]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.uids) >= count, timeout_s), self.uids
            return list(self.uids)


def _store(spool: Spool, filer: Filer, tmp_path: Path, study: str, series: str, index: int) -> tuple[str, Path, bytes]:
    """Make a CT slice durable in the log and hand it to the filer, as a C-STORE does before answering."""
    ds = ct_slice(study, series, index, rows=64, cols=64)
    raw = save(ds, tmp_path / "src").read_bytes()
    cut = dataset_offset(raw)
    uid = str(ds.SOPInstanceUID)
    path = spool.path_for(study, series, uid)
    ref = spool.write(path, raw[:cut], raw[cut:])
    assert ref is not None, "the object went around the log"
    summary = {
        "sop_instance_uid": uid,
        "study_instance_uid": study,
        "series_instance_uid": series,
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "bytes": len(raw) - cut,
    }
    filer.submit(summary, path, ref)
    return uid, path, raw


def test_an_object_that_cannot_be_filed_waits_in_the_log_and_follows_once_it_can(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool, _ = ready_spool(root)
    index = InstanceIndex(tmp_path / "index.sqlite")
    announced = _Announced()
    filer = Filer(spool, index, announced)
    filer.start()
    study, series = new_study()
    blocker = root / study / series
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"")  # a file where the series folder must go: filing fails (as on a full disk)
    try:
        first_uid, first, first_raw = _store(spool, filer, tmp_path, study, series, 0)
        time.sleep(0.3)  # longer than the filer gathers
        assert not first.exists() and announced.uids == []
        assert filer.pending(first_uid) == first  # still found as a duplicate meanwhile
        assert spool.checkpoint(idle=True) == 0  # its log segment is not reused while it waits

        blocker.unlink()
        second_uid, second, second_raw = _store(spool, filer, tmp_path, study, series, 1)  # wakes the filer
        assert announced.wait_for(2) == [first_uid, second_uid]  # the one that waited first
        assert first.read_bytes() == first_raw and second.read_bytes() == second_raw
        assert index.lookup(first_uid) is not None
    finally:
        filer.stop()
        spool.close()
        index.close()


def test_an_object_still_unfiled_at_stop_is_filed_at_the_next_start(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool, _ = ready_spool(root)
    index = InstanceIndex(tmp_path / "index.sqlite")
    filer = Filer(spool, index, _Announced())
    filer.start()
    study, series = new_study()
    blocker = root / study / series
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"")
    _, path, raw = _store(spool, filer, tmp_path, study, series, 0)
    filer.stop()  # tries once more, fails, and leaves the object in the log
    spool.close()
    index.close()
    assert not path.exists()

    blocker.unlink()
    again = Spool(root, LOG_BYTES)
    try:
        pending = again.prepare()
        assert [again.from_relative(r.relative_path) for r in pending] == [path]
        again.file_record(pending[0].ref, path)
        assert path.read_bytes() == raw
    finally:
        again.close()
