"""Turn a procedure's journal records into the series a report plots and tabulates.

Lenient by design: it reads what it recognises and ignores the rest. Quantities are found by key in
the record's `data` and `data.values` (`<quantity>_<unit>`, as on the telemetry topic), with units
converted to the contract's (DAP Gy·m², air kerma Gy, DLP mGy·cm, pressure kPa). See docs/audit.md.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from suite_daemon.events import rfc3339

DAP_UNITS = {"gym2": 1.0, "gycm2": 1e-4, "dgycm2": 1e-5, "cgycm2": 1e-6, "mgycm2": 1e-7, "ugym2": 1e-6}
KERMA_UNITS = {"gy": 1.0, "mgy": 1e-3, "ugy": 1e-6}
DLP_UNITS = {"mgycm": 1.0, "gycm": 1e3}
PRESSURE_UNITS = {"kpa": 1.0, "mpa": 1e3, "bar": 100.0, "psi": 6.894757}

_PREFIX = r"(?:accumulated_|total_|cumulative_)?"
QUANTITIES: dict[str, tuple[re.Pattern[str], dict[str, float]]] = {
    "dap_gym2": (re.compile(_PREFIX + r"dap(?:_total)?_([a-z0-9]+)"), DAP_UNITS),
    "air_kerma_gy": (re.compile(_PREFIX + r"(?:air_kerma|ak|ka_r|kar)(?:_total)?_([a-z0-9]+)"), KERMA_UNITS),
    "dlp_mgycm": (re.compile(_PREFIX + r"dlp(?:_total)?_([a-z0-9]+)"), DLP_UNITS),
}
PRESSURE_RE = re.compile(r"(?:peak_)?pressure_([a-z]+)")
DOSE_EVENTS = frozenset({"dose.sample", "dose.report"})
FLOWING_STATES = frozenset({"infusing", "bolus", "kvo"})
"""Pump states that deliver: a phase runs from entering one until the pump's next state change (as the daemon's
injection ledger counts them)."""
_PHASE_TIME_KEYS = ("start", "started", "started_at", "start_time", "begin", "end", "ended", "ended_at", "duration_s")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def values_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's `data`, with a nested `values` map merged in."""
    data = record.get("data")
    if not isinstance(data, Mapping):
        return {}
    merged = dict(data)
    if isinstance(data.get("values"), Mapping):
        merged.update(data["values"])
    return merged


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def find_quantity(values: Mapping[str, Any], quantity: str) -> float | None:
    """The value of a cumulative quantity in contract units, from whichever unit the key names."""
    pattern, units = QUANTITIES[quantity]
    for key, raw in values.items():
        match = pattern.fullmatch(key)
        number = _number(raw)
        if match and number is not None and match.group(1) in units:
            return number * units[match.group(1)]
    return None


def find_pressure(values: Mapping[str, Any]) -> float | None:
    for key, raw in values.items():
        match = PRESSURE_RE.fullmatch(key)
        number = _number(raw)
        if match and number is not None and match.group(1) in PRESSURE_UNITS:
            return number * PRESSURE_UNITS[match.group(1)]
    return None


def _first(values: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if values.get(key) is not None:
            return values[key]
    return None


@dataclass
class Phase:
    source: str
    label: str
    start: datetime
    end: datetime
    volume_ml: float | None = None
    flow_mlps: float | None = None
    peak_pressure_kpa: float | None = None
    events: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "label": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "volume_ml": self.volume_ml,
            "flow_mlps": self.flow_mlps,
            "peak_pressure_kpa": self.peak_pressure_kpa,
            "events": self.events,
        }


@dataclass
class Marker:
    time: datetime
    label: str
    level: str = "notice"


@dataclass
class Timeline:
    opened: datetime | None = None
    closed: datetime | None = None
    dose: dict[str, dict[str, list[tuple[datetime, float]]]] = field(default_factory=dict)
    """quantity -> source -> [(time, cumulative value in contract units)]"""
    images: list[datetime] = field(default_factory=list)
    pressure: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    """source -> [(time, kPa)] from injection samples."""
    phases: list[Phase] = field(default_factory=list)
    alerts: list[Marker] = field(default_factory=list)
    devices: list[Marker] = field(default_factory=list)
    clock_offsets_s: list[float] = field(default_factory=list)

    @property
    def clock_offset_s(self) -> float | None:
        """The modality's clock minus the daemon's (median of what the records say), if known."""
        return statistics.median(self.clock_offsets_s) if self.clock_offsets_s else None

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        times = [t for t in (self.opened, self.closed) if t] + self.images
        times += [t for q in self.dose.values() for s in q.values() for t, _ in s]
        times += [t for s in self.pressure.values() for t, _ in s]
        times += [p.start for p in self.phases] + [p.end for p in self.phases]
        times += [m.time for m in self.alerts + self.devices]
        return (min(times), max(times)) if times else None

    def dose_by_source(self) -> dict[str, dict[str, Any]]:
        """Per source: the last cumulative value of each quantity and how many readings it sent."""
        table: dict[str, dict[str, Any]] = {}
        for quantity, sources in self.dose.items():
            for source, points in sources.items():
                row = table.setdefault(source, {"readings": 0})
                row[quantity] = points[-1][1]
                row["readings"] = max(row["readings"], len(points))
                row["first"] = min(row.get("first", points[0][0]), points[0][0])  # datetimes until the end
                row["last"] = max(row.get("last", points[-1][0]), points[-1][0])
        return {
            source: {**row, "first": rfc3339(row["first"]), "last": rfc3339(row["last"])}
            for source, row in sorted(table.items())
        }

    def to_json(self) -> dict[str, Any]:
        def points(series: list[tuple[datetime, float]]) -> list[list[Any]]:
            return [[t.isoformat(), v] for t, v in series]

        return {
            "opened": self.opened.isoformat() if self.opened else None,
            "closed": self.closed.isoformat() if self.closed else None,
            "dose": {q: {s: points(p) for s, p in sources.items()} for q, sources in self.dose.items()},
            "images": [t.isoformat() for t in self.images],
            "pressure_kpa": {s: points(p) for s, p in self.pressure.items()},
            "phases": [p.to_json() for p in self.phases],
            "alerts": [{"time": m.time.isoformat(), "level": m.level, "label": m.label} for m in self.alerts],
            "devices": [{"time": m.time.isoformat(), "label": m.label} for m in self.devices],
            "clock_offset_s": self.clock_offset_s,
        }


class _DoseSeries:
    """A cumulative quantity of one source.

    A meter's counter (`counter=True`, from `dose.sample`) runs on from before the procedure, so it is counted as
    the daemon's dose ledger counts it (docs/dose.md): from its first reading in the procedure, and after a
    restart (a higher `segment`, or a counter that went down) from zero, continuing the total. Values of reports
    are already the procedure's totals and are kept as they are.
    """

    def __init__(self, counter: bool = False) -> None:
        self.points: list[tuple[datetime, float]] = []
        self.counter = counter
        self.segment: int | None = None
        self.offset = 0.0
        self.last_raw: float | None = None

    def add(self, time: datetime, value: float, segment: Any) -> None:
        segment = segment if isinstance(segment, int) and not isinstance(segment, bool) else None
        if self.counter and self.last_raw is None:
            self.offset = -value
        elif self.points:
            restarted = segment is not None and self.segment is not None and segment > self.segment
            if self.counter and self.last_raw is not None and value < self.last_raw:
                restarted = True
            if restarted:
                self.offset = self.points[-1][1]
        if segment is not None:
            self.segment = segment
        self.last_raw = value
        self.points.append((time, value + self.offset))


def _source(record: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """Which instrument or document a reading comes from: the device, else the data's own `source`
    (`rdsr`, `mpps`, `agent_sr`), else the event's source."""
    for candidate in (values.get("device"), values.get("source"), record.get("source")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return "unknown"


def _event_name(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("kind") or value.get("name") or value.get("code") or "event")
    return str(value)


def _phase(source: str, ends_by: datetime, values: Mapping[str, Any]) -> Phase:
    """One phase. Without times of its own it is taken to have ended at `ends_by` (the record's time)."""
    start = parse_time(_first(values, "start", "started", "started_at", "start_time", "begin"))
    end = parse_time(_first(values, "end", "ended", "ended_at", "stop", "stop_time", "finished_at"))
    duration = _number(_first(values, "duration_s"))
    length = timedelta(seconds=duration or 0.0)
    if start is None:
        start = (end or ends_by) - length
    if end is None:
        end = start + length if duration else max(ends_by, start)
    label = _first(values, "phase", "name", "label", "agent", "phase_type", "state", "kind") or "phase"
    events = values.get("events") or values.get("injector_events") or []
    return Phase(
        source=source,
        label=str(label),
        start=start,
        end=end,
        volume_ml=_number(_first(values, "volume_ml", "volume_total_ml", "delivered_volume_ml")),
        flow_mlps=_number(_first(values, "flow_mlps", "flow_rate_mlps", "peak_flow_mlps")),
        peak_pressure_kpa=_number(values.get("peak_pressure_kpa")) or find_pressure(values),
        events=[_event_name(e) for e in events] if isinstance(events, list) else [_event_name(events)],
    )


def _phases(record: Mapping[str, Any], time: datetime, values: Mapping[str, Any]) -> list[Phase]:
    """The phases one record describes: itself, or a report's `phases` list (e.g. an injector's SR),
    whose untimed phases are laid end to end, the last one ending at the record's time."""
    source = _source(record, values)
    nested = values.get("phases")
    if not isinstance(nested, list) or not nested:
        return [_phase(source, time, values)]
    phases: list[Phase] = []
    ends_by = time
    for item in reversed([p for p in nested if isinstance(p, Mapping)]):
        phase = _phase(source, ends_by, item)
        phases.append(phase)
        ends_by = phase.start
    phases.reverse()
    report_events = values.get("events")
    if isinstance(report_events, list) and report_events and phases:
        phases[-1].events.extend(_event_name(e) for e in report_events)
    return phases


class _PumpPhases:
    """Phases of pumps that report state changes (`injection.phase` with a `state`, no times or volume of its
    own): a phase runs from entering a flowing state until the pump's next state change; its volume is the
    growth of the pump's `volume_ml` counter meanwhile, its peaks those of the samples meanwhile."""

    def __init__(self) -> None:
        self.volume: dict[str, _DoseSeries] = {}
        self.open: dict[str, tuple[Phase, float | None]] = {}

    def notice(self, time: datetime, device: str, state: str) -> Phase | None:
        current = self.open.get(device)
        if current is not None and current[0].label != state:
            current[0].end = max(time, current[0].start)
            del self.open[device]
            current = None
        if state in FLOWING_STATES and current is None:
            series = self.volume.get(device)
            phase = Phase(source=device, label=state, start=time, end=time)
            self.open[device] = (phase, series.points[-1][1] if series and series.points else None)
            return phase
        return None

    def sample(self, time: datetime, device: str, values: Mapping[str, Any]) -> None:
        volume = _number(values.get("volume_ml"))
        series = self.volume.setdefault(device, _DoseSeries(counter=True))
        if volume is not None:
            series.add(time, volume, values.get("segment"))
        if device not in self.open:
            return
        phase, start_volume = self.open[device]
        phase.end = max(time, phase.start)
        if volume is not None:
            phase.volume_ml = series.points[-1][1] - (start_volume if start_volume is not None else 0.0)
        flow = _number(values.get("flow_mlps"))
        if flow is not None and flow > 0:
            phase.flow_mlps = max(phase.flow_mlps or 0.0, flow)
        pressure = find_pressure(values)
        if pressure is not None:
            phase.peak_pressure_kpa = max(phase.peak_pressure_kpa or 0.0, pressure)

    def finish(self, end: datetime | None) -> None:
        for phase, _ in self.open.values():
            if end is not None:
                phase.end = max(end, phase.start)
        self.open.clear()


def _is_state_change(values: Mapping[str, Any]) -> bool:
    """A pump's state-change notice, as opposed to a record that describes a whole phase."""
    return (
        isinstance(values.get("state"), str)
        and isinstance(values.get("device"), str)
        and values.get("phases") is None
        and all(values.get(key) is None for key in (*_PHASE_TIME_KEYS, "volume_ml"))
    )


def _untimed(values: Mapping[str, Any]) -> bool:
    return all(values.get(key) is None for key in _PHASE_TIME_KEYS if key != "duration_s")


def _lay_end_to_end(phases: list[Phase], ends_by: datetime) -> None:
    """Phases of one report, in order, the last ending at the report's time."""
    for phase in reversed(phases):
        length = phase.end - phase.start
        phase.end = ends_by
        phase.start = ends_by - length
        ends_by = phase.start


def build_timeline(records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any] | None = None) -> Timeline:
    timeline = Timeline()
    dose: dict[str, dict[str, _DoseSeries]] = {}
    pumps = _PumpPhases()
    report_phases: dict[tuple[Any, datetime], list[Phase]] = {}
    """Untimed phases an injector report sent as one record each, by (report, record time)."""
    last_time: datetime | None = None
    for record in records:
        time = parse_time(record.get("time"))
        event = record.get("event")
        if time is None or not isinstance(event, str):
            continue
        last_time = time if last_time is None else max(last_time, time)
        values = values_of(record)
        if event == "procedure.opened" and timeline.opened is None:
            timeline.opened = time
        elif event == "procedure.closed":
            timeline.closed = time
        elif event in DOSE_EVENTS:
            source = _source(record, values)
            for quantity in QUANTITIES:
                value = find_quantity(values, quantity)
                if value is not None:
                    series = dose.setdefault(quantity, {}).setdefault(source, _DoseSeries(event == "dose.sample"))
                    series.add(time, value, values.get("segment"))
        elif event == "image.received":
            timeline.images.append(time)
        elif event == "injection.sample":
            pressure = find_pressure(values)
            if pressure is not None:
                timeline.pressure.setdefault(_source(record, values), []).append((time, pressure))
            pumps.sample(time, _source(record, values), values)
        elif event == "injection.phase":
            if _is_state_change(values):
                phase = pumps.notice(time, values["device"], values["state"].lower())
                if phase is not None:
                    timeline.phases.append(phase)
                continue
            phases = _phases(record, time, values)
            timeline.phases.extend(phases)
            if len(phases) == 1 and values.get("sop_instance_uid") and _untimed(values):
                group = report_phases.setdefault((values.get("sop_instance_uid"), time), [])
                group.append(phases[0])
                _lay_end_to_end(group, time)
        elif event == "alert":
            level = values.get("level") if values.get("level") in ("notice", "warning", "critical") else "warning"
            label = _first(values, "message", "kind") or "alert"
            timeline.alerts.append(Marker(time, str(label), str(level)))
        elif event == "device.status":
            state = values.get("state", "?")
            timeline.devices.append(Marker(time, f"{_source(record, values)}: {state}"))
        offset = _number(values.get("clock_offset_s"))
        if offset is not None:
            timeline.clock_offsets_s.append(offset)
    pumps.finish(timeline.closed or last_time)
    timeline.dose = {q: {s: series.points for s, series in sources.items()} for q, sources in dose.items()}
    if not timeline.clock_offsets_s and summary:
        offset = _summary_clock_offset(summary)
        if offset is not None:
            timeline.clock_offsets_s.append(offset)
    return timeline


def _summary_clock_offset(summary: Mapping[str, Any]) -> float | None:
    candidates = [summary.get("clock_offset_s")]
    for key in ("images", "modality_clock", "clock"):
        nested = summary.get(key)
        if isinstance(nested, Mapping):
            candidates += [nested.get("clock_offset_s"), nested.get("offset_s")]
    return next((n for n in map(_number, candidates) if n is not None), None)
