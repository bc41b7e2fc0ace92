"""One procedure's record: identity, counts, ledgers, alerts; its summary and its saved state."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from suite_daemon.correlator import clock
from suite_daemon.dose.injection_ledger import InjectionLedger
from suite_daemon.dose.ledger import DoseLedger
from suite_daemon.events import SCHEMA, rfc3339

MAX_ALERTS_LISTED = 200


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class Procedure:
    procedure_id: str
    opened_at: datetime
    opened_by: str
    """`mpps`, `image`, `operator` (what opened it)."""
    last_activity: datetime
    state: str = "open"
    closed_at: datetime | None = None
    close_reason: str | None = None
    studies: list[str] = field(default_factory=list)
    """Study Instance UIDs; the first is the summary's `study_instance_uid`, the others were linked."""
    accessions: list[str] = field(default_factory=list)
    modality: str | None = None
    images: int = 0
    series: set[str] = field(default_factory=set)
    bytes: int = 0
    objects: int = 0
    """Every distinct DICOM object (images and SRs)."""
    sop_uids: set[str] = field(default_factory=set)
    mpps: dict[str, str | None] = field(default_factory=dict)
    dose: DoseLedger = field(default_factory=DoseLedger)
    injection: InjectionLedger = field(default_factory=InjectionLedger)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock_offsets: list[float] = field(default_factory=list)
    late_arrivals: int = 0
    agent_phases: set[str] = field(default_factory=set)

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def study_instance_uid(self) -> str | None:
        return self.studies[0] if self.studies else None

    def owns(self, study_uid: str | None, accession: str | None) -> bool:
        """Identity match: the same study uid, or the same accession number."""
        return bool(study_uid and study_uid in self.studies) or bool(accession and accession in self.accessions)

    def add_identity(self, study_uid: str | None, accession: str | None) -> None:
        if study_uid and study_uid not in self.studies:
            self.studies.append(study_uid)
        if accession and accession not in self.accessions:
            self.accessions.append(accession)

    def add_alert(self, level: str, kind: str, message: str, time: datetime) -> None:
        self.alerts.append({"level": level, "kind": kind, "message": message, "time": rfc3339(time)})
        del self.alerts[:-MAX_ALERTS_LISTED]

    def see_device(self, device: str, driver: str, kind: str | None) -> bool:
        """Note a device that contributed; True when it is new to this procedure."""
        entry = self.devices.get(device)
        if entry is None:
            self.devices[device] = {"device": device, "driver": driver, "kind": kind, "samples": 0}
            return True
        if kind and not entry.get("kind"):
            entry["kind"] = kind
        return False

    # --- the contract's summary ---------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        dose = self.dose.summary()
        injection = self.injection.summary()
        return {
            "schema": SCHEMA,
            "procedure_id": self.procedure_id,
            "state": self.state,
            "opened_at": rfc3339(self.opened_at),
            "closed_at": rfc3339(self.closed_at) if self.closed_at else None,
            "study_instance_uid": self.study_instance_uid,
            "accession_number": self.accessions[0] if self.accessions else None,
            "modality": self.modality,
            "images": {"count": self.images, "series": len(self.series), "bytes": self.bytes},
            "dose": dose,
            "injection": injection,
            "alerts": list(self.alerts),
            "devices": sorted(self.devices.values(), key=lambda d: d["device"]),
            # extras (the contract allows more keys)
            "study_instance_uids": list(self.studies),
            "accession_numbers": list(self.accessions),
            "objects": self.objects,
            "mpps": [{"sop_instance_uid": uid, "status": status} for uid, status in self.mpps.items()],
            "opened_by": self.opened_by,
            "close_reason": self.close_reason,
            "last_activity_at": rfc3339(self.last_activity),
            "late_arrivals": self.late_arrivals,
            "clock_offset_s": clock.estimate(self.clock_offsets),
        }

    # --- saved state (SOP uids are saved apart, one key each: see machine.py) -------------------------
    def to_state(self) -> str:
        return json.dumps(
            {
                "procedure_id": self.procedure_id,
                "opened_at": rfc3339(self.opened_at),
                "opened_by": self.opened_by,
                "last_activity": rfc3339(self.last_activity),
                "state": self.state,
                "closed_at": rfc3339(self.closed_at) if self.closed_at else None,
                "close_reason": self.close_reason,
                "studies": self.studies,
                "accessions": self.accessions,
                "modality": self.modality,
                "images": self.images,
                "series": sorted(self.series),
                "bytes": self.bytes,
                "objects": self.objects,
                "mpps": self.mpps,
                "dose": self.dose.to_state(),
                "injection": self.injection.to_state(),
                "alerts": self.alerts,
                "fired": sorted(self.fired),
                "devices": self.devices,
                "clock_offsets": self.clock_offsets,
                "late_arrivals": self.late_arrivals,
                "agent_phases": sorted(self.agent_phases),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_state(cls, text: str) -> Procedure:
        s = json.loads(text)
        opened_at = parse_time(s["opened_at"])
        last_activity = parse_time(s["last_activity"])
        assert opened_at is not None and last_activity is not None
        return cls(
            procedure_id=s["procedure_id"],
            opened_at=opened_at,
            opened_by=s["opened_by"],
            last_activity=last_activity,
            state=s["state"],
            closed_at=parse_time(s["closed_at"]),
            close_reason=s["close_reason"],
            studies=list(s["studies"]),
            accessions=list(s["accessions"]),
            modality=s["modality"],
            images=int(s["images"]),
            series=set(s["series"]),
            bytes=int(s["bytes"]),
            objects=int(s["objects"]),
            mpps=dict(s["mpps"]),
            dose=DoseLedger.from_state(s["dose"]),
            injection=InjectionLedger.from_state(s["injection"]),
            alerts=list(s["alerts"]),
            fired=set(s["fired"]),
            devices={k: dict(v) for k, v in s["devices"].items()},
            clock_offsets=[float(x) for x in s["clock_offsets"]],
            late_arrivals=int(s["late_arrivals"]),
            agent_phases=set(s["agent_phases"]),
        )
