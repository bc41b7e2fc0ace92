"""Writing large objects around the page cache (filing logged ones, streaming big ones into their temporary spool
file), and starting write-back early, on the real file system."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from suite_daemon.dicom import writeback
from suite_daemon.dicom.direct_io import ALIGN, STAGE_BYTES, DirectAppender, DirectWriter
from suite_daemon.dicom.part10 import dataset_offset
from suite_daemon.dicom.spool import DIRECT_FILING_SMALLEST, Spool
from suite_daemon.dicom.writeback import EarlyWriteback
from tests.dicom.dicom_harness import pynetdicom_store, ready_spool, running_receiver
from tests.dicom.dicom_testdata import ct_slice, new_study, save, xa_run


@pytest.mark.parametrize("length", [1, ALIGN - 1, ALIGN, ALIGN + 1, 512 * 1024 + 17])
@pytest.mark.parametrize("offset", [0, 64, ALIGN + 3])
def test_a_direct_write_copies_exactly_the_range(tmp_path: Path, length: int, offset: int) -> None:
    source = tmp_path / "source"
    payload = os.urandom(offset + length + 100)
    source.write_bytes(payload)
    writer = DirectWriter()
    target = tmp_path / "target.dcm"
    target.write_bytes(b"x" * (2 * length + ALIGN))  # an older, longer file is replaced, not overlaid
    fd = os.open(source, os.O_RDONLY)
    try:
        assert writer.write_file(target, fd, offset, length)
        assert writer.write_file(tmp_path / "second.dcm", fd, 0, 10)  # the buffer is reused
    finally:
        os.close(fd)
    assert target.read_bytes() == payload[offset : offset + length]
    assert (tmp_path / "second.dcm").read_bytes() == payload[:10]


@pytest.mark.parametrize(
    ("direct_min", "refused"),
    [(DIRECT_FILING_SMALLEST, False), (DIRECT_FILING_SMALLEST, True), (0, False)],
    ids=["direct", "file system without O_DIRECT", "through the page cache (the default)"],
)
def test_logged_ct_slices_are_filed_byte_for_byte(tmp_path: Path, direct_min: int, refused: bool) -> None:
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, direct_filing_min=direct_min)
    if refused:
        spool._direct.supported = False  # what a refused O_DIRECT open leaves behind
    study, series = new_study()
    try:
        sizes = [(64, 64), (512, 512), (256, 256)]
        for i, (rows, cols) in enumerate(sizes):
            raw = save(ct_slice(study, series, i, rows=rows, cols=cols), tmp_path / "src").read_bytes()
            cut = dataset_offset(raw)
            target = spool.path_for(study, series, str(ct_slice(study, series, i, rows=8, cols=8).SOPInstanceUID))
            ref = spool.write(target, raw[:cut], raw[cut:])
            assert ref is not None
            assert (ref.payload_len >= DIRECT_FILING_SMALLEST) == (rows >= 256)
            spool.file_record(ref, target)
            assert target.read_bytes() == raw
        assert spool._direct.supported is not refused
        assert spool.checkpoint(idle=True) >= 1
    finally:
        spool.close()


@pytest.mark.parametrize("direct_filing_min_kb", [0, 128], ids=["through the page cache (the default)", "direct"])
async def test_the_receiver_files_large_objects_as_configured(
    tmp_path: Path, direct_filing_min_kb: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dicom.direct_filing_min_kb`: CT slices of 0.5 MB are filed around the page cache only when it asks
    for that; either way every spool file holds what was sent."""
    direct_writes: list[int] = []
    write_file = DirectWriter.write_file

    def counted(self: DirectWriter, *args: Any) -> bool:
        direct_writes.append(args[3])
        return write_file(self, *args)

    monkeypatch.setattr(DirectWriter, "write_file", counted)
    study, series = new_study()
    slices = [ct_slice(study, series, i, rows=512, cols=512) for i in range(3)]
    sent = [save(ds, tmp_path / "src").read_bytes() for ds in slices]
    async with running_receiver(tmp_path / "state", direct_filing_min_kb=direct_filing_min_kb) as scp:
        assert await asyncio.to_thread(pynetdicom_store, scp.port, slices) == [0x0000] * 3
        await scp.wait_for(lambda: len(scp.images) == 3)
        filed = {i.summary["sop_instance_uid"]: i.path.read_bytes() for i in scp.images}
    for ds, raw in zip(slices, sent, strict=True):
        stored = filed[str(ds.SOPInstanceUID)]
        assert stored[dataset_offset(stored) :] == raw[dataset_offset(raw) :]
    assert len(direct_writes) == (3 if direct_filing_min_kb else 0)


def test_early_write_back_starts_in_whole_pages_and_keeps_the_data(tmp_path: Path) -> None:
    assert writeback._sync_file_range is not None  # Linux: the hint is taken
    path = tmp_path / "stream"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    chunks = [os.urandom(n) for n in (100, 40_000, 70_000, 3, 200_000)]
    try:
        early = EarlyWriteback(fd, 0, 0)
        written = 0
        started = []
        for chunk in chunks:
            os.pwrite(fd, chunk, written)
            written += len(chunk)
            early.appended(len(chunk))
            started.append(early._started)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    assert all(s % writeback.PAGE == 0 for s in started)
    assert started[:2] == [0, 0]  # less than MIN_BYTES so far: no call
    assert started[-1] == written & ~(writeback.PAGE - 1)
    assert path.read_bytes() == b"".join(chunks)


@pytest.mark.parametrize(
    "sizes",
    [
        [],
        [1],
        [STAGE_BYTES - 1, 1],
        [STAGE_BYTES],
        [STAGE_BYTES + 1],
        [100, 3 * STAGE_BYTES, 17],  # a chunk over several stages
        [128 * 1024] * 60,  # a 7.5 MB XA run as 128 KiB PDUs
    ],
    ids=["empty", "one byte", "a stage in two", "one stage", "one stage and a byte", "across stages", "XA run"],
)
def test_a_file_appended_around_the_page_cache_holds_exactly_what_was_appended(
    tmp_path: Path, sizes: list[int]
) -> None:
    path = tmp_path / "incoming.tmp"
    chunks = [os.urandom(n) for n in sizes]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        appender = DirectAppender.open(path, fd, DirectWriter())
        assert appender is not None
        for chunk in chunks:
            appender.append(chunk)
        appender.finish()
        os.fdatasync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(chunks)


def test_a_stream_finished_after_the_next_one_started_keeps_its_bytes(tmp_path: Path) -> None:
    """A pipelining peer: the first object's stream is finished (by the association thread) after the receiving
    thread has begun writing the next one. Each has its own staging buffers."""
    writer = DirectWriter()
    first, second = os.urandom(STAGE_BYTES + 5000), os.urandom(2 * STAGE_BYTES + 3)
    fds = [os.open(tmp_path / name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600) for name in ("a", "b")]
    try:
        appenders = [DirectAppender.open(tmp_path / name, fd, writer) for name, fd in zip("ab", fds, strict=True)]
        a, b = appenders
        assert a is not None and b is not None
        a.append(first)  # its last 5000 bytes wait in a staging buffer
        b.append(second)
        a.finish()
        b.finish()
    finally:
        for fd in fds:
            os.close(fd)
    assert (tmp_path / "a").read_bytes() == first
    assert (tmp_path / "b").read_bytes() == second


def test_a_file_system_without_o_direct_gets_no_appender(tmp_path: Path) -> None:
    writer = DirectWriter()
    writer.supported = False  # what a refused O_DIRECT open leaves behind
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert DirectAppender.open(tmp_path / "f", fd, writer) is None
    finally:
        os.close(fd)


def test_a_large_streamed_object_is_filed_byte_for_byte_around_the_page_cache(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool = Spool(root, 0)  # no ingest log: the stream goes to its temporary spool file at once
    spool.prepare()
    study, series = new_study()
    try:
        raw = save(xa_run(study, series, 0, frames=40), tmp_path / "src").read_bytes()  # 5.2 MB
        cut = dataset_offset(raw)
        stream = spool.open_stream(raw[:cut])
        for at in range(cut, len(raw), 128 * 1024):
            stream.feed(memoryview(raw)[at : at + 128 * 1024])
        with stream.data_view() as data:
            assert data == raw[cut:]  # what the header pass reads, read back from the disk
        assert stream._written_direct
        target = spool.path_for(study, series, str(xa_run(study, series, 0, rows=8, cols=8, frames=1).SOPInstanceUID))
        assert spool.commit(stream, target) is None
        assert target.read_bytes() == raw
    finally:
        spool.close()
