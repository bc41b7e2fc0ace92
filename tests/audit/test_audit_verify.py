"""Tampering: edit, delete, insert, reorder and truncate are each detected and the first bad record named."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from suite_daemon.audit import AuditJournal, verify_dir, verify_file
from suite_daemon.inspect import cmd_audit_verify
from tests.audit.audit_fixtures import (
    T0,
    State,
    Tamper,
    blank_line,
    delete,
    edit,
    edit_and_reseal,
    garbage_line,
    index_procedure,
    insert_copy,
    insert_forged,
    lines_of,
    reorder,
    summary,
    truncate_records,
    write_ct_procedure,
    write_fluoro_procedure,
    write_lines,
)

PID = "20261122-0001"


CASES: list[tuple[str, Tamper, int, str]] = [
    # name, tamper, first bad line (1-based), words in the reason
    ("edit", edit, 5, "hash mismatch"),
    ("edit_and_reseal", edit_and_reseal, 6, "prev"),
    ("delete", delete, 5, "deleted"),
    ("insert_copy", insert_copy, 6, "inserted"),
    ("insert_forged", insert_forged, 7, "inserted"),
    ("reorder", reorder, 5, "out of order"),
    ("truncate", truncate_records, 106, "truncated"),
    ("blank_line", blank_line, 5, "empty line"),
    ("garbage_line", garbage_line, 5, "not valid JSON"),
]


@pytest.mark.parametrize(("name", "tamper", "bad_line", "reason"), CASES, ids=[c[0] for c in CASES])
def test_tampering_is_detected(
    state: State,
    capsys: pytest.CaptureFixture[str],
    name: str,
    tamper: Tamper,
    bad_line: int,
    reason: str,
) -> None:
    write_fluoro_procedure(state.root, PID)
    path = state.journal(PID)
    assert verify_file(path, expect_closed=True).ok
    write_lines(path, tamper(lines_of(path)))

    result = verify_file(path, expect_closed=True)
    assert not result.ok
    assert result.first_bad_line == bad_line, result.describe()
    assert reason in (result.reason or ""), result.describe()

    for procedure_id in (PID, None):  # one procedure, and all of them
        assert cmd_audit_verify(state.config, procedure_id) == 1
        out, err = capsys.readouterr()
        assert f"{path}: line {bad_line}" in err
        assert f"FAIL  {path}: line {bad_line}" in out


def test_truncated_mid_line_is_detected(state: State, capsys: pytest.CaptureFixture[str]) -> None:
    write_fluoro_procedure(state.root, PID)
    path = state.journal(PID)
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    result = verify_file(path, expect_closed=True)
    assert not result.ok and result.first_bad_line == 107
    assert "incomplete" in (result.reason or "")
    assert cmd_audit_verify(state.config, PID) == 1
    assert f"{path}: line 107" in capsys.readouterr().err


def test_deleting_the_first_record_is_detected(state: State) -> None:
    write_fluoro_procedure(state.root, PID)
    path = state.journal(PID)
    write_lines(path, lines_of(path)[1:])
    result = verify_file(path)
    assert not result.ok and result.first_bad_line == 1 and result.first_bad_seq == 2


def test_open_procedure_may_end_anywhere(state: State) -> None:
    write_ct_procedure(state.root)
    assert verify_file(state.journal("20261122-0002")).ok
    assert not verify_file(state.journal("20261122-0002"), expect_closed=True).ok


def test_closed_procedure_journal_must_exist(state: State, capsys: pytest.CaptureFixture[str]) -> None:
    write_fluoro_procedure(state.root, PID)
    state.journal(PID).unlink()
    assert cmd_audit_verify(state.config, PID) == 1
    assert "journal file is missing" in capsys.readouterr().err
    assert cmd_audit_verify(state.config, None) == 1


def test_intact_state_dir_verifies(populated: State, capsys: pytest.CaptureFixture[str]) -> None:
    with AuditJournal(populated.journal_dir / "daemon.jsonl") as daemon:
        daemon.append("daemon.started", {"version": "0.1.0"})
    assert cmd_audit_verify(populated.config, None) == 0
    out, err = capsys.readouterr()
    assert "3 journal(s) checked: 3 intact, 0 failed" in out
    assert err == ""
    assert cmd_audit_verify(populated.config, PID) == 0


def test_unknown_or_invalid_id_is_exit_1(populated: State, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_audit_verify(populated.config, "no-such-procedure") == 1
    assert "unknown procedure" in capsys.readouterr().err
    assert cmd_audit_verify(populated.config, "../etc/passwd") == 1
    assert "not a valid procedure id" in capsys.readouterr().err


def test_empty_state_dir(state: State, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_audit_verify(state.config, None) == 0
    assert "no journals" in capsys.readouterr().err


def test_verify_dir_uses_the_index(state: State) -> None:
    write_fluoro_procedure(state.root, PID)
    index_procedure(state.root, summary("ghost", "closed", T0, T0))
    results = {r.path.name: r for r in verify_dir(state.journal_dir, closed={PID, "ghost"}, expected={PID, "ghost"})}
    assert results[f"{PID}.jsonl"].ok
    assert results["ghost.jsonl"].reason == "journal file is missing"


def test_verifying_a_journal_while_the_daemon_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    stop = threading.Event()
    with AuditJournal(path) as journal:

        def writer() -> None:
            for _ in range(3000):
                if stop.is_set():
                    return
                journal.append("dose.sample", {"data": {"values": {"dap_gym2": 1e-5}, "pad": "x" * 300}})

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            results = [verify_file(path) for _ in range(10)]
        finally:
            stop.set()
            thread.join()
    assert all(r.ok for r in results), [r.describe() for r in results if not r.ok]
    assert verify_file(path).ok
