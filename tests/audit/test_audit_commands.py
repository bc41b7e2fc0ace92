"""`procedures` and `show`: JSON shapes, readable text, unknown ids, damaged state dirs."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from suite_daemon.audit import AuditJournal
from suite_daemon.inspect import PROCEDURES_DDL, cmd_procedures, cmd_show
from tests.audit.audit_fixtures import T0, State, event, index_procedure, summary, write_fluoro_procedure

FLUORO, CT = "20261122-0001", "20261122-0002"


def test_procedures_json_newest_first(populated: State, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_procedures(populated.config, as_json=True) == 0
    out, err = capsys.readouterr()
    listed = json.loads(out)
    assert [p["procedure_id"] for p in listed] == [CT, FLUORO]
    assert listed[1]["state"] == "closed" and listed[1]["dose"]["dap_total_gym2"] == 0.00068
    assert listed[0]["closed_at"] is None
    assert err == ""


def test_procedures_table(populated: State, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_procedures(populated.config, as_json=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["PROCEDURE", "STATE", "OPENED"]
    assert lines[1].startswith(CT) and lines[2].startswith(FLUORO)
    # aligned: every column starts where its header does
    state_column = lines[0].index("STATE")
    assert lines[1][state_column:].startswith("open") and lines[2][state_column:].startswith("closed")
    assert "6.8" in lines[2]  # DAP in Gy·cm²
    assert "—" in lines[1]  # not measured, never 0


def test_procedures_empty(state: State, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_procedures(state.config, as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cmd_procedures(state.config, as_json=False) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no procedures" in err


def test_index_without_table_is_empty(state: State, capsys: pytest.CaptureFixture[str]) -> None:
    with closing(sqlite3.connect(state.root / "index.sqlite3")) as db:
        db.execute("CREATE TABLE other (x)")
    assert cmd_procedures(state.config, as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_index_that_is_not_sqlite(state: State, capsys: pytest.CaptureFixture[str]) -> None:
    (state.root / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    assert cmd_procedures(state.config, as_json=False) == 1
    assert "cannot read" in capsys.readouterr().err
    assert cmd_show(state.config, FLUORO, as_json=False) == 1


def test_show_json(populated: State, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_show(populated.config, FLUORO, as_json=True) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"summary", "events"}
    assert document["summary"]["procedure_id"] == FLUORO
    events = document["events"]
    assert len(events) == 107
    assert events[0]["event"] == "procedure.opened" and events[-1]["event"] == "procedure.closed"
    assert [e["seq"] for e in events] == list(range(1, 108))
    assert all({"prev", "hash", "time"} <= set(e) for e in events)


def test_show_text(populated: State, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_show(populated.config, FLUORO, as_json=False) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Procedure {FLUORO}  (closed)")
    for expected in ("Dose-area product", "0.00068 Gy·m² (6.8 Gy·cm²)", "Injection phases", "contrast",
                     "air kerma passed 1000 mGy", "intact", "Events (107)", "procedure.closed", "rdsr plane B",
                     "(6.8 Gy·cm²), from rdsr", "meter/dap1"):  # fmt: skip
        assert expected in out


def test_show_unknown_id(populated: State, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_show(populated.config, "20991231-0001", as_json=True) == 1
    out, err = capsys.readouterr()
    assert out == "" and "unknown procedure" in err
    assert cmd_show(populated.config, "a/../../b", as_json=False) == 1


def test_show_with_damaged_summary_and_journal(state: State, capsys: pytest.CaptureFixture[str]) -> None:
    write_fluoro_procedure(state.root, FLUORO)
    doc = summary(FLUORO, "closed", T0, T0)
    index_procedure(state.root, doc, raw_summary="{not json")
    with state.journal(FLUORO).open("ab") as f:
        f.write(b"garbage line\n")
    assert cmd_show(state.config, FLUORO, as_json=True) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["summary"]["state"] == "closed"  # from the index columns
    assert len(document["events"]) == 107
    assert "not valid JSON" in err and "line 108" in err


def test_show_procedure_known_only_from_its_journal(state: State, capsys: pytest.CaptureFixture[str]) -> None:
    with AuditJournal(state.journal("P-orphan")) as j:
        event(j, "procedure.opened", T0, "operator", {})
    assert cmd_show(state.config, "P-orphan", as_json=True) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["summary"]["state"] == "open"
    assert "not in the index" in err


def test_ddl_is_idempotent(state: State) -> None:
    with closing(sqlite3.connect(state.root / "index.sqlite3")) as db:
        db.execute(PROCEDURES_DDL)
        db.execute(PROCEDURES_DDL)
