"""The auditor's commands: `procedures`, `show`, `audit verify`, `report` (contract: Command line).

Each prints data on stdout and diagnostics on stderr, and returns the exit code; `suite_daemon.cli`
parses the arguments and calls them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from suite_daemon.audit.chain import CHAIN_KEYS
from suite_daemon.audit.journal_set import check_procedure_id
from suite_daemon.audit.verify import VerifyResult, verify_dir, verify_file
from suite_daemon.config import SuiteConfig
from suite_daemon.inspect.report import FORMATS, NOT_MEASURED, ReportData, collect, sections, write_report
from suite_daemon.inspect.store import Procedure, StateStore, StoreError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 64


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _store(config: SuiteConfig) -> StateStore:
    return StateStore(config.suite.state_dir)


def _known_procedure(store: StateStore, procedure_id: str) -> Procedure | None:
    """The procedure, or None after saying on stderr why not."""
    try:
        check_procedure_id(procedure_id)
    except ValueError as exc:
        _err(f"unknown procedure: {exc}")
        return None
    procedure = store.procedure(procedure_id)
    if procedure is None:
        _err(f"unknown procedure: {procedure_id!r} is not in {store.index_path} nor in {store.journal_dir}")
    return procedure


def _procedure_data(config: SuiteConfig, procedure_id: str) -> tuple[Procedure, ReportData] | None:
    """The procedure and everything read about it, or None after saying on stderr why not."""
    store = _store(config)
    try:
        procedure = _known_procedure(store, procedure_id)
        if procedure is None:
            return None
        data = collect(store, procedure_id)
    except StoreError as exc:
        _err(str(exc))
        return None
    assert data is not None
    for problem in data.problems:
        _err(problem)
    return procedure, data


def _print_json(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str], right: set[int], out: TextIO) -> None:
    """An aligned text table; columns in `right` are right-aligned (numbers)."""
    table = [list(header), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        print("  ".join(cells).rstrip(), file=out)


def _n(value: Any, factor: float = 1.0) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NOT_MEASURED
    return f"{value * factor:.4g}" if isinstance(value, float) or factor != 1.0 else str(value)


def _short_time(value: Any) -> str:
    return value.replace("T", " ")[:19] if isinstance(value, str) and value else NOT_MEASURED


# -- procedures --------------------------------------------------------------------------------------------


def cmd_procedures(config: SuiteConfig, as_json: bool) -> int:
    store = _store(config)
    try:
        procedures = store.procedures()
    except StoreError as exc:
        _err(str(exc))
        return EXIT_FAILED
    for procedure in procedures:
        for problem in procedure.problems:
            _err(f"{procedure.procedure_id}: {problem}")
    if as_json:
        _print_json([p.summary for p in procedures])
        return EXIT_OK
    if not procedures:
        _err(f"no procedures in {store.state_dir}")
        return EXIT_OK
    rows = []
    for p in procedures:
        s = p.summary
        images, dose = s.get("images") or {}, s.get("dose") or {}
        alerts = s.get("alerts")
        rows.append(
            [
                p.procedure_id,
                p.state,
                _short_time(p.opened_at),
                _short_time(p.closed_at),
                str(s.get("modality") or NOT_MEASURED),
                _n(images.get("count") if isinstance(images, Mapping) else None),
                _n(dose.get("dap_total_gym2") if isinstance(dose, Mapping) else None, 1e4),
                _n(dose.get("air_kerma_total_gy") if isinstance(dose, Mapping) else None, 1e3),
                _n(dose.get("dlp_total_mgycm") if isinstance(dose, Mapping) else None),
                str(len(alerts)) if isinstance(alerts, list) else NOT_MEASURED,
            ]
        )
    header = ["PROCEDURE", "STATE", "OPENED (UTC)", "CLOSED (UTC)", "MODALITY", "IMAGES", "DAP Gy·cm²",
              "AK mGy", "DLP mGy·cm", "ALERTS"]  # fmt: skip
    print_table(rows, header, right={5, 6, 7, 8, 9}, out=sys.stdout)
    return EXIT_OK


# -- show ----------------------------------------------------------------------------------------------------


def _details(record: Mapping[str, Any], width: int = 90) -> str:
    fields = {k: v for k, v in record.items() if k not in CHAIN_KEYS and k not in ("procedure_id", "source")}
    if set(fields) == {"data"} and isinstance(fields["data"], Mapping):
        fields = dict(fields["data"])
    text = json.dumps(fields, ensure_ascii=False, separators=(", ", ": "))[1:-1]
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_show(config: SuiteConfig, procedure_id: str, as_json: bool) -> int:
    found = _procedure_data(config, procedure_id)
    if found is None:
        return EXIT_FAILED
    procedure, data = found
    if as_json:
        _print_json({"summary": data.summary, "events": data.records})
        return EXIT_OK
    out = sys.stdout
    print(f"Procedure {procedure_id}  ({procedure.state})", file=out)
    for section in sections(data):
        print(f"\n{section.title}", file=out)
        if not section.rows:
            print("  none recorded", file=out)
        elif section.columns is None:
            width = max(len(k) for k, _ in section.rows) + 2
            for key, value in section.rows:
                print(f"  {key:<{width}}{value}", file=out)
        else:
            print_table([["", *r] for r in section.rows], ["", *section.columns], right=set(), out=out)
        if section.note:
            print(f"  {section.note}", file=out)
    print(f"\nEvents ({len(data.records)})", file=out)
    rows = [
        [
            str(r.get("seq", "?")),
            _time_ms(r.get("time")),
            str(r.get("event", "?")),
            str(r.get("source") or ""),
            _details(r),
        ]
        for r in data.records
    ]
    print_table([["", *r] for r in rows], ["", "SEQ", "TIME (UTC)", "EVENT", "SOURCE", "DETAILS"], right={1}, out=out)
    return EXIT_OK


def _time_ms(value: Any) -> str:
    return value.replace("T", " ") if isinstance(value, str) else NOT_MEASURED


# -- audit verify -------------------------------------------------------------------------------------------


def _print_results(results: Sequence[VerifyResult]) -> int:
    failed = [r for r in results if not r.ok]
    for result in results:
        print(("OK    " if result.ok else "FAIL  ") + result.describe())
    for result in failed:
        _err(f"audit verify: TAMPERED OR TRUNCATED: {result.describe()}")
    print(f"{len(results)} journal(s) checked: {len(results) - len(failed)} intact, {len(failed)} failed")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_audit_verify(config: SuiteConfig, procedure_id: str | None) -> int:
    store = _store(config)
    try:
        if procedure_id is not None:
            procedure = _known_procedure(store, procedure_id)
            if procedure is None:
                return EXIT_FAILED
            return _print_results([verify_file(store.journal_path(procedure_id), expect_closed=procedure.closed)])
        procedures = store.procedures()
    except StoreError as exc:
        _err(str(exc))
        return EXIT_FAILED
    results = verify_dir(
        store.journal_dir,
        closed={p.procedure_id for p in procedures if p.closed},
        expected={p.procedure_id for p in procedures},
    )
    if not results:
        _err(f"no journals in {store.journal_dir}")
        return EXIT_OK
    return _print_results(results)


# -- report --------------------------------------------------------------------------------------------------


def cmd_report(config: SuiteConfig, procedure_id: str, fmt: str, out: Path) -> int:
    if fmt not in FORMATS:
        _err(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
        return EXIT_USAGE
    found = _procedure_data(config, procedure_id)
    if found is None:
        return EXIT_FAILED
    _, data = found
    if not data.audit.ok:
        _err(f"warning: the audit journal does not verify: {data.audit.describe()}")
    try:
        write_report(data, fmt, Path(out))
    except OSError as exc:
        _err(f"cannot write the report to {out}: {exc.strerror or exc}")
        return EXIT_FAILED
    _err(f"{fmt} report of {procedure_id} written to {out}")
    return EXIT_OK
