"""Drives a `ProcedureCorrelator` in virtual time, doing what the pipeline's outbox does with an
`Outcome`: numbering events per stream, keeping the saved state, running after-commit work."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

from pydicom.uid import generate_uid

from suite_daemon.config import SuiteConfig
from suite_daemon.correlator import ProcedureCorrelator
from suite_daemon.correlator.index_store import ProcedureIndex
from suite_daemon.events import (
    DeviceNoticed,
    DeviceSampled,
    Event,
    ImageStored,
    Input,
    MppsReceived,
    OperatorCommanded,
)
from suite_daemon.pipeline.correlation import Outcome

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
AGENT_SR = "1.2.840.10008.5.1.4.1.1.88.75"


def config(
    tmp: Path, procedure: Mapping[str, Any] | None = None, alerts: Mapping[str, Any] | None = None
) -> SuiteConfig:
    return SuiteConfig.model_validate(
        {"suite": {"id": "ir-1", "state_dir": tmp}, "procedure": dict(procedure or {}), "alerts": dict(alerts or {})}
    )


@dataclass
class Machine:
    cfg: SuiteConfig
    now: datetime = T0
    state: dict[str, str] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    messages: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)
    journal: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    index: ProcedureIndex | None = None

    def __post_init__(self) -> None:
        self.correlator = ProcedureCorrelator(self.cfg, self.index)
        self.apply(self.correlator.startup(self.now, self.state))

    def restart(self) -> None:
        """A new correlator from the saved state only (what survives SIGKILL)."""
        self.correlator = ProcedureCorrelator(self.cfg, self.index)
        self.apply(self.correlator.startup(self.now, dict(self.state)))

    def apply(self, out: Outcome) -> Outcome:
        for event in out.events:
            n = self.seq.get(event.stream, 0) + 1
            self.seq[event.stream] = n
            self.events.append(event.numbered(n))
        for m in out.messages:
            self.messages.append((m.topic, json.loads(m.payload), m.retain))
        self.journal.extend(out.journal)
        for key, value in out.saved_state().items():
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value
        for work in out.after_commit:
            work()
        return out

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now

    def feed(self, item: Input) -> Outcome:
        return self.apply(self.correlator.handle(item, self.now))

    def tick(self, seconds: float | None = None) -> Outcome:
        if seconds is not None:
            self.at(seconds)
        return self.apply(self.correlator.tick(self.now))

    # --- views --------------------------------------------------------------------------------------
    def of(self, pid: str | None, kind: str | None = None) -> list[Event]:
        return [e for e in self.events if e.procedure_id == pid and (kind is None or e.type == kind)]

    def types(self, pid: str | None) -> list[str]:
        return [e.type for e in self.of(pid)]

    def pids(self) -> list[str]:
        opened = (e.procedure_id for e in self.events if e.type == "procedure.opened")
        return list(dict.fromkeys(pid for pid in opened if pid is not None))

    def summary(self, pid: str) -> dict[str, Any]:
        found = [p for t, p, _ in self.messages if t == f"suite/ir-1/procedure/{pid}/summary"]
        assert found, f"no summary published for {pid}"
        return found[-1]

    def current(self) -> dict[str, Any]:
        return [p for t, p, _ in self.messages if t == "suite/ir-1/procedure/current"][-1]

    def responses(self) -> list[dict[str, Any]]:
        return [p for t, p, _ in self.messages if t == "suite/ir-1/command/response"]


# --- inputs -----------------------------------------------------------------------------------------
def image(
    at: datetime,
    study: str,
    *,
    sop: str | None = None,
    series: str = "1.2.3.4",
    accession: str | None = "auto",
    sop_class: str = CT_IMAGE,
    path: Path = Path("/nonexistent"),
    duplicate: bool = False,
    acquired: str | None = None,
    nbytes: int = 1000,
    **extra: Any,
) -> ImageStored:
    summary = {
        "study_instance_uid": study,
        "series_instance_uid": series,
        "sop_instance_uid": sop or generate_uid(),
        "sop_class_uid": sop_class,
        "modality": "SR" if sop_class in (DOSE_SR, AGENT_SR) else "CT",
        "accession_number": f"A{study}" if accession == "auto" else accession,
        "acquisition_datetime": acquired,
        "content_datetime": None,
        "bytes": nbytes,
        "is_dose_sr": sop_class == DOSE_SR,
        "is_agent_sr": sop_class == AGENT_SR,
        **extra,
    }
    return ImageStored(summary=summary, path=path, duplicate=duplicate, received_at=at)


def mpps(
    at: datetime,
    uid: str,
    status: str,
    study: str | None,
    *,
    action: Literal["create", "set"] = "create",
    attributes: Mapping[str, Any] | None = None,
    accession: str | None = "auto",
) -> MppsReceived:
    """The accession number defaults to `A<study uid>` (one accession per study)."""
    accession = f"A{study}" if accession == "auto" else accession
    return MppsReceived(action, uid, status, dict(attributes or {}), study, accession, at)


def dose_sample(at: datetime, dap: float, *, device: str = "dap1", segment: int = 0, **values: float) -> DeviceSampled:
    return DeviceSampled(device, "ptw-diamentor", "dose", {"dap_gym2": dap, **values}, at, segment=segment)


def pump_sample(at: datetime, volume: float, pressure: float = 100.0, device: str = "pump1") -> DeviceSampled:
    return DeviceSampled(
        device, "newera-pump", "injection", {"volume_ml": volume, "pressure_kpa": pressure, "flow_mlps": 1.0}, at
    )


def pump_alarm(at: datetime, message: str, device: str = "pump1") -> DeviceNoticed:
    return DeviceNoticed(device, "newera-pump", "alarm", {"code": "OCC", "message": message}, at)


class CommandFields(TypedDict, total=False):
    """The optional fields of an `OperatorCommanded`."""

    study_instance_uid: str | None
    accession_number: str | None
    operator: str | None
    reason: str | None


def command(
    at: datetime, action: Literal["open", "close"], request_id: str = "r1", **fields: Unpack[CommandFields]
) -> OperatorCommanded:
    return OperatorCommanded(action, request_id, time=at, **fields)
