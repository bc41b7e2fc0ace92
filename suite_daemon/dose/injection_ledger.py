"""Per-procedure injection ledger: agent administration SRs and serial pumps, each source kept apart.

- Agent SR: phases keyed by Performed Phase UID (else SOP instance + position); a re-sent report
  replaces the phases it carries, so nothing is counted twice.
- Pump (per device): delivered volume of the cumulative `volume_ml` counter by the drivers' segment
  rule (first segment from its first value, later segments from zero; docs/drivers.md); peak flow
  and pressure are maxima of `flow_mlps` and `pressure_kpa`; a phase runs from a `phase` notice
  into a flowing state (infusing, bolus, kvo) until the next state change, or is given whole by a
  notice carrying `volume_ml`.
- Published totals: agent SR when it has the value, else the pumps (`totals_from`).
- Flags (the lead raises them as alerts, each once): critical for a pressure-limit or air event in
  an SR, and for a pump alarm naming pressure, occlusion, air or a stalled motor; warning for the
  other non-routine SR events (see `codes.WARNING_INJECTOR_EVENTS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from suite_daemon.dose.agent_sr import InjectionReport
from suite_daemon.events import DeviceNoticed, DeviceSampled, rfc3339

FLOWING_STATES = frozenset({"infusing", "bolus", "kvo"})
CRITICAL_ALARM_WORDS = ("pressure", "occlu", "air", "stall")
SUMMARY_KEYS = ("volume_total_ml", "peak_flow_mlps", "peak_pressure_kpa")


@dataclass(frozen=True, slots=True)
class InjectionFlag:
    level: Literal["warning", "critical"]
    kind: str
    """`injection_<event kind>` for SR events, `injection_pump_alarm` for pump alarms."""
    source: str
    """`agent_sr` or the pump's device name."""
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _PumpPhase:
    index: int
    state: str
    started: str
    start_volume: float
    ended: str | None = None
    volume_ml: float | None = None
    peak_flow_mlps: float | None = None
    peak_pressure_kpa: float | None = None

    def to_data(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "state": self.state,
            "started": self.started,
            "ended": self.ended,
            "volume_ml": self.volume_ml,
            "peak_flow_mlps": self.peak_flow_mlps,
            "peak_pressure_kpa": self.peak_pressure_kpa,
        }


@dataclass
class _Pump:
    driver: str
    segments: list[tuple[float, float]] = field(default_factory=list)
    segment_id: int | None = None
    peak_flow: float | None = None
    peak_pressure: float | None = None
    phases: list[_PumpPhase] = field(default_factory=list)
    open_phase: _PumpPhase | None = None
    alarms: list[str] = field(default_factory=list)

    @property
    def volume(self) -> float | None:
        return sum(last - first for first, last in self.segments) if self.segments else None


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def _when(t: datetime) -> str:
    return rfc3339(t)


class InjectionLedger:
    def __init__(self) -> None:
        self._sr_phases: dict[str, dict[str, Any]] = {}
        self._sr_events: set[tuple[str, str | None, str | None]] = set()
        self._pumps: dict[str, _Pump] = {}
        self.repairs: list[str] = []

    # --- agent administration SR --------------------------------------------------------------
    def add_report(self, report: InjectionReport) -> list[InjectionFlag]:
        """Merge an agent administration SR; returns the flags not raised before."""
        for phase in report.phases:
            key = phase.uid or f"{report.sop_instance_uid}#{phase.index}"
            self._sr_phases[key] = phase.to_data()
        flags: list[InjectionFlag] = []
        for event in report.events:
            event_key = (event.kind, event.detected, event.phase_uid)
            if event_key in self._sr_events:
                continue
            self._sr_events.add(event_key)
            if event.level in ("warning", "critical"):
                flags.append(
                    InjectionFlag(
                        level=event.level,
                        kind=f"injection_{event.kind}",
                        source="agent_sr",
                        message=f"injector reported {event.kind.replace('_', ' ')}",
                        data={**event.to_data(), "sop_instance_uid": report.sop_instance_uid},
                    )
                )
        return flags

    # --- serial pumps -------------------------------------------------------------------------
    def _pump(self, device: str, driver: str) -> _Pump:
        return self._pumps.setdefault(device, _Pump(driver=driver))

    def add_sample(self, sample: DeviceSampled) -> list[InjectionFlag]:
        if sample.kind != "injection":
            return []
        pump = self._pump(sample.device, sample.driver)
        volume = _number(sample.values.get("volume_ml"))
        if volume is not None:
            if not pump.segments:
                pump.segments.append((volume, volume))
                pump.segment_id = sample.segment
            else:
                first, last = pump.segments[-1]
                restarted = pump.segment_id != sample.segment
                if not restarted and volume < last:
                    self.repairs.append(
                        f"pump {sample.device}: volume_ml went down from {last} to {volume} without a segment "
                        "change; treated as a counter restart"
                    )
                    restarted = True
                if restarted:
                    pump.segments.append((0.0, volume))
                    pump.segment_id = sample.segment
                else:
                    pump.segments[-1] = (first, volume)
        flow = _number(sample.values.get("flow_mlps"))
        pressure = _number(sample.values.get("pressure_kpa"))
        pump.peak_flow = _max(pump.peak_flow, flow if flow and flow > 0 else None)
        pump.peak_pressure = _max(pump.peak_pressure, pressure)
        phase = pump.open_phase
        if phase is not None:
            if pump.volume is not None:
                phase.volume_ml = pump.volume - phase.start_volume
            phase.peak_flow_mlps = _max(phase.peak_flow_mlps, flow if flow and flow > 0 else None)
            phase.peak_pressure_kpa = _max(phase.peak_pressure_kpa, pressure)
        return []

    def add_notice(self, notice: DeviceNoticed) -> list[InjectionFlag]:
        """Pump `phase` and `alarm` notices; others are ignored. Returns new flags."""
        pump = self._pump(notice.device, notice.driver)
        if notice.kind == "alarm":
            code = str(notice.data.get("code", notice.data.get("alarm", "")))
            message = str(notice.data.get("message", "") or code)
            pump.alarms.append(code)
            text = f"{code} {message}".lower()
            if notice.data.get("critical") or any(word in text for word in CRITICAL_ALARM_WORDS):
                return [
                    InjectionFlag(
                        level="critical",
                        kind="injection_pump_alarm",
                        source=notice.device,
                        message=f"pump {notice.device} alarm: {message}",
                        data={"device": notice.device, "driver": notice.driver, **dict(notice.data)},
                    )
                ]
            return []
        if notice.kind != "phase":
            return []
        data = notice.data
        if _number(data.get("volume_ml")) is not None:
            # A driver that reports whole phases.
            self._close(pump, _when(notice.time))
            pump.phases.append(
                _PumpPhase(
                    index=len(pump.phases) + 1,
                    state=str(data.get("phase", data.get("state", "phase"))),
                    started=str(data.get("started", _when(notice.time))),
                    start_volume=0.0,
                    ended=str(data.get("ended", _when(notice.time))),
                    volume_ml=_number(data.get("volume_ml")),
                    peak_flow_mlps=_number(data.get("peak_flow_mlps", data.get("flow_mlps"))),
                    peak_pressure_kpa=_number(data.get("peak_pressure_kpa", data.get("pressure_kpa"))),
                )
            )
            return []
        state = str(data.get("state", "")).lower()
        if pump.open_phase is not None and state != pump.open_phase.state:
            self._close(pump, _when(notice.time))
        if state in FLOWING_STATES and pump.open_phase is None:
            pump.open_phase = _PumpPhase(
                index=len(pump.phases) + 1,
                state=state,
                started=_when(notice.time),
                start_volume=pump.volume or 0.0,
            )
            pump.phases.append(pump.open_phase)
        return []

    def close_phases(self, time: datetime) -> None:
        """End every pump phase still running (the procedure closes at `time`)."""
        for pump in self._pumps.values():
            self._close(pump, _when(time))

    def open_phases(self) -> dict[str, str]:
        """device -> state of the pump phases still running."""
        return {device: pump.open_phase.state for device, pump in self._pumps.items() if pump.open_phase is not None}

    @staticmethod
    def _close(pump: _Pump, when: str) -> None:
        if pump.open_phase is not None:
            pump.open_phase.ended = when
            pump.open_phase = None

    # --- outputs ------------------------------------------------------------------------------
    def sr_totals(self) -> dict[str, Any] | None:
        if not self._sr_phases:
            return None
        phases = list(self._sr_phases.values())
        volumes = [p["volume_ml"] for p in phases if p["volume_ml"] is not None]
        flows = [p["peak_flow_mlps"] for p in phases if p["peak_flow_mlps"] is not None]
        pressures = [p["peak_pressure_kpa"] for p in phases if p["peak_pressure_kpa"] is not None]
        return {
            "volume_total_ml": sum(volumes) if volumes else None,
            "peak_flow_mlps": max(flows) if flows else None,
            "peak_pressure_kpa": max(pressures) if pressures else None,
            "phases": len(phases),
        }

    def pump_totals(self) -> dict[str, dict[str, Any]]:
        return {
            device: {
                "volume_total_ml": pump.volume,
                "peak_flow_mlps": pump.peak_flow,
                "peak_pressure_kpa": pump.peak_pressure,
                "phases": len(pump.phases),
            }
            for device, pump in self._pumps.items()
        }

    def summary(self) -> dict[str, Any]:
        """The summary's `injection` object: contract keys, `sources` and `totals_from`."""
        sr = self.sr_totals() or {}
        pumps = self.pump_totals()
        pump_sum: dict[str, Any] = {"volume_total_ml": None, "peak_flow_mlps": None, "peak_pressure_kpa": None}
        pump_phases = 0
        for values in pumps.values():
            v = values["volume_total_ml"]
            if v is not None:
                pump_sum["volume_total_ml"] = (pump_sum["volume_total_ml"] or 0.0) + v
            pump_sum["peak_flow_mlps"] = _max(pump_sum["peak_flow_mlps"], values["peak_flow_mlps"])
            pump_sum["peak_pressure_kpa"] = _max(pump_sum["peak_pressure_kpa"], values["peak_pressure_kpa"])
            pump_phases += values["phases"]
        out: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for key in SUMMARY_KEYS:
            if sr.get(key) is not None:
                out[key], origin[key] = sr[key], "agent_sr"
            elif pump_sum[key] is not None:
                out[key], origin[key] = pump_sum[key], "pump"
            else:
                out[key] = None
        out["phases"] = sr["phases"] if sr else pump_phases
        sources: list[dict[str, Any]] = []
        if sr:
            sources.append({"source": "agent_sr", **sr, "phase_list": list(self._sr_phases.values())})
        for device, values in pumps.items():
            pump = self._pumps[device]
            sources.append(
                {
                    "source": "pump",
                    "device": device,
                    "driver": pump.driver,
                    **values,
                    "phase_list": [p.to_data() for p in pump.phases],
                }
            )
        out["sources"] = sources
        out["totals_from"] = origin
        return out

    # --- persistence ------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-ready state, so a restarted daemon continues the procedure's totals and flags."""
        return {
            "sr_phases": self._sr_phases,
            "sr_events": [list(k) for k in sorted(self._sr_events, key=repr)],
            "pumps": {
                device: {
                    "driver": p.driver,
                    "segments": p.segments,
                    "segment_id": p.segment_id,
                    "peak_flow": p.peak_flow,
                    "peak_pressure": p.peak_pressure,
                    "phases": [vars(ph) for ph in p.phases],
                    "open_phase": p.phases.index(p.open_phase) if p.open_phase is not None else None,
                    "alarms": p.alarms,
                }
                for device, p in self._pumps.items()
            },
            "repairs": self.repairs,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> InjectionLedger:
        ledger = cls()
        ledger._sr_phases = {k: dict(v) for k, v in state.get("sr_phases", {}).items()}
        ledger._sr_events = {(k[0], k[1], k[2]) for k in state.get("sr_events", [])}
        for device, p in state.get("pumps", {}).items():
            pump = _Pump(
                driver=p["driver"],
                segments=[(float(a), float(b)) for a, b in p["segments"]],
                segment_id=p["segment_id"],
                peak_flow=p["peak_flow"],
                peak_pressure=p["peak_pressure"],
                phases=[_PumpPhase(**ph) for ph in p["phases"]],
                alarms=list(p["alarms"]),
            )
            if p.get("open_phase") is not None:
                pump.open_phase = pump.phases[p["open_phase"]]
            ledger._pumps[device] = pump
        ledger.repairs = list(state.get("repairs", []))
        return ledger
