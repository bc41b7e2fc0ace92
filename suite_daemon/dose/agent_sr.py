"""Performed Imaging Agent Administration SR (DICOM Supplement 164) -> `InjectionReport`.

Root concept (130227, DCM) "Performed Imaging Agent Administration". Imaging agents are described
in (130183, DCM) "Imaging Agent Information" containers, identified by (130254, DCM); each
(130202, DCM) "Imaging Agent Administration Phase" container, wherever it sits under the steps,
gives one phase: its Performed Phase UID (130261), phase type (130204, CID 62), Total Phase Volume
Administered (130240), Peak Flow Rate (130244), Peak Pressure (130245), Pressure Limit (130193) and
its activities (130237) with the agent they reference (130255), flow, volume and duration. Injector
events are (130234, DCM) items with a CID 71 code, their detection time (130235) and phase (130262).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydicom.dataset import Dataset

from suite_daemon.dose import codes as C
from suite_daemon.dose.rdsr import DoseParseError, read_dataset
from suite_daemon.dose.sr_tree import Node, Repairs, child_value, child_values, code_of

PERFORMED_AGENT_SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.75"
_PHASE_STOP = frozenset({C.ADMINISTRATION_PHASE})
Level = Literal["notice", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class InjectionPhase:
    index: int
    uid: str | None
    agent: str | None
    """The agent's name as coded (e.g. "Iohexol"), else its identifier in the report."""
    phase_type: str | None = None
    volume_ml: float | None = None
    peak_flow_mlps: float | None = None
    duration_s: float | None = None
    peak_pressure_kpa: float | None = None
    pressure_limit_kpa: float | None = None

    def to_data(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class InjectorEvent:
    kind: str
    """snake_case name of the CID 71 code (see `codes.INJECTOR_EVENT_KINDS`), else the code meaning."""
    code: tuple[str, str] | None
    level: Level
    detected: str | None = None
    phase_uid: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "code": list(self.code) if self.code else None,
            "level": self.level,
            "detected": self.detected,
            "phase_uid": self.phase_uid,
        }


@dataclass(frozen=True, slots=True)
class InjectionReport:
    study_instance_uid: str | None
    sop_instance_uid: str | None
    content_datetime: str | None
    phases: tuple[InjectionPhase, ...]
    events: tuple[InjectorEvent, ...] = ()
    completion_status: str | None = None
    repairs: tuple[str, ...] = ()

    @property
    def volume_total_ml(self) -> float | None:
        values = [p.volume_ml for p in self.phases if p.volume_ml is not None]
        return sum(values) if values else None

    @property
    def peak_flow_mlps(self) -> float | None:
        values = [p.peak_flow_mlps for p in self.phases if p.peak_flow_mlps is not None]
        return max(values) if values else None

    @property
    def peak_pressure_kpa(self) -> float | None:
        values = [p.peak_pressure_kpa for p in self.phases if p.peak_pressure_kpa is not None]
        return max(values) if values else None

    @property
    def flags(self) -> tuple[InjectorEvent, ...]:
        """Injector events that need an alert (critical: pressure limit, air; warning: others)."""
        return tuple(e for e in self.events if e.level != "notice")

    def to_data(self) -> dict[str, Any]:
        return {
            "source": "agent_sr",
            "study_instance_uid": self.study_instance_uid,
            "sop_instance_uid": self.sop_instance_uid,
            "content_datetime": self.content_datetime,
            "volume_total_ml": self.volume_total_ml,
            "peak_flow_mlps": self.peak_flow_mlps,
            "peak_pressure_kpa": self.peak_pressure_kpa,
            "phases": [p.to_data() for p in self.phases],
            "events": [e.to_data() for e in self.events],
            "completion_status": self.completion_status,
            "repairs": list(self.repairs),
        }


def _agents(root: Node) -> dict[str, str]:
    """Agent identifier -> name (the component's coded meaning when present)."""
    names: dict[str, str] = {}
    for info in root.descendants(C.IMAGING_AGENT_INFORMATION):
        ident = info.first_descendant(C.IMAGING_AGENT_IDENTIFIER)
        ident_text = ident.text if ident is not None else None
        component = info.first_descendant(C.IMAGING_AGENT_COMPONENT)
        name = None
        if component is not None:
            name = component.code_meaning or component.text
            if name is None:
                inner = next((c for c in component.children if c.code_meaning), None)
                name = inner.code_meaning if inner is not None else None
        if ident_text:
            names[ident_text] = name or ident_text
    return names


def _level(kind: str) -> Level:
    if kind in C.CRITICAL_INJECTOR_EVENTS:
        return "critical"
    if kind in C.WARNING_INJECTOR_EVENTS:
        return "warning"
    return "notice"


def _phase(node: Node, index: int, agents: dict[str, str], repairs: Repairs) -> InjectionPhase:
    uid_node = node.first_descendant(C.PERFORMED_PHASE_UID, _PHASE_STOP)
    uid = uid_node.uid if uid_node is not None else None
    if uid is None:
        repairs.add(f"phase {index} has no Performed Phase UID; identified by its position")
    type_node = node.first_descendant(C.PHASE_TYPE, _PHASE_STOP)
    phase_type = None
    if type_node is not None and type_node.code_value is not None:
        phase_type = C.PHASE_TYPES.get(type_node.code_value, type_node.code_meaning)
    activities = list(node.descendants(C.ADMINISTRATION_ACTIVITY, _PHASE_STOP))

    refs: list[str] = []
    for ref in node.descendants(C.REFERENCED_IMAGING_AGENT_IDENTIFIER, _PHASE_STOP):
        if ref.text and ref.text not in refs:
            refs.append(ref.text)
    agent = " + ".join(agents.get(r, r) for r in refs) or None

    volume = child_value(node, C.TOTAL_PHASE_VOLUME_ADMINISTERED, "volume", _PHASE_STOP)
    if volume is None and activities:
        volumes = [v for a in activities for v in child_values(a, C.VOLUME, "volume", _PHASE_STOP)]
        volume = sum(volumes) if volumes else None
        if volume is not None:
            repairs.add(f"phase {index}: Total Phase Volume Administered missing; summed from its activities")
    flows = child_values(node, C.PEAK_FLOW_RATE_IN_PHASE_ACTIVITY, "flow", _PHASE_STOP)
    if not flows:
        flows = child_values(node, C.STARTING_FLOW_RATE, "flow", _PHASE_STOP) + child_values(
            node, C.ENDING_FLOW_RATE, "flow", _PHASE_STOP
        )
    pressures = child_values(node, C.PEAK_PRESSURE_IN_PHASE_ACTIVITY, "pressure", _PHASE_STOP)
    durations = [v for a in activities for v in child_values(a, C.DURATION, "time", _PHASE_STOP)]
    phase_duration = [c for c in node.find(C.DURATION)]
    duration = phase_duration[0].value_in("time") if phase_duration else (sum(durations) if durations else None)
    return InjectionPhase(
        index=index,
        uid=uid,
        agent=agent,
        phase_type=phase_type,
        volume_ml=volume,
        peak_flow_mlps=max(flows) if flows else None,
        duration_s=duration,
        peak_pressure_kpa=max(pressures) if pressures else None,
        pressure_limit_kpa=child_value(node, C.PRESSURE_LIMIT, "pressure", _PHASE_STOP),
    )


def _events(root: Node, repairs: Repairs) -> list[InjectorEvent]:
    out: list[InjectorEvent] = []
    for node in root.descendants(C.INJECTOR_EVENT_TYPE):
        code = node.code_value
        if code is None:
            repairs.add("injector event without a code; ignored")
            continue
        kind = C.INJECTOR_EVENT_KINDS.get(code)
        if kind is None:
            kind = (node.code_meaning or f"{code[0]}_{code[1]}").strip().lower().replace(" ", "_")
            repairs.add(f"injector event code {code} is not in CID 71; kept as {kind!r}")
        when = node.first(C.INJECTOR_EVENT_DATETIME)
        phase = node.first(C.REFERENCED_PHASE_UID)
        out.append(
            InjectorEvent(
                kind=kind,
                code=code,
                level=_level(kind),
                detected=when.datetime if when is not None else None,
                phase_uid=phase.uid if phase is not None else None,
            )
        )
    return out


def parse_agent_sr(source: Dataset | str | Path) -> InjectionReport:
    """Parse a Performed Imaging Agent Administration SR. Raises `DoseParseError` if it is not one."""
    ds = read_dataset(source)
    repairs = Repairs()
    if "ContentSequence" not in ds:
        raise DoseParseError("no SR content tree (ContentSequence missing)")
    root = Node(ds, repairs)
    root_code = code_of(ds.ConceptNameCodeSequence[0]) if ds.get("ConceptNameCodeSequence") else None
    phase_nodes = list(root.descendants(C.ADMINISTRATION_PHASE))
    if root_code != C.PERFORMED_IMAGING_AGENT_ADMINISTRATION:
        if not phase_nodes:
            raise DoseParseError(f"root concept {root_code} is not a Performed Imaging Agent Administration")
        repairs.add(f"root concept {root_code} is not (130227, DCM); administration phases found, read anyway")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class and sop_class != PERFORMED_AGENT_SR_SOP_CLASS:
        repairs.add(f"SOP class {sop_class} is not Performed Imaging Agent Administration SR; read by content")
    if not ds.get("ContentTemplateSequence"):
        repairs.add("no content template declared; template recognised from the content")
    agents = _agents(root)
    phases = tuple(_phase(n, i + 1, agents, repairs) for i, n in enumerate(phase_nodes))
    status_node = root.first(C.COMPLETION_STATUS)
    status = status_node.code_meaning if status_node is not None else None
    events = _events(root, repairs)
    status_code = status_node.code_value if status_node is not None else None
    status_kind = C.INJECTOR_EVENT_KINDS.get(status_code) if status_code else None
    if status_kind and not any(e.kind == status_kind for e in events):
        # CID 67 completion codes are also CID 71 event codes: a termination only stated here still counts.
        events.append(InjectorEvent(kind=status_kind, code=status_code, level=_level(status_kind)))
    content_dt = None
    if ds.get("ContentDate"):
        content_dt = f"{ds.ContentDate}{ds.get('ContentTime', '') or ''}"
    return InjectionReport(
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or "") or None,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or "") or None,
        content_datetime=content_dt,
        phases=phases,
        events=tuple(events),
        completion_status=status,
        repairs=tuple(repairs.notes),
    )
