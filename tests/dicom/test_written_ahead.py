"""Small objects are written into the ingest log ahead of the store's checks (`StoreService._write_ahead`):
a restart files such a record only if it passes the same checks, and a record whose object is refused or
turns out to be stored already is voided before the answer."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from suite_daemon.dicom.filing import Filer
from suite_daemon.dicom.ingest_log import IngestLog, RecordRef, read_record
from suite_daemon.dicom.part10 import dataset_offset, encode_file_meta
from suite_daemon.dicom.spool import Spool
from suite_daemon.dicom.store import StoreService
from tests.dicom.dicom_harness import pynetdicom_store, ready_spool, running_receiver
from tests.dicom.dicom_testdata import CT, ct_slice, new_study, save


def _head_and_data(ds: Dataset, tmp_path: Path, named_instance: str | None = None) -> tuple[bytes, bytes]:
    """The Part 10 head a store writes ahead (from the request's UIDs; `named_instance` if the request named
    another SOP instance than the data set's) and the data set."""
    raw = save(ds, tmp_path / "src").read_bytes()
    instance = named_instance or str(ds.SOPInstanceUID)
    return encode_file_meta(CT, instance, ExplicitVRLittleEndian, "TESTSCU"), raw[dataset_offset(raw) :]


async def test_records_written_ahead_are_filed_at_start_only_if_they_pass_the_checks(tmp_path: Path) -> None:
    state = tmp_path / "state"
    spool, _ = ready_spool(state / "spool")  # the ingest log's size in the receiver's test config
    study, series = new_study()
    good, mismatched, truncated = (ct_slice(study, series, i, rows=64, cols=64) for i in range(3))
    good_head, good_data = _head_and_data(good, tmp_path)
    truncated_head, truncated_data = _head_and_data(truncated, tmp_path)
    records = [
        (good_head, good_data),
        _head_and_data(mismatched, tmp_path, named_instance=str(good.SOPInstanceUID) + ".9"),
        (truncated_head, truncated_data[: len(truncated_data) // 2]),
    ]
    for head, data in records:
        writer = spool.write_ahead(head, data)
        assert writer is not None
        writer.sync_ahead()  # answered: as when the daemon stops before filing them
    spool.close()

    async with running_receiver(state) as scp:  # recovery runs before the receiver reports started
        await scp.wait_for(lambda: len(scp.images) == 1)
        assert [i.summary["sop_instance_uid"] for i in scp.images] == [str(good.SOPInstanceUID)]
        assert scp.images[0].summary["recovered"] is True
        assert [p.read_bytes() for p in (state / "spool").glob("*/*/*.dcm")] == [good_head + good_data]


def _store_each(port: int, datasets: list[Dataset]) -> list[int]:
    """Each data set on an association of its own; the statuses."""
    return [pynetdicom_store(port, [ds], [(CTImageStorage, ExplicitVRLittleEndian)])[0] for ds in datasets]


async def test_a_copy_found_after_it_was_written_ahead_is_voided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the cheap look before writing ahead miss a stored copy, the full check after it finds the copy,
    and its record must then never be filed (a restart would put the copy's bytes in place of the stored
    object's)."""
    monkeypatch.setattr(StoreService, "_maybe_stored", lambda self, uid: False)  # the look misses, as in that race
    monkeypatch.setattr(Spool, "checkpoint", lambda self, idle: 0)  # the log keeps its records for the test
    study, series = new_study()
    first = ct_slice(study, series, 0, rows=64, cols=64)
    copy = ct_slice(study, series, 0, rows=64, cols=64)
    copy.StationName = "ANOTHER ROOM"
    async with running_receiver(tmp_path / "state") as scp:
        assert await asyncio.to_thread(_store_each, scp.port, [first, copy]) == [0x0000, 0x0000]
        await scp.wait_for(lambda: len(scp.images) == 2)
        assert [i.duplicate for i in scp.images] == [False, True]
        stored = scp.images[0].path
        first_bytes = stored.read_bytes()
        assert "ANOTHER ROOM" not in str(first_bytes)
        logged = _logged_payloads(tmp_path / "state", tmp_path / "ingest-copy")
    assert logged == [first_bytes]  # the copy's record is gone


async def test_a_copy_sent_at_the_same_moment_leaves_no_record_a_crash_could_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two associations send the same SOP instance, with different contents, at the same moment. The second
    waits for the first before it writes anything: had the daemon been killed while it waited, the ingest
    log would hold the first copy's record only, and a restart would file that one."""
    monkeypatch.setattr(Spool, "checkpoint", lambda self, idle: 0)  # the log keeps its records for the test
    first_synced, release = threading.Event(), threading.Event()
    submit, claim = Filer.submit, StoreService._claim
    claims: list[str] = []

    def held_submit(self: Filer, summary: dict[str, Any], path: Path, ref: RecordRef | None) -> None:
        first_synced.set()  # durable, not yet answered, still claimed
        release.wait(20)
        submit(self, summary, path, ref)

    def counted_claim(self: StoreService, sop_instance: str) -> None:
        claims.append(sop_instance)
        claim(self, sop_instance)

    monkeypatch.setattr(Filer, "submit", held_submit)
    monkeypatch.setattr(StoreService, "_claim", counted_claim)
    study, series = new_study()
    first = ct_slice(study, series, 0, rows=64, cols=64)
    copy = ct_slice(study, series, 0, rows=64, cols=64)
    copy.StationName = "ANOTHER ROOM"
    async with running_receiver(tmp_path / "state") as scp:
        sending_first = asyncio.create_task(asyncio.to_thread(_store_each, scp.port, [first]))
        assert await asyncio.to_thread(first_synced.wait, 20)
        sending_copy = asyncio.create_task(asyncio.to_thread(_store_each, scp.port, [copy]))
        deadline = time.monotonic() + 20
        while len(claims) < 2:  # the copy's store is waiting for the first's
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        logged = _logged_payloads(tmp_path / "state", tmp_path / "ingest-copy")  # what a SIGKILL would leave
        release.set()
        assert await sending_first == [0x0000]
        assert await sending_copy == [0x0000]
        await scp.wait_for(lambda: len(scp.images) == 2)
        assert [i.duplicate for i in scp.images] == [False, True]
        first_bytes = scp.images[0].path.read_bytes()
    assert "ANOTHER ROOM" not in str(first_bytes)
    assert logged == [first_bytes]


async def test_a_refused_object_written_ahead_is_voided(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its record is complete before the checks refuse it: it is voided before the failure is answered."""
    monkeypatch.setattr(Spool, "checkpoint", lambda self, idle: 0)  # the log keeps its records for the test
    study, series = new_study()
    good = ct_slice(study, series, 0, rows=64, cols=64)
    refused = ct_slice(study, series, 1, rows=64, cols=64)
    del refused.StudyInstanceUID
    async with running_receiver(tmp_path / "state") as scp:
        assert await asyncio.to_thread(_store_each, scp.port, [good, refused]) == [0x0000, 0xC220]
        await scp.wait_for(lambda: len(scp.images) == 1 and len(scp.alerts) == 1)
        stored = scp.images[0].path.read_bytes()
        logged = _logged_payloads(tmp_path / "state", tmp_path / "ingest-copy")
    assert logged == [stored]


def _logged_payloads(state: Path, snapshot: Path) -> list[bytes]:
    """The payloads of the valid records in a copy of a running receiver's ingest log."""
    shutil.copytree(state / "spool" / ".ingest", snapshot)
    ingest = IngestLog(snapshot, 32 * 1024 * 1024)
    try:
        return [read_record(r.ref) for r in ingest.open()]
    finally:
        ingest.close()
