"""The ingest log on a real file system: records survive a crash, torn ones are ignored, segments are reused."""

from __future__ import annotations

import os
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

from suite_daemon.dicom import spool as spool_module
from suite_daemon.dicom.ingest_log import LOG_OBJECT_MAX, RecordRef, read_record
from suite_daemon.dicom.part10 import dataset_offset
from suite_daemon.dicom.spool import Spool
from suite_daemon.dicom.writeback import PAGE
from tests.dicom.dicom_harness import ready_spool, running_receiver
from tests.dicom.dicom_testdata import ct_slice, dataset_bytes, new_study, save

LOG_BYTES = 32 * 1024 * 1024


def _objects(tmp_path: Path, count: int) -> list[tuple[Path, bytes, bytes]]:
    """(spool-relative target, Part 10 head, data set) of `count` CT slices."""
    study, series = new_study()
    out = []
    for i in range(count):
        source = save(ct_slice(study, series, i, rows=64, cols=64), tmp_path / "src")
        raw = source.read_bytes()
        cut = dataset_offset(raw)
        out.append((Path(study, series, source.name), raw[:cut], raw[cut:]))
    return out


def test_logged_objects_survive_a_crash_and_are_filed_byte_for_byte(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool, pending = ready_spool(root, LOG_BYTES)
    assert pending == []
    objects = _objects(tmp_path, 5)
    for relative, head, data in objects:
        assert spool.write(root / relative, head, data) is not None  # durable in the log, not filed
    spool.close()  # as a crash would leave it: no checkpoint, nothing filed
    assert not list(root.glob("*/*/*.dcm"))

    again, pending = ready_spool(root, LOG_BYTES)
    try:
        assert [r.relative_path for r in pending] == [str(o[0]) for o in objects]
        for record in pending:
            again.file_record(record.ref, again.from_relative(record.relative_path))
        for relative, head, data in objects:
            assert (root / relative).read_bytes() == head + data
        assert again.checkpoint(idle=True) >= 1
    finally:
        again.close()
    third, pending = ready_spool(root, LOG_BYTES)  # after the checkpoint the log holds nothing any more
    third.close()
    assert pending == []


def test_a_torn_record_and_everything_after_it_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, LOG_BYTES)
    objects = _objects(tmp_path, 3)
    refs = [spool.write(root / relative, head, data) for relative, head, data in objects]
    spool.close()
    last = refs[-1]
    assert last is not None
    fd = os.open(last.segment.path, os.O_RDWR)
    try:
        os.pwrite(fd, b"\xff\xfe", last.payload_offset + 100)  # as if the crash hit while it was written
    finally:
        os.close(fd)
    again, pending = ready_spool(root, LOG_BYTES)
    again.close()
    assert [r.relative_path for r in pending] == [str(o[0]) for o in objects[:2]]


def _rewrite_as_crc_record(ref: RecordRef, relative: Path) -> None:
    """Rewrite a record's header as versions before 2026-11-29 wrote it: a CRC-32 of payload + meta."""
    meta = str(relative).encode()
    fd = os.open(ref.segment.path, os.O_RDWR)
    try:
        payload = os.pread(fd, ref.payload_len, ref.payload_offset)
        head = struct.pack(
            "<8sQQII",
            b"SDRECORD",
            ref.segment.generation,
            ref.payload_len,
            len(meta),
            zlib.crc32(meta, zlib.crc32(payload)),
        )
        head += struct.pack("<I", zlib.crc32(head))
        os.pwrite(fd, head.ljust(64, b"\0"), ref.payload_offset - 64)
    finally:
        os.close(fd)


def test_records_written_by_an_earlier_version_are_still_filed(tmp_path: Path) -> None:
    """Records checked with a CRC-32 (before 2026-11-29) left unfiled by a crash are read after an upgrade;
    a torn one is not, nor anything after it."""
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, LOG_BYTES)
    objects = _objects(tmp_path, 3)
    refs = [spool.write(root / relative, head, data) for relative, head, data in objects]
    spool.close()
    for ref, (relative, _, _) in zip(refs, objects, strict=True):
        assert ref is not None
        _rewrite_as_crc_record(ref, relative)
    again, pending = ready_spool(root, LOG_BYTES)
    again.close()
    assert [r.relative_path for r in pending] == [str(o[0]) for o in objects]

    last = refs[-1]
    assert last is not None
    fd = os.open(last.segment.path, os.O_RDWR)
    try:
        os.pwrite(fd, b"\xff\xfe", last.payload_offset + 100)
    finally:
        os.close(fd)
    third, pending = ready_spool(root, LOG_BYTES)
    third.close()
    assert [r.relative_path for r in pending] == [str(o[0]) for o in objects[:2]]


def test_a_reused_segment_invalidates_its_old_records(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, LOG_BYTES)
    first = _objects(tmp_path, 2)
    refs = [spool.write(root / relative, head, data) for relative, head, data in first]
    for ref, (relative, _, _) in zip(refs, first, strict=True):
        assert ref is not None
        spool.file_record(ref, root / relative)
    assert refs[0] is not None
    generation = refs[0].segment.generation
    assert spool.checkpoint(idle=True) >= 1
    assert refs[0].segment.generation == generation + 1
    relative, head, data = _objects(tmp_path / "b", 1)[0]
    ref = spool.write(root / relative, head, data)
    assert ref is not None and ref.payload_offset < PAGE * 2  # written from the segment's start again
    spool.close()
    again, pending = ready_spool(root, LOG_BYTES)
    again.close()
    assert [r.relative_path for r in pending] == [str(relative)]


def test_a_large_object_streams_to_its_own_file(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, LOG_BYTES)
    try:
        head = b"H" * 300
        chunk = os.urandom(256 * 1024)
        chunks = (LOG_OBJECT_MAX // len(chunk)) + 3
        stream = spool.open_stream(head)
        for _ in range(chunks):
            stream.feed(chunk)
        assert stream.writer is None  # it outgrew the log and moved to a spool file
        path = spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.5")
        assert spool.commit(stream, path) is None
        assert path.read_bytes() == head + chunk * chunks
        small = spool.write(spool.path_for("1.2.3", "1.2.3.4", "1.2.3.4.6"), b"x" * 1000)
        assert small is not None and small.segment is not None  # the log took the next object again
    finally:
        spool.close()


def _logged_then_killed(tmp_path: Path, root: Path, count: int) -> list[Path]:
    """`count` CT slices made durable in the ingest log of the spool at `root`, then the spool left as a
    SIGKILL would leave it (nothing filed). Returns the slices' source files."""
    spool, _ = ready_spool(root, LOG_BYTES)
    study, series = new_study()
    sources = [save(ct_slice(study, series, i, rows=64, cols=64), tmp_path / "src") for i in range(count)]
    for source in sources:
        raw = source.read_bytes()
        cut = dataset_offset(raw)
        assert spool.write(spool.path_for(study, series, source.stem), raw[:cut], raw[cut:]) is not None
    spool.close()
    return sources


async def test_the_receiver_files_logged_objects_before_serving(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    sources = _logged_then_killed(tmp_path, state_dir / "spool", 4)

    async with running_receiver(state_dir) as scp:
        await scp.wait_for(lambda: len(scp.images) == len(sources))
        assert all(i.summary["recovered"] for i in scp.images)
        with sqlite3.connect(state_dir / "index.sqlite3") as db:
            indexed = dict(db.execute("SELECT sop_instance_uid, path FROM dicom_instances").fetchall())
        for source in sources:
            assert dataset_bytes(Path(indexed[source.stem])) == dataset_bytes(source)


@pytest.mark.parametrize("ingest_log_mb", [0, 16], ids=["log-turned-off", "log-made-smaller"])
async def test_logged_objects_are_filed_after_a_restart_with_the_log_off_or_smaller(
    tmp_path: Path, ingest_log_mb: int
) -> None:
    """Objects answered from the log are filed even when the next start has the log off or smaller; then
    the segments it no longer wants are removed."""
    state_dir = tmp_path / "state"
    root = state_dir / "spool"
    sources = _logged_then_killed(tmp_path, root, 3)  # in a log of two segments

    async with running_receiver(state_dir, ingest_log_mb=ingest_log_mb) as scp:
        await scp.wait_for(lambda: len(scp.images) == len(sources))
        assert sorted(dataset_bytes(i.path) for i in scp.images) == sorted(dataset_bytes(s) for s in sources)
        assert len(list((root / ".ingest").glob("seg-*.log"))) == ingest_log_mb // 16


def test_one_receiver_per_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "spool"
    first, _ = ready_spool(root, LOG_BYTES)
    monkeypatch.setattr(spool_module, "_LOCK_WAIT_S", 0.3)
    try:
        with pytest.raises(OSError, match="in use by another receiver"):
            Spool(root, LOG_BYTES).prepare()
    finally:
        first.close()
    second, _ = ready_spool(root, LOG_BYTES)  # free again once the first one is closed
    second.close()


def test_a_writer_given_back_cannot_commit(tmp_path: Path) -> None:
    """Once abandoned (its association gone), a writer's segment may be another's: it writes nothing more."""
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, LOG_BYTES)
    try:
        writer = spool.log.writer()
        assert writer is not None
        assert writer.feed(b"x" * 1000)
        writer.abandon()
        with pytest.raises(OSError):
            writer.commit("1.2/1.2.3/1.2.3.4.dcm")
        with pytest.raises(OSError):
            writer.write_whole((b"y" * 100,), "1.2/1.2.3/1.2.3.5.dcm")
    finally:
        spool.close()
    again, pending = ready_spool(root, LOG_BYTES)
    again.close()
    assert pending == []


def test_a_record_written_ahead_counts_once_synced_and_a_voided_one_never(tmp_path: Path) -> None:
    """A store writes a small object ahead of its checks: the record carries no path (found from the payload
    at start), and a record voided because its object turned out to be stored already is never found."""
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, LOG_BYTES)
    (_, head1, data1), (_, head2, data2), (_, head3, data3) = _objects(tmp_path, 3)
    kept = spool.write_ahead(head1, data1)
    assert kept is not None
    kept.sync_ahead()
    voided = spool.write_ahead(head2, data2)
    assert voided is not None
    voided.void()
    spool.close()

    again, pending = ready_spool(root, LOG_BYTES)
    try:
        assert [(r.relative_path, read_record(r.ref)) for r in pending] == [("", head1 + data1)]
        later = again.write_ahead(head3, data3)  # written where the voided record was
        assert later is not None
        later.sync_ahead()
    finally:
        again.close()
    third, pending = ready_spool(root, LOG_BYTES)
    try:
        assert [read_record(r.ref) for r in pending] == [head1 + data1, head3 + data3]
    finally:
        third.close()


def _stream_ahead(spool: Spool, head: bytes, data: bytes) -> None:
    """Store an object as one arriving in several PDUs: streamed into the log in pieces, sealed ahead, synced."""
    stream = spool.open_stream(head)
    for start in range(0, len(data), 5000):
        stream.feed(data[start : start + 5000])
    writer = spool.seal_ahead(stream)
    assert writer is not None
    writer.sync_ahead()
    stream.committed = True


def test_a_streamed_record_sealed_ahead_is_found_with_its_payload(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, LOG_BYTES)
    (_, head, data) = _objects(tmp_path, 1)[0]
    _stream_ahead(spool, head, data)
    spool.close()
    again, pending = ready_spool(root, LOG_BYTES)
    try:
        assert [(r.relative_path, read_record(r.ref)) for r in pending] == [("", head + data)]
    finally:
        again.close()


def _bytes_read_from_disk() -> int:
    """What this process has had read from the disk so far (`read_bytes` in /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no read_bytes")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's per-process I/O counters")
def test_records_written_into_pages_out_of_the_page_cache_read_nothing_back(tmp_path: Path) -> None:
    """A write that covers only part of a page that is not in the page cache makes the kernel read that page
    from the disk first, in the middle of a store (this VM's host trims the page cache, so the log's pages are
    often out of it): every write into a segment covers whole pages, for records written whole, written
    ahead and streamed alike."""
    root = tmp_path / "spool"
    spool, _ = ready_spool(root, LOG_BYTES)
    try:
        objects = _objects(tmp_path, 5)
        for segment in (root / ".ingest").glob("seg-*.log"):
            fd = os.open(segment, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean since made: out of the cache now
            finally:
                os.close(fd)
        untouched = sorted((root / ".ingest").glob("seg-*.log"))[-1]  # its last page: no record goes there
        before = _bytes_read_from_disk()
        with untouched.open("rb") as f:
            f.seek(-PAGE, os.SEEK_END)
            f.read(PAGE)
        if _bytes_read_from_disk() == before:
            pytest.skip("this file system reads nothing back from a disk (tmpfs?): nothing to count")
        before = _bytes_read_from_disk()
        for relative, head, data in objects[:2]:
            assert spool.write(root / relative, head, data) is not None
        for _, head, data in objects[2:4]:
            writer = spool.write_ahead(head, data)
            assert writer is not None
            writer.sync_ahead()
        _stream_ahead(spool, *objects[4][1:])
        assert _bytes_read_from_disk() == before
    finally:
        spool.close()
    again, pending = ready_spool(root, LOG_BYTES)
    try:
        assert [read_record(r.ref) for r in pending] == [head + data for _, head, data in objects]
    finally:
        again.close()
