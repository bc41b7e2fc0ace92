"""Builders of test state dirs: an index and journals written by the real journal writer."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from suite_daemon.audit import AuditJournal
from suite_daemon.config import SuiteConfig
from suite_daemon.events import rfc3339
from suite_daemon.inspect import PROCEDURES_DDL

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


@dataclass
class State:
    root: Path
    config: SuiteConfig
    config_file: Path

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    def journal(self, procedure_id: str) -> Path:
        return self.journal_dir / f"{procedure_id}.jsonl"


def summary(procedure_id: str, state: str, opened: datetime, closed: datetime | None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": 1,
        "procedure_id": procedure_id,
        "state": state,
        "opened_at": rfc3339(opened),
        "closed_at": rfc3339(closed) if closed else None,
        "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
        "accession_number": "ACC0001",
        "modality": "XA",
        "images": {"count": 0, "series": 0, "bytes": 0},
        "dose": {
            "dap_total_gym2": None,
            "air_kerma_total_gy": None,
            "fluoro_time_s": None,
            "ctdivol_max_mgy": None,
            "dlp_total_mgycm": None,
            "irradiation_events": 0,
            "sources": [],
        },
        "injection": {"volume_total_ml": None, "peak_flow_mlps": None, "peak_pressure_kpa": None, "phases": 0},
        "alerts": [],
        "devices": [],
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def index_procedure(root: Path, summary_doc: dict[str, Any], *, raw_summary: str | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(root / "index.sqlite3")) as db, db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(PROCEDURES_DDL)
        db.execute(
            "INSERT OR REPLACE INTO procedures VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                summary_doc["procedure_id"],
                summary_doc["state"],
                summary_doc["opened_at"],
                summary_doc["closed_at"],
                summary_doc.get("study_instance_uid"),
                summary_doc.get("accession_number"),
                raw_summary if raw_summary is not None else json.dumps(summary_doc),
            ),
        )


def event(journal: AuditJournal, kind: str, at: datetime, source: str, data: dict[str, Any], **kw: Any) -> None:
    procedure_id = journal.path.stem
    journal.append(kind, {"procedure_id": procedure_id, "source": source, "data": data}, time=at, **kw)


def write_fluoro_procedure(root: Path, procedure_id: str = "20261122-0001") -> dict[str, Any]:
    """A closed XA procedure: meter samples, images, an RDSR, two injection phases, an alert."""

    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    with AuditJournal(root / "journal" / f"{procedure_id}.jsonl") as j:
        event(j, "procedure.opened", at(0), "mpps", {"reason": "mpps in progress"}, sync=True)
        event(j, "device.status", at(2), "dap1", {"state": "connected", "detail": ""})
        dap = kerma = 0.0
        for i in range(1, 60):
            dap += 2.0e-05 if 10 < i < 40 else 2.0e-06
            kerma += 0.05 if 10 < i < 40 else 0.005
            values = {"dap_gym2": round(dap, 9), "air_kerma_gy": round(kerma, 6), "dap_rate_gym2_s": 1e-06}
            event(j, "dose.sample", at(i * 20), "dap1", {"device": "dap1", "values": values, "segment": 0})
            if i % 5 == 0:
                event(j, "image.received", at(i * 20 + 3), "dicom", {"series": "1.2.3", "clock_offset_s": 2.4})
        for i in range(30):
            pressure = 120.0 + 36 * i if i < 10 else (200.0 if 15 <= i < 20 else 20.0)
            event(j, "injection.sample", at(400 + i * 4), "inj1", {"values": {"pressure_kpa": pressure}})
        event(
            j,
            "injection.phase",
            at(440),
            "inj1",
            {"phase": "contrast", "volume_ml": 60.0, "flow_mlps": 4.0, "peak_pressure_kpa": 444.0, "duration_s": 40},
        )
        event(
            j,
            "injection.phase",
            at(480),
            "inj1",
            {"phase": "saline", "volume_ml": 20.0, "flow_mlps": 4.0, "peak_pressure_kpa": 200.0, "duration_s": 20},
        )
        event(
            j,
            "alert",
            at(700),
            "correlator",
            {"level": "warning", "kind": "air_kerma", "message": "air kerma passed 1000 mGy", "threshold_mgy": 1000},
        )
        event(
            j,
            "dose.report",
            at(1190),
            "rdsr",
            {"dap_total_gym2": 0.00068, "air_kerma_total_gy": 1.65, "fluoro_time_s": 512.0, "irradiation_events": 41},
        )
        event(j, "procedure.closed", at(1200), "mpps", {"reason": "mpps completed"}, sync=True)
    doc = summary(
        procedure_id,
        "closed",
        at(0),
        at(1200),
        images={"count": 11, "series": 1, "bytes": 5_400_000},
        dose={
            "dap_total_gym2": 0.00068,
            "air_kerma_total_gy": 1.65,
            "fluoro_time_s": 512.0,
            "irradiation_events": 41,
            "sources": [
                {
                    "source": "rdsr",
                    "reports": 1,
                    "dap_total_gym2": 0.00068,
                    "air_kerma_total_gy": 1.65,
                    "fluoro_time_s": 512.0,
                    "irradiation_events": 41,
                    "planes": {
                        "A": {"dap_total_gym2": 0.0005, "air_kerma_total_gy": 1.2, "fluoro_time_s": 400.0},
                        "B": {"dap_total_gym2": 0.00018, "air_kerma_total_gy": 0.45, "fluoro_time_s": 112.0},
                    },
                },
                {"source": "meter", "device": "dap1", "driver": "ptw-diamentor", "dap_total_gym2": 0.000638},
            ],
            "totals_from": {"dap_total_gym2": "rdsr", "air_kerma_total_gy": "rdsr", "fluoro_time_s": "rdsr"},
        },
        injection={"volume_total_ml": 80.0, "peak_flow_mlps": 4.0, "peak_pressure_kpa": 444.0, "phases": 2},
        alerts=[{"level": "warning", "kind": "air_kerma", "message": "air kerma passed 1000 mGy"}],
        devices=["dap1", "inj1"],
    )
    index_procedure(root, doc)
    return doc


def write_ct_procedure(root: Path, procedure_id: str = "20261122-0002") -> dict[str, Any]:
    """An open CT procedure with an RDSR."""
    opened = T0 + timedelta(hours=1)
    with AuditJournal(root / "journal" / f"{procedure_id}.jsonl") as j:
        event(j, "procedure.opened", opened, "dicom", {"reason": "first object of a new study"}, sync=True)
        for i in range(4):
            event(j, "image.received", opened + timedelta(seconds=10 + i), "dicom", {"series": "1.2.4"})
        event(j, "dose.report", opened + timedelta(seconds=60), "rdsr", {"ctdivol_max_mgy": 12.5, "dlp_mgycm": 310.0})
    doc = summary(
        procedure_id,
        "open",
        opened,
        None,
        modality="CT",
        images={"count": 4, "series": 1, "bytes": 2_100_000},
        dose={"ctdivol_max_mgy": 12.5, "dlp_total_mgycm": 310.0, "irradiation_events": 2, "sources": ["rdsr"]},
    )
    index_procedure(root, doc)
    return doc


# -- tampering, as an attacker with write access to the file would do it ------------------------------

Tamper = Callable[[list[bytes]], list[bytes]]
"""A tampering: a journal's lines in, the altered lines out."""


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def edit(lines: list[bytes]) -> list[bytes]:
    record = json.loads(lines[4])
    record["data"]["values"]["dap_gym2"] = 0.0  # lower a dose reading, keep the old hash
    lines[4] = json.dumps(record, separators=(",", ":")).encode()
    return lines


def edit_and_reseal(lines: list[bytes]) -> list[bytes]:
    """A smarter forger recomputes the edited record's own hash; the next record's prev still betrays it."""
    record = json.loads(lines[4])
    record["data"]["values"]["dap_gym2"] = 0.0
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    record["hash"] = hashlib.sha256(text.encode()).hexdigest()
    lines[4] = json.dumps(record, separators=(",", ":")).encode()
    return lines


def delete(lines: list[bytes]) -> list[bytes]:
    del lines[4]
    return lines


def insert_copy(lines: list[bytes]) -> list[bytes]:
    lines.insert(5, lines[4])
    return lines


def insert_forged(lines: list[bytes]) -> list[bytes]:
    """A record that chains correctly onto line 5 and carries a valid hash of its own."""
    before = json.loads(lines[4])
    forged = {"seq": before["seq"] + 1, "time": before["time"], "event": "image.received", "prev": before["hash"]}
    text = json.dumps(forged, sort_keys=True, separators=(",", ":"))
    forged["hash"] = hashlib.sha256(text.encode()).hexdigest()
    lines.insert(5, json.dumps(forged).encode())
    return lines


def reorder(lines: list[bytes]) -> list[bytes]:
    lines[4], lines[5] = lines[5], lines[4]
    return lines


def truncate_records(lines: list[bytes]) -> list[bytes]:
    return lines[:-2]


def blank_line(lines: list[bytes]) -> list[bytes]:
    lines.insert(4, b"")
    return lines


def garbage_line(lines: list[bytes]) -> list[bytes]:
    lines[4] = b'{"seq": 5, "broken'
    return lines
