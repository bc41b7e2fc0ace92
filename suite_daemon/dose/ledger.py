"""Per-procedure dose ledger: merges repeated cumulative RDSRs, MPPS dose, serial dose meters and MR
exposure into the summary's `dose` object, each source kept apart.

Rules (documented in docs/dose.md):
- RDSR: an irradiation event is counted once by its Irradiation Event UID, whichever report carries
  it. Accumulated totals are kept per *scope* (device observer + study) and plane as the largest
  value ever reported, so an older partial report re-sent later never shrinks them. A scope's total
  is max(sum over planes of accumulated totals, sum over its unique events); scopes are added.
- MPPS: per MPPS instance the largest value of each field; instances are added.
- Meter: per device, the drivers' segment rule (docs/drivers.md): the first segment seen in the
  procedure counts from its first value, every later segment from zero (it began with a reset); a
  counter that goes down inside a segment starts a new one (noted in `repairs`).
- Which total is published: RDSR when it has the value, else MPPS, else the meter (`totals_from`).
- `None` means not measured, never 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from suite_daemon.dose.mr import MrExposure
from suite_daemon.dose.rdsr import DoseReport, IrradiationEvent
from suite_daemon.events import DeviceSampled

TOTAL_KEYS = ("dap_total_gym2", "air_kerma_total_gy", "fluoro_time_s", "ctdivol_max_mgy", "dlp_total_mgycm")
_PLANE_FIELDS = ("dap_total_gym2", "air_kerma_total_gy", "fluoro_time_s", "acquisition_time_s")
METER_QUANTITIES: dict[str, str] = {
    "dap_gym2": "dap_total_gym2",
    "air_kerma_gy": "air_kerma_total_gy",
    "fluoro_time_s": "fluoro_time_s",
}
"""Cumulative meter counters (telemetry `values` keys) and the total each one feeds."""
CROSS_CHECKED = ("dap_total_gym2", "air_kerma_total_gy", "fluoro_time_s")
_MR_KEYS = {"sar_wkg": "sar_max_wkg", "db_dt_ts": "db_dt_max_ts", "b1rms_ut": "b1rms_max_ut"}


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A dose meter and the authoritative DICOM source disagree beyond the tolerance."""

    quantity: str
    reference_source: str
    reference_value: float
    device: str
    meter_value: float
    percent: float

    def to_data(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "reference_source": self.reference_source,
            "reference_value": self.reference_value,
            "device": self.device,
            "meter_value": self.meter_value,
            "percent": round(self.percent, 3),
        }


def _add(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _event_fields(e: IrradiationEvent) -> dict[str, float | None]:
    return {
        "dap_total_gym2": e.dap_gym2,
        "air_kerma_total_gy": e.dose_rp_gy,
        "fluoro_time_s": e.duration_s if e.kind == "fluoroscopy" else None,
        "acquisition_time_s": e.duration_s if e.kind == "acquisition" else None,
        "ctdivol_mgy": e.ctdivol_mgy,
        "dlp_mgycm": e.dlp_mgycm,
    }


@dataclass
class _Scope:
    """One modality's reports for one study."""

    accumulated: dict[str, dict[str, float]] = field(default_factory=dict)
    """plane -> field -> largest value reported"""
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Irradiation Event UID -> {"plane", "kind", fields...}"""
    uidless: list[dict[str, Any]] = field(default_factory=list)
    """Events without a UID, from the report that carried most of them."""
    ct_dlp_total: float | None = None
    reports: list[str] = field(default_factory=list)

    def all_events(self) -> list[dict[str, Any]]:
        return [*self.events.values(), *self.uidless]

    def plane_totals(self) -> dict[str, dict[str, float | None]]:
        planes: dict[str, dict[str, float | None]] = {}
        names = set(self.accumulated) | {e["plane"] for e in self.all_events()}
        for plane in sorted(names):
            acc = self.accumulated.get(plane, {})
            mine = [e for e in self.all_events() if e["plane"] == plane]
            planes[plane] = {f: _max(acc.get(f), _sum_field(mine, f)) for f in _PLANE_FIELDS}
        return planes

    def totals(self) -> dict[str, float | None]:
        events = self.all_events()
        out: dict[str, float | None] = {}
        for f in _PLANE_FIELDS:
            acc_sum: float | None = None
            for plane in self.accumulated.values():
                acc_sum = _add(acc_sum, plane.get(f))
            out[f] = _max(acc_sum, _sum_field(events, f))
        ctdivols = [e["ctdivol_mgy"] for e in events if e.get("ctdivol_mgy") is not None]
        out["ctdivol_max_mgy"] = max(ctdivols) if ctdivols else None
        out["dlp_total_mgycm"] = _max(self.ct_dlp_total, _sum_field(events, "dlp_mgycm"))
        return out


def _sum_field(events: list[dict[str, Any]], name: str) -> float | None:
    total: float | None = None
    for e in events:
        total = _add(total, e.get(name))
    return total


@dataclass
class _Meter:
    driver: str
    segments: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """quantity -> [(first, last)] per segment, in arrival order"""
    segment_ids: dict[str, int] = field(default_factory=dict)

    def total(self, quantity: str) -> float | None:
        segs = self.segments.get(quantity)
        if not segs:
            return None
        return sum(last - first for first, last in segs)


class DoseLedger:
    """All dose known for one procedure. Feed it reports and samples; read `summary()`."""

    def __init__(self) -> None:
        self._scopes: dict[str, _Scope] = {}
        self._mpps: dict[str, dict[str, float]] = {}
        self._meters: dict[str, _Meter] = {}
        self._mr: dict[str, float] = {}
        self.repairs: list[str] = []
        """Ledger-level repairs (meter counter jumps...), for the audit journal."""

    # --- inputs ---------------------------------------------------------------------------------
    def add_report(self, report: DoseReport) -> int:
        """Merge one RDSR or MPPS dose report; returns how many irradiation events were new."""
        if report.source == "mpps":
            self._add_mpps(report)
            return 0
        scope_key = f"{report.device.key}|{report.study_instance_uid or ''}"
        scope = self._scopes.setdefault(scope_key, _Scope())
        if report.sop_instance_uid and report.sop_instance_uid not in scope.reports:
            scope.reports.append(report.sop_instance_uid)
        for plane in report.planes:
            acc = scope.accumulated.setdefault(plane.plane, {})
            for name, value in (
                ("dap_total_gym2", plane.dap_total_gym2),
                ("air_kerma_total_gy", plane.dose_rp_total_gy),
                ("fluoro_time_s", plane.fluoro_time_s),
                ("acquisition_time_s", plane.acquisition_time_s),
            ):
                if value is not None:
                    acc[name] = max(acc.get(name, value), value)
        scope.ct_dlp_total = _max(scope.ct_dlp_total, report.ct_dlp_total_mgycm)
        default_plane = report.planes[0].plane if len(report.planes) == 1 else "single"
        new = 0
        uidless: list[dict[str, Any]] = []
        for e in report.events:
            record = {"plane": e.plane or default_plane, "kind": e.kind, **_event_fields(e)}
            if e.uid is None:
                uidless.append(record)
                continue
            known = self._find_event(e.uid)
            if known is None:
                scope.events[e.uid] = record
                new += 1
                continue
            # Same event again: a later report may carry values the earlier one lacked.
            for k, v in record.items():
                if known.get(k) is None and v is not None:
                    known[k] = v
        if len(uidless) >= len(scope.uidless) and uidless:
            new += len(uidless) - len(scope.uidless)
            scope.uidless = uidless
        return new

    def _find_event(self, uid: str) -> dict[str, Any] | None:
        for scope in self._scopes.values():
            if uid in scope.events:
                return scope.events[uid]
        return None

    def _add_mpps(self, report: DoseReport) -> None:
        key = report.sop_instance_uid or f"mpps-{len(self._mpps) + 1}"
        state = self._mpps.setdefault(key, {})
        values = {
            "dap_total_gym2": report.dap_total_gym2,
            "air_kerma_total_gy": report.air_kerma_total_gy,
            "fluoro_time_s": report.fluoro_time_s,
            "ctdivol_max_mgy": report.ctdivol_max_mgy,
            "irradiation_events": float(report.mpps_exposure_count) if report.mpps_exposure_count is not None else None,
        }
        for name, value in values.items():
            if value is not None:
                state[name] = max(state.get(name, value), value)

    def add_sample(self, sample: DeviceSampled) -> bool:
        """Merge a serial dose-meter sample; returns whether any meter total changed (or first appeared)."""
        if sample.kind != "dose":
            return False
        meter = self._meters.setdefault(sample.device, _Meter(driver=sample.driver))
        changed = False
        for quantity in METER_QUANTITIES:
            value = sample.values.get(quantity)
            if value is None or not isinstance(value, (int, float)) or value != value:
                continue
            segs = meter.segments.setdefault(quantity, [])
            if not segs:
                # The first segment counts from where the procedure found the counter.
                segs.append((float(value), float(value)))
                meter.segment_ids[quantity] = sample.segment
                changed = True  # the total goes from "not measured" to 0
                continue
            first, last = segs[-1]
            restarted = meter.segment_ids.get(quantity) != sample.segment
            if not restarted and value < last:
                self.repairs.append(
                    f"meter {sample.device}: {quantity} went down from {last} to {value} without a segment "
                    "change; treated as a counter restart"
                )
                restarted = True
            if restarted:
                # A later segment began with a reset: it counts from zero.
                segs.append((0.0, float(value)))
                meter.segment_ids[quantity] = sample.segment
                changed = changed or value != 0
                continue
            if value != last:
                segs[-1] = (first, float(value))
                changed = True
        return changed

    def add_mr(self, exposure: MrExposure) -> bool:
        """Keep the per-procedure maximum of SAR, dB/dt and B1rms; returns whether one rose."""
        changed = False
        for attr, key in _MR_KEYS.items():
            value = getattr(exposure, attr)
            if value is not None and value > self._mr.get(key, float("-inf")):
                self._mr[key] = value
                changed = True
        return changed

    # --- outputs --------------------------------------------------------------------------------
    def rdsr_totals(self) -> dict[str, Any] | None:
        if not self._scopes:
            return None
        out: dict[str, Any] = dict.fromkeys((*TOTAL_KEYS, "acquisition_time_s"))
        events = 0
        for scope in self._scopes.values():
            t = scope.totals()
            for k in ("dap_total_gym2", "air_kerma_total_gy", "fluoro_time_s", "acquisition_time_s"):
                out[k] = _add(out[k], t[k])
            out["dlp_total_mgycm"] = _add(out["dlp_total_mgycm"], t["dlp_total_mgycm"])
            out["ctdivol_max_mgy"] = _max(out["ctdivol_max_mgy"], t["ctdivol_max_mgy"])
            events += len(scope.all_events())
        out["irradiation_events"] = events
        return out

    def plane_totals(self) -> dict[str, dict[str, float | None]]:
        """RDSR totals per acquisition plane (A, B, single), summed over modalities and studies."""
        planes: dict[str, dict[str, float | None]] = {}
        for scope in self._scopes.values():
            for plane, values in scope.plane_totals().items():
                mine = planes.setdefault(plane, dict.fromkeys(_PLANE_FIELDS))
                for k, v in values.items():
                    mine[k] = _add(mine[k], v)
        return planes

    def mpps_totals(self) -> dict[str, Any] | None:
        if not self._mpps:
            return None
        out: dict[str, Any] = {}
        for name in ("dap_total_gym2", "air_kerma_total_gy", "fluoro_time_s", "irradiation_events"):
            values = [s[name] for s in self._mpps.values() if name in s]
            out[name] = sum(values) if values else None
        ctdivols = [s["ctdivol_max_mgy"] for s in self._mpps.values() if "ctdivol_max_mgy" in s]
        out["ctdivol_max_mgy"] = max(ctdivols) if ctdivols else None
        out["dlp_total_mgycm"] = None
        if out["irradiation_events"] is not None:
            out["irradiation_events"] = int(out["irradiation_events"])
        return out

    def meter_totals(self) -> dict[str, dict[str, float | None]]:
        """Per device: {total key: value} for the cumulative counters it sent."""
        return {
            device: {total: meter.total(q) for q, total in METER_QUANTITIES.items()}
            for device, meter in self._meters.items()
        }

    def totals(self) -> dict[str, Any]:
        """The published totals and, per key, the source they came from."""
        rdsr = self.rdsr_totals() or {}
        mpps = self.mpps_totals() or {}
        meters = self.meter_totals()
        out: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for key in TOTAL_KEYS:
            candidates: list[tuple[str, float | None]] = [("rdsr", rdsr.get(key)), ("mpps", mpps.get(key))]
            meter_sum: float | None = None
            for values in meters.values():
                meter_sum = _add(meter_sum, values.get(key))
            candidates.append(("meter", meter_sum))
            value, source = next(((v, s) for s, v in candidates if v is not None), (None, None))
            out[key] = value
            if source:
                origin[key] = source
        if rdsr:
            out["irradiation_events"] = rdsr["irradiation_events"]
        elif mpps.get("irradiation_events") is not None:
            out["irradiation_events"] = mpps["irradiation_events"]
        else:
            out["irradiation_events"] = 0
        out["totals_from"] = origin
        return out

    def sources(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        rdsr = self.rdsr_totals()
        if rdsr is not None:
            out.append(
                {
                    "source": "rdsr",
                    "reports": sum(len(s.reports) for s in self._scopes.values()),
                    **rdsr,
                    "planes": self.plane_totals(),
                }
            )
        mpps = self.mpps_totals()
        if mpps is not None:
            out.append({"source": "mpps", "reports": len(self._mpps), **mpps})
        for device, values in self.meter_totals().items():
            out.append({"source": "meter", "device": device, "driver": self._meters[device].driver, **values})
        return out

    def summary(self) -> dict[str, Any]:
        """The summary's `dose` object: contract keys, `sources`, `totals_from`, and MR maxima if any."""
        totals = self.totals()
        out: dict[str, Any] = {key: totals[key] for key in TOTAL_KEYS}
        out["irradiation_events"] = totals["irradiation_events"]
        out["sources"] = self.sources()
        out["totals_from"] = totals["totals_from"]
        out.update(self._mr)
        return out

    def cross_check(self, tolerance_percent: float) -> list[Disagreement]:
        """Meter totals that differ from the RDSR (else MPPS) total by more than the tolerance."""
        found: list[Disagreement] = []
        for ref_name, ref in (("rdsr", self.rdsr_totals()), ("mpps", self.mpps_totals())):
            if not ref:
                continue
            for quantity in CROSS_CHECKED:
                reference = ref.get(quantity)
                if reference is None or reference <= 0:
                    continue
                for device, values in self.meter_totals().items():
                    meter = values.get(quantity)
                    if meter is None:
                        continue
                    percent = abs(meter - reference) / reference * 100.0
                    if percent > tolerance_percent:
                        found.append(Disagreement(quantity, ref_name, reference, device, meter, percent))
            break
        return found

    # --- persistence ------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-ready state, so a restarted daemon continues the procedure's totals."""
        return {
            "scopes": {
                k: {
                    "accumulated": s.accumulated,
                    "events": s.events,
                    "uidless": s.uidless,
                    "ct_dlp_total": s.ct_dlp_total,
                    "reports": s.reports,
                }
                for k, s in self._scopes.items()
            },
            "mpps": self._mpps,
            "meters": {
                k: {"driver": m.driver, "segments": m.segments, "segment_ids": m.segment_ids}
                for k, m in self._meters.items()
            },
            "mr": self._mr,
            "repairs": self.repairs,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DoseLedger:
        ledger = cls()
        for k, s in state.get("scopes", {}).items():
            ledger._scopes[k] = _Scope(
                accumulated={p: dict(v) for p, v in s["accumulated"].items()},
                events={u: dict(v) for u, v in s["events"].items()},
                uidless=[dict(v) for v in s["uidless"]],
                ct_dlp_total=s["ct_dlp_total"],
                reports=list(s["reports"]),
            )
        ledger._mpps = {k: dict(v) for k, v in state.get("mpps", {}).items()}
        for k, m in state.get("meters", {}).items():
            ledger._meters[k] = _Meter(
                driver=m["driver"],
                segments={q: [(float(a), float(b)) for a, b in segs] for q, segs in m["segments"].items()},
                segment_ids={q: int(v) for q, v in m["segment_ids"].items()},
            )
        ledger._mr = dict(state.get("mr", {}))
        ledger.repairs = list(state.get("repairs", []))
        return ledger
