"""The journal writer: chain round trip, reopen, torn tails, threads, bad input, write failures."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from suite_daemon.audit import (
    AuditJournal,
    AuditWriteError,
    JournalCorrupt,
    JournalSet,
    check_procedure_id,
    verify_file,
)

ZEROS = "0" * 64


def independent_hash(record: dict[str, Any]) -> str:
    """The contract's rule, written out again here so the test does not trust the code under test."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_round_trip_follows_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "P1.jsonl"
    when = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    with AuditJournal(path) as journal:
        first = journal.append("procedure.opened", {"procedure_id": "P1", "data": {"reason": "mpps"}}, sync=True)
        journal.append("image.received", {"procedure_id": "P1", "data": {"station": "Ström", "bytes": 524}}, time=when)
        journal.append("dose.sample", {"procedure_id": "P1", "data": {"values": {"dap_gym2": 5.0e-05}}})

    records = read_records(path)
    assert records[0] == first
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] == ZEROS
    for before, record in zip([None, *records], records, strict=False):
        assert record["hash"] == independent_hash(record)
        if before is not None:
            assert record["prev"] == before["hash"]
    assert records[1]["time"] == "2026-11-22T10:00:00.123Z"
    assert records[1]["data"]["station"] == "Ström"
    assert "Ström" in path.read_text(encoding="utf-8")  # UTF-8, not \u escapes
    assert list(records[0])[:3] == ["seq", "time", "event"]
    assert list(records[0])[-2:] == ["prev", "hash"]
    assert verify_file(path).ok


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "P1.jsonl"
    with AuditJournal(path) as journal:
        journal.append("procedure.opened", {})
        last = journal.append("image.received", {})
    with AuditJournal(path) as journal:
        assert journal.seq == 2
        assert journal.last_hash == last["hash"]
        record = journal.append("procedure.closed", {"reason": "operator"})
    assert record["seq"] == 3 and record["prev"] == last["hash"]
    result = verify_file(path, expect_closed=True)
    assert result.ok and result.records == 3


def test_torn_tail_is_moved_aside_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "P1.jsonl"
    with AuditJournal(path) as journal:
        journal.append("procedure.opened", {})
        journal.append("image.received", {})
    fragment = b'{"seq":3,"time":"2026-11-22T10:00:00.000Z","event":"dose.sa'
    with path.open("ab") as f:
        f.write(fragment)
    assert not verify_file(path).ok

    with AuditJournal(path) as journal:
        assert journal.seq == 3
        journal.append("procedure.closed", {"reason": "operator"})

    torn = list(tmp_path.glob("P1.jsonl.torn-*"))
    assert len(torn) == 1 and torn[0].read_bytes() == fragment
    recovered = read_records(path)[2]
    assert recovered["event"] == "journal.recovered"
    assert recovered["torn_file"] == torn[0].name
    assert recovered["torn_bytes"] == len(fragment)
    assert recovered["torn_sha256"] == hashlib.sha256(fragment).hexdigest()
    assert recovered["after_seq"] == 2
    assert verify_file(path, expect_closed=True).ok


def test_complete_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "P1.jsonl"
    with AuditJournal(path) as journal:
        journal.append("procedure.opened", {})
        journal.append("image.received", {})
    path.write_bytes(path.read_bytes()[:-1])  # the crash hit between the record and its newline

    with AuditJournal(path) as journal:
        assert journal.seq == 2
        journal.append("procedure.closed", {})
    assert not list(tmp_path.glob("*.torn-*"))
    assert [r["event"] for r in read_records(path)] == ["procedure.opened", "image.received", "procedure.closed"]
    assert verify_file(path, expect_closed=True).ok


def test_only_a_torn_fragment_starts_a_fresh_chain(tmp_path: Path) -> None:
    path = tmp_path / "P1.jsonl"
    path.write_bytes(b'{"seq":1,"ti')
    with AuditJournal(path) as journal:
        assert journal.seq == 1  # the journal.recovered record
    records = read_records(path)
    assert records[0]["event"] == "journal.recovered" and records[0]["prev"] == ZEROS
    assert verify_file(path).ok


def test_unreadable_last_complete_line_refuses_to_continue(tmp_path: Path) -> None:
    path = tmp_path / "P1.jsonl"
    with AuditJournal(path) as journal:
        journal.append("procedure.opened", {})
    with path.open("ab") as f:
        f.write(b"this is not json\n")
    with pytest.raises(JournalCorrupt, match="audit verify"):
        AuditJournal(path)
    assert path.read_bytes().endswith(b"this is not json\n")  # nothing was changed


def test_concurrent_appends_keep_one_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "P1.jsonl"
    threads, per_thread = 8, 150
    with AuditJournal(path) as journal:

        def worker(n: int) -> None:
            for i in range(per_thread):
                journal.append("dose.sample", {"data": {"thread": n, "i": i}})

        workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    result = verify_file(path)
    assert result.ok, result.describe()
    assert result.records == threads * per_thread
    seen = {(r["data"]["thread"], r["data"]["i"]) for r in read_records(path)}
    assert len(seen) == threads * per_thread


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seq": 5}, "reserved"),
        ({"hash": "x"}, "reserved"),
        ({"event": "x"}, "reserved"),
        ({"data": {"v": float("nan")}}, "not JSON"),
        ({"data": {"v": float("inf")}}, "not JSON"),
        ({"data": object()}, "not JSON"),
    ],
)
def test_bad_fields_are_refused_and_nothing_is_written(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    path = tmp_path / "P1.jsonl"
    with AuditJournal(path) as journal:
        journal.append("procedure.opened", {})
        with pytest.raises(ValueError, match=message):
            journal.append("image.received", fields)
        journal.append("procedure.closed", {})
    assert [r["seq"] for r in read_records(path)] == [1, 2]
    assert verify_file(path).ok


def test_bad_event_name_is_refused(tmp_path: Path) -> None:
    with AuditJournal(tmp_path / "P1.jsonl") as journal, pytest.raises(ValueError):
        journal.append("", {})


def test_values_are_normalised_before_hashing(tmp_path: Path) -> None:
    path = tmp_path / "P1.jsonl"
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with AuditJournal(path) as journal:
        record = journal.append("image.received", {"data": {"at": when, "path": Path("/a/b"), "tags": {"b", "a"}}})
    assert record["data"] == {"at": "2026-01-02T03:04:05.000Z", "path": "/a/b", "tags": ["a", "b"]}
    assert verify_file(path).ok


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "P1.jsonl"
    with AuditJournal(path), pytest.raises(AuditWriteError, match="already open"):
        AuditJournal(path)


def test_append_after_close_is_an_error(tmp_path: Path) -> None:
    journal = AuditJournal(tmp_path / "P1.jsonl")
    journal.close()
    journal.close()  # idempotent
    with pytest.raises(AuditWriteError, match="closed"):
        journal.append("x", {})


def test_fsync_policy(tmp_path: Path) -> None:
    with AuditJournal(tmp_path / "a.jsonl", fsync_interval_s=3600) as journal:
        journal.append("x", {})
        assert journal.flush_due() is False  # not due yet
        assert journal.flush_due(max_age_s=0) is True  # what the background flusher asks, with its own limit
        journal.append("x", {})
        journal.sync()
        journal.append("x", {}, sync=True)
        assert journal.flush_due() is False  # nothing left to sync
    with AuditJournal(tmp_path / "b.jsonl", fsync_interval_s=0) as journal:
        journal.append("x", {})
        assert journal.flush_due() is True
        assert journal.flush_due() is False


WRITE_FAILURE_SCRIPT = """
import resource, signal, sys
from pathlib import Path
from suite_daemon.audit import AuditJournal, AuditWriteError, verify_file
path = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
journal = AuditJournal(path)
journal.append("procedure.opened", {}, sync=True)
size = path.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300, size + 300))
try:
    journal.append("image.received", {"data": {"blob": "x" * 1000}})
except AuditWriteError as exc:
    print("refused:", exc)
assert path.stat().st_size == size, "a partial line was left behind"
journal.append("image.received", {"data": {"small": 1}})
journal.close()
print(verify_file(path).describe())
"""


def test_failed_write_leaves_no_partial_line(tmp_path: Path) -> None:
    """A real write failure (file size limit: EFBIG) in a child process."""
    path = tmp_path / "P1.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", WRITE_FAILURE_SCRIPT, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "refused: cannot write to" in done.stdout
    assert "ok, 2 records" in done.stdout


def test_global_structlog_configuration_does_not_leak_in(tmp_path: Path) -> None:
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        context_class=dict,
        cache_logger_on_first_use=True,
    )
    try:
        with AuditJournal(tmp_path / "P1.jsonl") as journal:
            journal.append("x", {"a": 1})
    finally:
        structlog.reset_defaults()
    (record,) = read_records(tmp_path / "P1.jsonl")
    assert set(record) == {"seq", "time", "event", "a", "prev", "hash"}


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "daemon", "unassigned", "..", "é", "a b", "x" * 129])
def test_bad_procedure_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        check_procedure_id(bad)
    with JournalSet(tmp_path, background_flush=False) as journals, pytest.raises(ValueError):
        journals.procedure(bad)
    assert list(tmp_path.iterdir()) == []


def test_journal_set_routes_and_reopens(tmp_path: Path) -> None:
    with JournalSet(tmp_path / "journal", max_open=2) as journals:
        journals.append("P-1", "procedure.opened", {})
        journals.append(None, "dose.sample", {"data": {}})
        journals.daemon.append("daemon.started", {})
        for pid in ("P-2", "P-3", "P.4"):  # more than max_open: P-1 gets closed
            journals.append(pid, "procedure.opened", {})
        journals.append("P-1", "image.received", {})
        journals.release("P-2")
        journals.append("P-2", "procedure.closed", {}, sync=True)
    names = sorted(p.name for p in (tmp_path / "journal").iterdir())
    assert names == ["P-1.jsonl", "P-2.jsonl", "P-3.jsonl", "P.4.jsonl", "daemon.jsonl", "unassigned.jsonl"]
    assert [r["seq"] for r in read_records(tmp_path / "journal" / "P-1.jsonl")] == [1, 2]
    assert verify_file(tmp_path / "journal" / "P-2.jsonl", expect_closed=True).ok
    for path in (tmp_path / "journal").iterdir():
        assert verify_file(path).ok


def test_journal_set_background_flusher_stops(tmp_path: Path) -> None:
    journals = JournalSet(tmp_path, fsync_interval_s=0.01)
    journals.append("P1", "x", {})
    journals.close()
    assert not any(t.name == "audit-fsync" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(RuntimeError):
        journals.procedure("P1")
