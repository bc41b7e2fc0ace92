"""The procedure state machine (docs/correlation.md): which procedure each input belongs to, when
procedures open and close, what is emitted, published and saved.

Pure: the clock is injected (`now` for timeouts and rate limits; facts carry their inputs' receive
times), and the only I/O is reading a received dose or agent SR file, through injectable readers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from drivers.registry import DRIVERS
from suite_daemon.config import SuiteConfig
from suite_daemon.correlator import clock, thresholds
from suite_daemon.correlator.ids import new_procedure_id
from suite_daemon.correlator.index_store import ProcedureIndex
from suite_daemon.correlator.preroll import PrerollBuffer
from suite_daemon.correlator.procedure import Procedure
from suite_daemon.dose.agent_sr import InjectionReport, parse_agent_sr
from suite_daemon.dose.injection_ledger import FLOWING_STATES, InjectionFlag
from suite_daemon.dose.mpps import parse_mpps
from suite_daemon.dose.mr import mr_exposure
from suite_daemon.dose.rdsr import DoseReport, parse_rdsr
from suite_daemon.events import (
    SCHEMA,
    Alerted,
    AssociationRejected,
    DeviceNoticed,
    DeviceSampled,
    DeviceStatusChanged,
    Event,
    ImageStored,
    Input,
    MppsReceived,
    OperatorCommanded,
    rfc3339,
)
from suite_daemon.mqtt import topics
from suite_daemon.mqtt.outbox import Message
from suite_daemon.pipeline import conversions
from suite_daemon.pipeline.commands import response
from suite_daemon.pipeline.correlation import Outcome

log = structlog.get_logger(__name__)

MAX_CLOSED_HELD = 50
"""Closed procedures kept whole (ledgers and all) for late arrivals; older ones keep only their studies."""
MAX_EVICTED_STUDIES = 5000
MAX_PREPARED = 64
FINAL_MPPS = frozenset({"COMPLETED", "DISCONTINUED"})
META_KEY = "correlator"
PROC_PREFIX = "procedure/"
SOP_PREFIX = "sop/"

RdsrReader = Callable[[Path], DoseReport]
AgentReader = Callable[[Path], InjectionReport]


def _mpps_modality(attributes: Mapping[str, Any]) -> str | None:
    element = attributes.get("00080060")
    if isinstance(element, Mapping):
        values = element.get("Value") or []
        if values and isinstance(values[0], str) and values[0].strip():
            return values[0].strip()
    return None


class ProcedureCorrelator:
    def __init__(
        self,
        config: SuiteConfig,
        index: ProcedureIndex | None = None,
        read_rdsr: RdsrReader = parse_rdsr,
        read_agent_sr: AgentReader = parse_agent_sr,
    ) -> None:
        self.suite_id = config.suite.id
        self.root = config.topic_root
        self.idle_timeout = timedelta(seconds=config.procedure.idle_timeout_s)
        self.summary_interval = timedelta(seconds=config.procedure.summary_min_interval_s)
        self.alerts_config = config.alerts
        self.index = index
        self.read_rdsr = read_rdsr
        self.read_agent_sr = read_agent_sr
        self.preroll = PrerollBuffer(config.procedure.preroll_s)
        self.procedures: dict[str, Procedure] = {}
        """The open procedure and the most recent closed ones, oldest first."""
        self.open: Procedure | None = None
        self.evicted: dict[str, str] = {}
        """Study uid → id of a closed procedure no longer held whole."""
        self.reclose: set[str] = set()
        """Closed procedures that took late arrivals: a `procedure.closed` record follows at the next tick."""
        self._pump_states: dict[str, DeviceNoticed] = {}
        """Each pump's last state-change notice, so that a procedure opening while a pump delivers starts a phase."""
        self._published: dict[str, tuple[datetime, str]] = {}
        self._pending_summaries: set[str] = set()
        # per-call bookkeeping, folded into the Outcome by `_finish`
        self._changed: set[str] = set()
        self._touched: set[str] = set()
        self._forced: set[str] = set()
        self._meta_changed = False
        self._meta_committed = False
        """The saved meta record is known to match memory (set once a commit carrying it succeeded)."""
        self._current_changed = False
        self._parsed: dict[Path, object] = {}
        self._parsed_lock = threading.Lock()

    # ==============================================================================================
    # optional: parsing off the event loop
    # ==============================================================================================
    def needs_prepare(self, item: Input) -> bool:
        """True for a received dose or agent SR (the only inputs `prepare` parses)."""
        return self._reader_for(item) is not None

    def _reader_for(self, item: Input) -> Callable[[Path], object] | None:
        if not isinstance(item, ImageStored) or item.duplicate:
            return None
        return (
            self.read_rdsr
            if item.summary.get("is_dose_sr")
            else self.read_agent_sr
            if item.summary.get("is_agent_sr")
            else None
        )

    def prepare(self, item: Input) -> None:
        """Parse a received dose or agent SR ahead of `handle`, from a worker thread (thread-safe), so the
        pipeline's loop is not blocked by a large file: `await asyncio.to_thread(correlator.prepare, item)`.
        Without it, `handle` parses the file itself."""
        reader = self._reader_for(item)
        if reader is None:
            return
        assert isinstance(item, ImageStored)
        try:
            result: object = reader(item.path)
        except Exception as exc:
            result = exc
        with self._parsed_lock:
            self._parsed[item.path] = result
            while len(self._parsed) > MAX_PREPARED:
                del self._parsed[next(iter(self._parsed))]

    def _read(self, reader: Callable[[Path], Any], path: Path) -> Any:
        with self._parsed_lock:
            result = self._parsed.pop(path, None)
        if result is None:
            return reader(path)
        if isinstance(result, Exception):
            raise result
        return result

    # ==============================================================================================
    # the Correlator protocol
    # ==============================================================================================
    def startup(self, now: datetime, state: Mapping[str, str]) -> Outcome:
        out = Outcome()
        meta = json.loads(state[META_KEY]) if META_KEY in state else {}
        for pid in meta.get("order", []):
            text = state.get(PROC_PREFIX + pid)
            if text is None:
                continue
            try:
                self.procedures[pid] = Procedure.from_state(text)
            except (ValueError, KeyError, TypeError) as exc:
                # Never stop the daemon over a bad saved record: say so and carry on without it.
                log.error("correlator_state_unreadable", procedure_id=pid, error=str(exc))
                out.events.append(
                    conversions.alert_event(
                        Alerted(
                            "critical",
                            "correlator_state_unreadable",
                            f"saved state of procedure {pid} could not be read; it continues as closed",
                            {"error": str(exc)},
                            None,
                            now,
                        )
                    )
                )
        for key in state:
            if key.startswith(SOP_PREFIX):
                pid, _, sop = key[len(SOP_PREFIX) :].partition("/")
                if pid in self.procedures:
                    self.procedures[pid].sop_uids.add(sop)
        self.evicted = dict(meta.get("evicted", {}))
        self.reclose = {pid for pid in meta.get("reclose", []) if pid in self.procedures}
        open_id = meta.get("open")
        self.open = self.procedures.get(open_id) if open_id else None
        if self.open is not None and not self.open.is_open:
            self.open = None
        for proc in self.procedures.values():
            self._forced.add(proc.procedure_id)
        self._current_changed = True
        log.info(
            "correlator_restored", procedures=len(self.procedures), open=self.open.procedure_id if self.open else None
        )
        self._finish(now, out)
        return out

    def tick(self, now: datetime) -> Outcome:
        out = Outcome()
        self.preroll.prune(now)
        if self.open is not None and now - self.open.last_activity >= self.idle_timeout:
            proc = self.open
            # Closed when the timeout ran out, not when it was noticed (a daemon down for hours).
            self._close(
                proc,
                min(now, proc.last_activity + self.idle_timeout),
                "idle_timeout",
                out,
                {"last_activity_at": rfc3339(proc.last_activity), "idle_timeout_s": self.idle_timeout.total_seconds()},
            )
        for pid in sorted(self.reclose):
            reclosed = self.procedures.get(pid)
            if reclosed is not None and not reclosed.is_open:
                out.events.append(
                    Event(
                        "procedure.closed",
                        "correlator",
                        {
                            "reason": "late_arrivals",
                            "reclosed": True,
                            "closed_at": rfc3339(reclosed.closed_at) if reclosed.closed_at else None,
                            "late_arrivals": reclosed.late_arrivals,
                        },
                        pid,
                        now,
                    )
                )
                self._forced.add(pid)
        if self.reclose:
            self.reclose.clear()
            self._meta_changed = True
        self._touched |= self._pending_summaries
        self._pending_summaries.clear()
        self._finish(now, out)
        return out

    def handle(self, item: Input, now: datetime) -> Outcome:
        out = Outcome()
        match item:
            case ImageStored():
                self._on_object(item, out)
            case MppsReceived():
                self._on_mpps(item, out)
            case DeviceSampled():
                self._on_sample(item, out)
            case DeviceNoticed():
                self._on_notice(item, out)
            case DeviceStatusChanged():
                self._on_status(item, out)
            case OperatorCommanded():
                self._on_command(item, out)
            case Alerted():
                self._on_alerted(item, out)
            case AssociationRejected():
                out.events.append(conversions.rejected_event(item))
            case _:
                raise TypeError(f"unknown input {type(item).__name__}")
        self._finish(now, out)
        return out

    # ==============================================================================================
    # opening and closing
    # ==============================================================================================
    def _find(self, study: str | None, accession: str | None) -> Procedure | None:
        """The procedure an object belongs to by identity: the open one first, then newest closed."""
        if not study and not accession:
            return None
        if self.open is not None and self.open.owns(study, accession):
            return self.open
        for proc in reversed(self.procedures.values()):
            if proc.owns(study, accession):
                return proc
        return None

    def _open(
        self,
        time: datetime,
        opened_by: str,
        study: str | None,
        accession: str | None,
        out: Outcome,
        extra: Mapping[str, Any] | None = None,
    ) -> Procedure:
        key = study or accession or f"{opened_by}:{rfc3339(time)}:{len(self.procedures)}"
        pid = new_procedure_id(self.suite_id, time, key, self.procedures)
        if self.open is not None:
            reason = "new_study" if opened_by != "operator" else "operator_open"
            self._close(self.open, time, reason, out, {"next_procedure_id": pid})
        proc = Procedure(pid, opened_at=time, opened_by=opened_by, last_activity=time)
        proc.add_identity(study, accession)
        self.procedures[pid] = proc
        self.open = proc
        preroll = self.preroll.take(time)
        out.events.append(
            Event(
                "procedure.opened",
                "correlator",
                {
                    "opened_by": opened_by,
                    "study_instance_uid": study,
                    "accession_number": accession,
                    "preroll_samples": len(preroll),
                    **(extra or {}),
                },
                pid,
                time,
            )
        )
        for sample in preroll:
            self._attach_sample(proc, sample, out, preroll=True)
        for notice in self._pump_states.values():
            if str(notice.data.get("state", "")).lower() in FLOWING_STATES:
                # The pump was already delivering: its phase in this procedure starts now (as the volume does).
                running = replace(notice, data={**notice.data, "continued": True}, time=time)
                proc.see_device(running.device, running.driver, "injection")
                proc.injection.add_notice(running)
                out.events.append(conversions.device_notice_event(running, pid))
        self._changed.add(pid)
        self._forced.add(pid)
        self._meta_changed = self._current_changed = True
        self._evict(out)
        log.info("procedure_opened", procedure_id=pid, opened_by=opened_by, preroll_samples=len(preroll))
        return proc

    def _close(
        self, proc: Procedure, time: datetime, reason: str, out: Outcome, extra: Mapping[str, Any] | None = None
    ) -> None:
        proc.state = "closed"
        proc.closed_at = max(time, proc.opened_at)
        proc.injection.close_phases(proc.closed_at)  # a closed procedure has no running pump phase
        proc.close_reason = reason
        out.events.append(
            Event(
                "procedure.closed",
                "correlator",
                {
                    "reason": reason,
                    **(extra or {}),
                    "images": proc.images,
                    "irradiation_events": proc.dose.totals()["irradiation_events"],
                },
                proc.procedure_id,
                proc.closed_at,
            )
        )
        if self.open is proc:
            self.open = None
        self.reclose.discard(proc.procedure_id)
        self._changed.add(proc.procedure_id)
        self._forced.add(proc.procedure_id)
        self._meta_changed = self._current_changed = True
        log.info("procedure_closed", procedure_id=proc.procedure_id, reason=reason)

    def _evict(self, out: Outcome) -> None:
        closed = [p for p in self.procedures.values() if not p.is_open]
        for proc in closed[: max(0, len(closed) - MAX_CLOSED_HELD)]:
            pid = proc.procedure_id
            del self.procedures[pid]
            self._published.pop(pid, None)
            self.reclose.discard(pid)
            for study in proc.studies:
                self.evicted[study] = pid
            out.state[PROC_PREFIX + pid] = None
            for sop in proc.sop_uids:
                out.state[f"{SOP_PREFIX}{pid}/{sop}"] = None
        while len(self.evicted) > MAX_EVICTED_STUDIES:
            del self.evicted[next(iter(self.evicted))]

    def _activity(self, proc: Procedure, time: datetime) -> None:
        if proc.is_open and time > proc.last_activity:
            proc.last_activity = time

    def _late(self, proc: Procedure) -> None:
        proc.late_arrivals += 1
        self.reclose.add(proc.procedure_id)
        self._meta_changed = True

    def _changed_proc(self, proc: Procedure) -> None:
        self._changed.add(proc.procedure_id)
        self._touched.add(proc.procedure_id)

    # ==============================================================================================
    # DICOM objects
    # ==============================================================================================
    def _on_object(self, item: ImageStored, out: Outcome) -> None:
        s = item.summary
        study, accession = s.get("study_instance_uid"), s.get("accession_number")
        proc = self._find(study, accession)
        if proc is None and study and study in self.evicted:
            pid = self.evicted[study]
            out.events.append(
                conversions.image_event(
                    item, pid, {"late": True, "note": "procedure no longer held in memory: its summary is not updated"}
                )
            )
            out.events.append(
                Event(
                    "procedure.closed",
                    "correlator",
                    {"reason": "late_arrivals", "reclosed": True},
                    pid,
                    item.received_at,
                )
            )
            return
        if proc is None:
            if self.open is not None and not self.open.studies and not self.open.accessions:
                proc = self.open  # an operator opened it without naming the study: this is the study
                proc.add_identity(study, accession)
            elif study or accession:
                proc = self._open(
                    item.received_at, "image", study, accession, out, {"sop_instance_uid": s.get("sop_instance_uid")}
                )
            elif self.open is not None:
                proc = self.open
            else:
                out.events.append(conversions.image_event(item, None, {"note": "no study identity, no procedure"}))
                return
        else:
            proc.add_identity(study, accession)
        late = not proc.is_open
        sop = s.get("sop_instance_uid")
        duplicate = item.duplicate or (bool(sop) and sop in proc.sop_uids)
        offset = None if duplicate else clock.observe(proc.clock_offsets, s, item.received_at)
        out.events.append(
            conversions.image_event(
                item, proc.procedure_id, {"duplicate": duplicate, "late": late, "clock_offset_s": offset}
            )
        )
        if late:
            self._late(proc)
        self._activity(proc, item.received_at)
        self._changed_proc(proc)
        if duplicate:
            return
        if sop:
            proc.sop_uids.add(sop)
            out.state[f"{SOP_PREFIX}{proc.procedure_id}/{sop}"] = "1"
        proc.objects += 1
        if s.get("is_dose_sr"):
            self._dose_sr(proc, item, late, out)
        elif s.get("is_agent_sr"):
            self._agent_sr(proc, item, late, out)
        else:
            proc.images += 1
            proc.bytes += int(s.get("bytes") or 0)
            if s.get("series_instance_uid"):
                proc.series.add(s["series_instance_uid"])
            if proc.modality is None and s.get("modality") and s.get("modality") != "SR":
                proc.modality = s["modality"]
            exposure = mr_exposure(s)
            if exposure.empty or not proc.dose.add_mr(exposure):
                return
        self._check_thresholds(proc, item.received_at, out)

    def _dose_sr(self, proc: Procedure, item: ImageStored, late: bool, out: Outcome) -> None:
        try:
            report: DoseReport = self._read(self.read_rdsr, item.path)
        except Exception as exc:  # a bad file is recorded, never fatal; the stored file stays in the spool
            self._parse_failed(proc, item, "dose_report_unreadable", exc, out)
            return
        new_events = proc.dose.add_report(report)
        totals = proc.dose.totals()
        out.events.append(
            Event(
                "dose.report",
                "dicom",
                {**report.to_data(), "new_irradiation_events": new_events, "late": late, "procedure_totals": totals},
                proc.procedure_id,
                item.received_at,
            )
        )
        for repair in report.repairs:
            out.journal.append(
                (proc.procedure_id, "dose.repair", {"sop_instance_uid": report.sop_instance_uid, "repair": repair})
            )
        self._cross_check(proc, item.received_at, out)

    def _agent_sr(self, proc: Procedure, item: ImageStored, late: bool, out: Outcome) -> None:
        try:
            report: InjectionReport = self._read(self.read_agent_sr, item.path)
        except Exception as exc:
            self._parse_failed(proc, item, "injection_report_unreadable", exc, out)
            return
        flags = proc.injection.add_report(report)
        for phase in report.phases:
            key = phase.uid or f"{report.sop_instance_uid}#{phase.index}"
            if key in proc.agent_phases:
                continue
            proc.agent_phases.add(key)
            out.events.append(
                Event(
                    "injection.phase",
                    "dicom",
                    {
                        "source": "agent_sr",
                        "sop_instance_uid": report.sop_instance_uid,
                        "late": late,
                        **phase.to_data(),
                    },
                    proc.procedure_id,
                    item.received_at,
                )
            )
        for repair in report.repairs:
            out.journal.append(
                (proc.procedure_id, "injection.repair", {"sop_instance_uid": report.sop_instance_uid, "repair": repair})
            )
        self._raise_flags(proc, flags, item.received_at, out)

    def _parse_failed(self, proc: Procedure, item: ImageStored, kind: str, exc: Exception, out: Outcome) -> None:
        sop = item.summary.get("sop_instance_uid")
        log.warning("correlator_parse_failed", procedure_id=proc.procedure_id, sop_instance_uid=sop, error=str(exc))
        self._alert(
            proc,
            "warning",
            kind,
            f"object {sop} could not be read: {exc}",
            {"sop_instance_uid": sop, "path": str(item.path), "error": str(exc)},
            item.received_at,
            out,
        )

    # ==============================================================================================
    # MPPS
    # ==============================================================================================
    def _on_mpps(self, item: MppsReceived, out: Outcome) -> None:
        status = (item.status or "").upper()
        study, accession = item.study_instance_uid, item.accession_number
        proc = next((p for p in reversed(self.procedures.values()) if item.sop_instance_uid in p.mpps), None)
        proc = proc or self._find(study, accession)
        if item.action == "create" and status == "IN PROGRESS" and (proc is None or not proc.is_open):
            if self.open is not None and not self.open.studies and not self.open.accessions:
                proc = self.open
                proc.add_identity(study, accession)
            else:
                proc = self._open(
                    item.received_at, "mpps", study, accession, out, {"mpps_sop_instance_uid": item.sop_instance_uid}
                )
        data: dict[str, Any] = {**conversions.mpps_data(item)}
        if proc is None:
            # An N-SET for a step this daemon never saw open (its state was lost): kept, on the daemon stream.
            report = self._mpps_report(item, None, out)
            data["dose"] = report.to_data() if report else None
            out.events.append(Event("dose.report", "dicom", data, None, item.received_at))
            out.events.append(
                conversions.alert_event(
                    Alerted(
                        "warning",
                        "mpps_unmatched",
                        f"MPPS {item.sop_instance_uid} matches no procedure",
                        {"mpps_sop_instance_uid": item.sop_instance_uid, "study_instance_uid": study},
                        None,
                        item.received_at,
                    )
                )
            )
            return
        proc.add_identity(study, accession)
        late = not proc.is_open
        proc.mpps[item.sop_instance_uid] = item.status
        if proc.modality is None:
            proc.modality = _mpps_modality(item.attributes)
        report = self._mpps_report(item, proc, out)
        if report is not None:
            proc.dose.add_report(report)
        data.update(
            {"dose": report.to_data() if report else None, "late": late, "procedure_totals": proc.dose.totals()}
        )
        out.events.append(Event("dose.report", "dicom", data, proc.procedure_id, item.received_at))
        self._activity(proc, item.received_at)
        self._changed_proc(proc)
        self._check_thresholds(proc, item.received_at, out)
        self._cross_check(proc, item.received_at, out)
        if status in FINAL_MPPS and proc.is_open:
            self._close(
                proc, item.received_at, f"mpps_{status.lower()}", out, {"mpps_sop_instance_uid": item.sop_instance_uid}
            )
        elif late:
            self._late(proc)

    def _mpps_report(self, item: MppsReceived, proc: Procedure | None, out: Outcome) -> DoseReport | None:
        try:
            report = parse_mpps(item.attributes, item.sop_instance_uid, item.study_instance_uid)
        except ValueError as exc:
            if proc is not None:
                self._alert(
                    proc,
                    "warning",
                    "mpps_dose_unreadable",
                    f"MPPS dose attributes unreadable: {exc}",
                    {"mpps_sop_instance_uid": item.sop_instance_uid, "error": str(exc)},
                    item.received_at,
                    out,
                )
            return None
        if report is not None and proc is not None:
            for repair in report.repairs:
                out.journal.append(
                    (
                        proc.procedure_id,
                        "dose.repair",
                        {"mpps_sop_instance_uid": item.sop_instance_uid, "repair": repair},
                    )
                )
        return report

    # ==============================================================================================
    # serial devices
    # ==============================================================================================
    def _on_sample(self, item: DeviceSampled, out: Outcome) -> None:
        if self.open is None:
            self.preroll.add(item)
            out.events.append(conversions.sample_event(item, None))
            return
        self._attach_sample(self.open, item, out)

    def _attach_sample(self, proc: Procedure, item: DeviceSampled, out: Outcome, preroll: bool = False) -> None:
        event = conversions.sample_event(item, proc.procedure_id)
        if preroll:
            event = replace(event, data={**event.data, "preroll": True})
        out.events.append(event)
        proc.see_device(item.device, item.driver, item.kind)
        proc.devices[item.device]["samples"] += 1
        if item.kind == "dose":
            changed = proc.dose.add_sample(item)
            flags: list[InjectionFlag] = []
        else:
            before = proc.injection.pump_totals().get(item.device)
            flags = proc.injection.add_sample(item)
            changed = proc.injection.pump_totals().get(item.device) != before
        if changed and not preroll:
            self._activity(proc, item.host_time)
        self._changed.add(proc.procedure_id)
        if changed or preroll:
            self._touched.add(proc.procedure_id)
            self._check_thresholds(proc, item.host_time, out)
            if item.kind == "dose":
                self._cross_check(proc, item.host_time, out)
        self._raise_flags(proc, flags, item.host_time, out)

    def _on_notice(self, item: DeviceNoticed, out: Outcome) -> None:
        proc = self.open
        pid = proc.procedure_id if proc else None
        if item.kind == "phase" and "state" in item.data and item.data.get("volume_ml") is None:
            self._pump_states[item.device] = item
        if item.kind == "raw":
            out.journal.append((pid or "unassigned", "device.raw", conversions.raw_record(item)))
            return
        spec = DRIVERS.get(item.driver)
        known = proc.devices.get(item.device, {}).get("kind") if proc else None
        is_pump = item.kind == "phase" or known == "injection" or (spec is not None and spec.kind == "injection")
        flags: list[InjectionFlag] = []
        if proc is not None:
            proc.see_device(item.device, item.driver, "injection" if is_pump else None)
            if is_pump and item.kind in ("phase", "alarm"):
                flags = proc.injection.add_notice(item)
            self._activity(proc, item.time)
            self._changed_proc(proc)
        if flags and proc is not None:
            self._raise_flags(proc, flags, item.time, out)  # the critical pump alarm replaces the generic one
            return
        event = conversions.device_notice_event(item, pid)
        out.events.append(event)
        if proc is not None and event.type == "alert":
            proc.add_alert(event.data["level"], event.data["kind"], event.data["message"], item.time)

    def _on_status(self, item: DeviceStatusChanged, out: Outcome) -> None:
        proc = self.open
        if item.state != "connected":
            self._pump_states.pop(item.device, None)  # its state is unknown until it reports again
        out.events.append(conversions.device_status_event(item, proc.procedure_id if proc else None))
        if proc is not None:
            spec = DRIVERS.get(item.driver)
            proc.see_device(item.device, item.driver, spec.kind if spec else None)
            proc.devices[item.device]["state"] = item.state
            self._changed_proc(proc)

    # ==============================================================================================
    # operator commands and other components' alerts
    # ==============================================================================================
    def _on_command(self, item: OperatorCommanded, out: Outcome) -> None:
        study, accession = item.study_instance_uid or None, item.accession_number or None
        error: str | None = None
        proc: Procedure | None = self.open
        outcome = "ok"
        if item.action == "open":
            if proc is None:
                proc = self._open(
                    item.time,
                    "operator",
                    study,
                    accession,
                    out,
                    {"request_id": item.request_id, "operator": item.operator, "reason": item.reason},
                )
                outcome = "opened"
            elif (study or accession) and not proc.owns(study, accession):
                proc.add_identity(study, accession)
                self._activity(proc, item.time)
                self._changed_proc(proc)
                outcome = "linked"
            elif not (study or accession):
                error = f"procedure {proc.procedure_id} is already open; close it first"
            else:
                outcome = "already_open"
        elif item.action == "close":
            if proc is None:
                error = "no procedure is open"
            elif (study or accession) and not proc.owns(study, accession):
                error = f"the open procedure {proc.procedure_id} is not that study"
            else:
                self._close(
                    proc,
                    item.time,
                    "operator",
                    out,
                    {"request_id": item.request_id, "operator": item.operator, "reason_text": item.reason},
                )
                outcome = "closed"
        else:
            error = f"unknown command {item.action!r}"
        pid = proc.procedure_id if proc is not None else None
        record = {
            "request_id": item.request_id,
            "action": item.action,
            "study_instance_uid": study,
            "accession_number": accession,
            "operator": item.operator,
            "reason": item.reason,
            "received_at": rfc3339(item.time),
            "status": "error" if error else "ok",
            "outcome": outcome if not error else None,
            "error": error,
            "procedure_id": pid,
        }
        out.journal.append((pid or "daemon", "operator.command", record))
        fields: dict[str, Any] = {"procedure_id": pid} if pid else {}
        if error:
            fields["error"] = error
        out.messages.append(response(self.root, item.request_id, "error" if error else "ok", **fields))
        log.info(
            "operator_command",
            action=item.action,
            request_id=item.request_id,
            status=record["status"],
            procedure_id=pid,
            error=error,
        )

    def _on_alerted(self, item: Alerted, out: Outcome) -> None:
        out.events.append(conversions.alert_event(item))
        proc = self.procedures.get(item.procedure_id) if item.procedure_id else None
        if proc is not None:
            proc.add_alert(item.level, item.kind, item.message, item.time)
            self._changed_proc(proc)

    # ==============================================================================================
    # alerts
    # ==============================================================================================
    def _alert(
        self,
        proc: Procedure,
        level: str,
        kind: str,
        message: str,
        data: Mapping[str, Any],
        time: datetime,
        out: Outcome,
    ) -> None:
        out.events.append(conversions.alert_event(Alerted(level, kind, message, dict(data), proc.procedure_id, time)))  # type: ignore[arg-type]
        proc.add_alert(level, kind, message, time)
        self._changed_proc(proc)

    def _check_thresholds(self, proc: Procedure, time: datetime, out: Outcome) -> None:
        if not any(getattr(self.alerts_config, q.config_key) for q in thresholds.QUANTITIES):
            return
        summary = {"dose": proc.dose.summary(), "injection": proc.injection.summary()}
        for crossing in thresholds.crossings(self.alerts_config, summary, proc.fired):
            proc.fired.add(crossing.key)
            self._alert(proc, crossing.level, crossing.kind, crossing.message, crossing.data, time, out)

    def _cross_check(self, proc: Procedure, time: datetime, out: Outcome) -> None:
        for d in proc.dose.cross_check(self.alerts_config.dose_source_tolerance_percent):
            key = f"disagreement:{d.quantity}:{d.device}:{d.reference_source}"
            if key in proc.fired:
                continue
            proc.fired.add(key)
            self._alert(
                proc,
                "warning",
                "dose_source_disagreement",
                f"dose meter {d.device} {d.quantity} {d.meter_value:.6g} differs from the "
                f"{d.reference_source} value {d.reference_value:.6g} by {d.percent:.1f} %",
                {**d.to_data(), "tolerance_percent": self.alerts_config.dose_source_tolerance_percent},
                time,
                out,
            )

    def _raise_flags(self, proc: Procedure, flags: Iterable[InjectionFlag], time: datetime, out: Outcome) -> None:
        for flag in flags:
            self._alert(proc, flag.level, flag.kind, flag.message, {"source": flag.source, **flag.data}, time, out)

    # ==============================================================================================
    # what each call commits: saved state, summaries, procedure/current, index rows
    # ==============================================================================================
    def _finish(self, now: datetime, out: Outcome) -> None:
        for pid in self._changed:
            proc = self.procedures.get(pid)
            if proc is not None:
                out.state[PROC_PREFIX + pid] = proc.to_state  # serialised once per batch, at its commit
        # The meta record (which can hold thousands of evicted studies) changes only with `_meta_changed`;
        # it is rewritten with other changes only until a commit carrying it succeeded (after a restart,
        # or after a failed commit), not with every event.
        if self._meta_changed or (self._changed and not self._meta_committed):
            out.state[META_KEY] = json.dumps(
                {
                    "open": self.open.procedure_id if self.open else None,
                    "order": list(self.procedures),
                    "evicted": self.evicted,
                    "reclose": sorted(self.reclose),
                },
                separators=(",", ":"),
            )
            self._meta_committed = False
            out.after_commit.append(self._meta_saved)
        for pid in list(dict.fromkeys([*self._forced, *self._touched])):
            proc = self.procedures.get(pid)
            if proc is None:
                continue
            forced = pid in self._forced
            last = self._published.get(pid)
            if not forced and last is not None and now - last[0] < self.summary_interval:
                self._pending_summaries.add(pid)
                continue
            self._publish(proc, now, forced, out)
        if self._current_changed and self.open is None:
            out.messages.append(
                Message.json(
                    topics.procedure_current(self.root),
                    {"schema": SCHEMA, "time": rfc3339(now), "state": "idle"},
                    retain=True,
                )
            )
        self._changed.clear()
        self._touched.clear()
        self._forced.clear()
        self._meta_changed = self._current_changed = False

    def _meta_saved(self) -> None:
        self._meta_committed = True

    def _publish(self, proc: Procedure, now: datetime, forced: bool, out: Outcome) -> None:
        summary = proc.summary()
        text = json.dumps(summary, sort_keys=True)
        last = self._published.get(proc.procedure_id)
        if not forced and last is not None and last[1] == text and not self._current_changed:
            return
        self._published[proc.procedure_id] = (now, text)
        self._pending_summaries.discard(proc.procedure_id)
        payload = {**summary, "time": rfc3339(now)}
        out.messages.append(Message.json(topics.procedure_summary(self.root, proc.procedure_id), payload, retain=True))
        if proc is self.open:
            out.messages.append(Message.json(topics.procedure_current(self.root), payload, retain=True))
        if self.index is not None:
            index = self.index
            out.after_commit.append(lambda: index.upsert(summary))
