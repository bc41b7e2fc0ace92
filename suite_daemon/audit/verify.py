"""Recompute a journal's hash chain and report the first record that breaks it.

Detected: a changed record (its hash no longer matches), deleted, inserted, duplicated or reordered
records (`seq`/`prev` no longer follow), lines that are not JSON records, a torn last line (no newline),
and truncation of a closed procedure's journal (it must end with `procedure.closed`). A chain without
an external anchor cannot reveal an attacker who rewrites *every* record after a change, nor the loss
of whole records at the end of a journal still open; see docs/audit.md.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite_daemon.audit.chain import GENESIS, record_hash

HEX64_RE = re.compile(r"[0-9a-f]{64}")
CLOSED_EVENT = "procedure.closed"
TORN_REASON = "the last line is incomplete (no newline): torn or truncated"
TORN_RECHECK_S = 0.2


@dataclass(frozen=True, slots=True)
class VerifyResult:
    path: Path
    ok: bool
    records: int
    """Records that verified (all of them when ok)."""
    first_bad_line: int | None = None
    """1-based line number of the first bad record (for truncation: where the missing record belongs)."""
    reason: str | None = None
    first_bad_seq: int | None = None
    """The `seq` the bad line claims, when it has one."""

    def describe(self) -> str:
        if self.ok:
            return f"{self.path}: ok, {self.records} records"
        where = f"line {self.first_bad_line}" if self.first_bad_line is not None else "file"
        if self.first_bad_seq is not None:
            where += f" (seq {self.first_bad_seq})"
        return f"{self.path}: {where}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "ok": self.ok,
            "records": self.records,
            "first_bad_line": self.first_bad_line,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
        }


def _chain_field_problem(record: dict[str, Any]) -> str | None:
    seq = record.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "missing or malformed 'seq'"
    for key in ("prev", "hash"):
        if not isinstance(record.get(key), str) or not HEX64_RE.fullmatch(record[key]):
            return f"missing or malformed '{key}'"
    for key in ("event", "time"):
        if not isinstance(record.get(key), str):
            return f"missing or malformed '{key}'"
    return None


def _link_problem(seq: int, expected: int) -> str:
    before = f"seq {expected - 1}" if expected > 1 else "the start of the file"
    if seq > expected:
        return f"seq {seq} follows {before}: record(s) deleted or out of order"
    if seq < expected:
        return f"seq {seq} follows {before}: record inserted, duplicated or out of order"
    return f"'prev' does not match the hash of the record before: record replaced or inserted after {before}"


def verify_file(path: Path, *, expect_closed: bool = False) -> VerifyResult:
    """Check one journal. `expect_closed`: the procedure is closed, so the last record must be procedure.closed."""
    path = Path(path)
    try:
        with path.open("rb") as f:  # streamed: daemon.jsonl may grow large
            result = _verify_lines(path, f, expect_closed)
        if result.reason == TORN_REASON:
            # The running daemon may have been caught in the middle of writing that line: look again.
            time.sleep(TORN_RECHECK_S)
            with path.open("rb") as f:
                result = _verify_lines(path, f, expect_closed)
        return result
    except FileNotFoundError:
        return VerifyResult(path, False, 0, None, "journal file is missing")
    except OSError as exc:
        return VerifyResult(path, False, 0, None, f"cannot read: {exc.strerror or exc}")


def _verify_lines(path: Path, lines: Iterable[bytes], expect_closed: bool) -> VerifyResult:
    prev, expected, last_event = GENESIS, 1, None
    for number, raw in enumerate(lines, start=1):
        if not raw.endswith(b"\n"):  # only the last line can lack it
            return VerifyResult(path, False, expected - 1, number, TORN_REASON)
        line = raw[:-1]
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            reason = "empty line" if not line.strip() else "not valid JSON"
            return VerifyResult(path, False, expected - 1, number, reason)
        if not isinstance(record, dict):
            return VerifyResult(path, False, expected - 1, number, "not a JSON object")
        problem = _chain_field_problem(record)
        seq = record["seq"] if isinstance(record.get("seq"), int) else None
        if problem is None:
            try:
                if record_hash(record) != record["hash"]:
                    problem = "hash mismatch: the record was changed after it was written"
            except ValueError:
                problem = "holds values that are not JSON (NaN or Infinity)"
        if problem is None and (record["prev"] != prev or record["seq"] != expected):
            problem = _link_problem(record["seq"], expected)
        if problem is not None:
            return VerifyResult(path, False, expected - 1, number, problem, seq)
        prev, expected, last_event = record["hash"], expected + 1, record["event"]

    records = expected - 1
    if expect_closed and last_event != CLOSED_EVENT:
        last = f"seq {records} is {last_event!r}" if records else "the journal is empty"
        return VerifyResult(
            path,
            False,
            records,
            records + 1,
            f"truncated: the procedure is closed but the journal does not end with {CLOSED_EVENT} ({last})",
        )
    return VerifyResult(path, True, records)


def verify_dir(
    journal_dir: Path, *, closed: Collection[str] = (), expected: Collection[str] = ()
) -> list[VerifyResult]:
    """Check every `*.jsonl` in the dir, by name. `closed`: procedure ids whose journal must end with
    procedure.closed; `expected`: ids that must have a journal (missing ones are reported)."""
    journal_dir = Path(journal_dir)
    files = sorted(journal_dir.glob("*.jsonl")) if journal_dir.is_dir() else []
    present = {path.stem for path in files}
    results = [verify_file(path, expect_closed=path.stem in closed) for path in files]
    for procedure_id in sorted(set(expected) - present):
        results.append(verify_file(journal_dir / f"{procedure_id}.jsonl"))
    return results
