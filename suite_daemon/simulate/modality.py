"""A simulated CT modality for `suite-daemon simulate`: acts on a running daemon over DICOM.

One procedure per run: MPPS N-CREATE (IN PROGRESS), a CT scout, a guidance series, a growing
cumulative CT RDSR re-sent after every few images (and, as real scanners do, an older partial one
once more at the end), a Performed Imaging Agent Administration SR, then MPPS N-SET (COMPLETED, with
the CT exposure dose). Stopping early sends N-SET DISCONTINUED. Scenario `injector-alarm` adds a
pressure-limit termination reported by the injector.

Peer: calling AE title = the first `dicom.allowed_callers` entry (`SIM_MODALITY` if the list is
empty, which the daemon then refuses), called AE title = `dicom.ae_title`, address 127.0.0.1 (or
`dicom.bind` when it names one address), port `dicom.port`. The pynetdicom SCU is blocking, so each
step runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from suite_daemon.config import SuiteConfig
from suite_daemon.simulate.images import CT_IMAGE_STORAGE, build_ct_image
from suite_daemon.simulate.sr_builders import (
    CONTRAST,
    PERFORMED_AGENT_SR,
    PRESSURE_TERMINATION,
    SALINE,
    XRAY_DOSE_SR,
    Agent,
    CtEvent,
    InjectionPhase,
    InjectorEvent,
    Study,
    build_agent_sr,
    build_ct_rdsr,
)

log = logging.getLogger(__name__)

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
DEFAULT_CALLING_AE = "SIM_MODALITY"
_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


class ModalityError(RuntimeError):
    """The daemon refused or could not be reached; the message says which step and why."""


@dataclass(frozen=True)
class PlannedPhase:
    agent: Agent
    volume_ml: float
    peak_flow_mlps: float
    duration_s: float
    peak_pressure_kpa: float


@dataclass(frozen=True)
class Scenario:
    name: str
    step_s: float
    """Pause between steps; sets the run's length (default about 40 s)."""
    scout: tuple[float, float]
    """(CTDIvol mGy, DLP mGy·cm) of the scout."""
    guidance: tuple[tuple[float, float], ...]
    """(CTDIvol, DLP) of each guidance acquisition; one image and one irradiation event each."""
    rdsr_every: int
    phases: tuple[PlannedPhase, ...]
    resend_partial_rdsr: bool = True
    injector_events: tuple[tuple[str, str, str], ...] = ()
    """CID 71 codes the injector reports in its SR (e.g. a pressure-limit termination)."""

    def expected(self) -> dict[str, Any]:
        """The totals a correct daemon reports for this scenario (from the plan, not from parsing)."""
        events = (self.scout, *self.guidance)
        return {
            "images": 1 + len(self.guidance),
            "irradiation_events": len(events),
            "ctdivol_max_mgy": max(c for c, _ in events),
            "dlp_total_mgycm": sum(d for _, d in events),
            "volume_total_ml": sum(p.volume_ml for p in self.phases),
            "peak_flow_mlps": max(p.peak_flow_mlps for p in self.phases),
            "peak_pressure_kpa": max(p.peak_pressure_kpa for p in self.phases),
            "phases": len(self.phases),
        }


_GUIDANCE = tuple((4.5 + 0.5 * i, 14.0 + 2.0 * i) for i in range(6))
_PHASES = (
    PlannedPhase(CONTRAST, volume_ml=40.0, peak_flow_mlps=3.0, duration_s=13.5, peak_pressure_kpa=620.0),
    PlannedPhase(SALINE, volume_ml=20.0, peak_flow_mlps=3.0, duration_s=6.5, peak_pressure_kpa=480.0),
)
_DEFAULT = Scenario("default", step_s=4.0, scout=(0.9, 11.5), guidance=_GUIDANCE, rdsr_every=2, phases=_PHASES)
SCENARIOS: dict[str, Scenario] = {
    "default": _DEFAULT,
    "quick": replace(_DEFAULT, name="quick", step_s=0.0),
    "injector-alarm": replace(_DEFAULT, name="injector-alarm", injector_events=(PRESSURE_TERMINATION,)),
}
"""Modality plans. Any other scenario name (the device-fault scenarios of `drivers.simulate`) plays
`default`, so one `--scenario` drives both the devices and the modality."""


def _address(config: SuiteConfig) -> str:
    bind = config.dicom.bind
    try:
        if ipaddress.ip_address(bind).is_unspecified:
            return "127.0.0.1"
    except ValueError:
        pass
    return bind


def calling_ae_title(config: SuiteConfig) -> str:
    callers = config.dicom.allowed_callers
    return callers[0].ae_title if callers else DEFAULT_CALLING_AE


class _Scu:
    """Blocking DICOM steps, one association each (a daemon restart between steps is tolerated)."""

    def __init__(self, config: SuiteConfig) -> None:
        if config.dicom.tls is not None:
            raise ModalityError("the simulated modality does not speak DICOM TLS; run it against a plain listener")
        self.host = _address(config)
        self.port = config.dicom.port
        self.called = config.dicom.ae_title
        self.ae = AE(ae_title=calling_ae_title(config))
        self.ae.acse_timeout = 10
        self.ae.dimse_timeout = 30
        self.ae.network_timeout = 10
        for sop_class in (MPPS_SOP_CLASS, CT_IMAGE_STORAGE, XRAY_DOSE_SR, PERFORMED_AGENT_SR):
            self.ae.add_requested_context(sop_class, _SYNTAXES)

    def _with_association(self, what: str, action: Callable[[Any], int]) -> int:
        assoc = self.ae.associate(self.host, self.port, ae_title=self.called)
        if not assoc.is_established:
            reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not established"
            raise ModalityError(f"{what}: association to {self.called}@{self.host}:{self.port} {reason}")
        try:
            return action(assoc)
        finally:
            assoc.release()

    @staticmethod
    def _check(what: str, status: Dataset | None) -> int:
        if status is None or "Status" not in status:
            raise ModalityError(f"{what}: no response (timeout or aborted association)")
        code = int(status.Status)
        if code not in (0x0000, 0xB000, 0xB007, 0xB006):
            raise ModalityError(f"{what}: failed with status 0x{code:04X}")
        return code

    def store(self, ds: Dataset, what: str) -> int:
        return self._with_association(what, lambda a: self._check(what, a.send_c_store(ds)))

    def n_create(self, ds: Dataset, uid: str) -> int:
        return self._with_association(
            "MPPS N-CREATE", lambda a: self._check("MPPS N-CREATE", a.send_n_create(ds, MPPS_SOP_CLASS, uid)[0])
        )

    def n_set(self, ds: Dataset, uid: str, what: str) -> int:
        return self._with_association(what, lambda a: self._check(what, a.send_n_set(ds, MPPS_SOP_CLASS, uid)[0]))


def _mpps_create(study: Study, station_ae: str, started: datetime) -> Dataset:
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = study.study_uid
    step.AccessionNumber = study.accession
    step.RequestedProcedureID = "RP1"
    step.ScheduledProcedureStepID = "SPS1"
    step.ScheduledProcedureStepDescription = "CT-guided intervention"
    step.RequestedProcedureDescription = "CT-guided intervention"
    step.ReferencedStudySequence = DicomSequence([])
    step.ScheduledProtocolCodeSequence = DicomSequence([])
    ds.ScheduledStepAttributesSequence = DicomSequence([step])
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.ReferencedPatientSequence = DicomSequence([])
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = station_ae
    ds.PerformedStationName = study.station
    ds.PerformedLocation = "IR suite"
    ds.PerformedProcedureStepStartDate = started.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = started.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "CT-guided intervention"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = DicomSequence([])
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = DicomSequence([])
    ds.PerformedSeriesSequence = DicomSequence([])
    return ds


def _mpps_final(status: str, series: list[tuple[str, str]], events: list[CtEvent], ended: datetime) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = ended.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = ended.strftime("%H%M%S")
    items = []
    for uid, description in series:
        item = Dataset()
        item.SeriesInstanceUID = uid
        item.SeriesDescription = description
        item.ProtocolName = description
        item.PerformingPhysicianName = ""
        item.OperatorsName = ""
        item.RetrieveAETitle = ""
        item.ReferencedImageSequence = DicomSequence([])
        item.ReferencedNonImageCompositeSOPInstanceSequence = DicomSequence([])
        items.append(item)
    ds.PerformedSeriesSequence = DicomSequence(items)
    exposures = []
    for e in events:
        item = Dataset()
        item.CTDIvol = e.ctdivol_mgy
        exposures.append(item)
    if exposures:
        ds.CTExposureSequence = DicomSequence(exposures)
    return ds


async def run_modality(config: SuiteConfig, scenario: str, stop: asyncio.Event, *, step_s: float | None = None) -> None:
    """Play one procedure of `scenario` against the daemon of `config`. Returns when done or stopped.

    `step_s` overrides the scenario's pause between steps. Raises `ModalityError` (naming the failing
    step) if the daemon refuses or cannot be reached.
    """
    plan = SCENARIOS.get(scenario, _DEFAULT)
    if step_s is not None:
        plan = replace(plan, step_s=step_s)
    if stop.is_set():
        return
    scu = _Scu(config)
    study = Study(
        accession=f"SIM{datetime.now(UTC):%H%M%S}",
        station=config.dicom.allowed_callers[0].ae_title if config.dicom.allowed_callers else "SIMCT",
        modality_device_uid=generate_uid(),
    )
    mpps_uid = generate_uid()
    scout_series, guidance_series, rdsr_series = generate_uid(), generate_uid(), generate_uid()
    events: list[CtEvent] = []
    sent_rdsrs: list[Dataset] = []
    events_in_last_rdsr = [0]

    async def pause(steps: float = 1.0) -> bool:
        """Sleep interruptibly; True when asked to stop."""
        if plan.step_s <= 0:
            return stop.is_set()
        try:
            await asyncio.wait_for(stop.wait(), timeout=plan.step_s * steps)
        except TimeoutError:
            return False
        return True

    async def call(fn: Callable[..., int], *args: Any) -> int:
        return await asyncio.to_thread(fn, *args)

    async def discontinue() -> None:
        ds = _mpps_final("DISCONTINUED", [(scout_series, "Scout"), (guidance_series, "Guidance")], events, _now())
        await call(scu.n_set, ds, mpps_uid, "MPPS N-SET DISCONTINUED")
        log.info("simulated modality stopped early: MPPS discontinued")

    async def send_rdsr() -> None:
        ds = build_ct_rdsr(list(events), study, series_uid=rdsr_series, content_dt=_now())
        ds.InstanceNumber = len(sent_rdsrs) + 1
        sent_rdsrs.append(ds)
        events_in_last_rdsr[0] = len(events)
        await call(scu.store, ds, f"C-STORE RDSR {len(sent_rdsrs)}")

    await call(scu.n_create, _mpps_create(study, calling_ae_title(config), _now()), mpps_uid)
    log.info("simulated modality: MPPS %s in progress for study %s", mpps_uid, study.study_uid)
    if await pause():
        return await discontinue()

    events.append(
        CtEvent(
            generate_uid(),
            *plan.scout,
            protocol="Scout",
            acquisition_type=("113805", "DCM", "Constant Angle Acquisition"),
        )
    )
    scout = build_ct_image(
        study, scout_series, 1, 1, _now(), description="Scout", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")
    )
    await call(scu.store, scout, "C-STORE scout")
    if await pause():
        return await discontinue()

    for n, (ctdivol, dlp) in enumerate(plan.guidance, start=1):
        events.append(CtEvent(generate_uid(), ctdivol, dlp))
        image = build_ct_image(study, guidance_series, 2, n, _now())
        await call(scu.store, image, f"C-STORE guidance image {n}")
        if n % plan.rdsr_every == 0:
            await send_rdsr()
        if n == len(plan.guidance) // 2:
            phases = [
                InjectionPhase(
                    generate_uid(), p.agent, p.volume_ml, p.peak_flow_mlps, p.duration_s, p.peak_pressure_kpa
                )
                for p in plan.phases
            ]
            injector_events = [
                InjectorEvent(code, _now().strftime("%Y%m%d%H%M%S"), phases[0].uid) for code in plan.injector_events
            ]
            agent_sr = build_agent_sr(
                phases, study, events=injector_events, content_dt=_now(), completed=not injector_events
            )
            await call(scu.store, agent_sr, "C-STORE agent administration SR")
        if await pause():
            return await discontinue()

    if events_in_last_rdsr[0] < len(events):
        await send_rdsr()
    final_events = list(events)
    if plan.resend_partial_rdsr and len(sent_rdsrs) > 1:
        await call(scu.store, sent_rdsrs[0], "C-STORE older partial RDSR (re-sent)")
    if await pause(0.5):
        return await discontinue()
    final = _mpps_final("COMPLETED", [(scout_series, "Scout"), (guidance_series, "Guidance")], final_events, _now())
    await call(scu.n_set, final, mpps_uid, "MPPS N-SET COMPLETED")
    log.info("simulated modality: MPPS %s completed", mpps_uid)


def _now() -> datetime:
    return datetime.now(UTC)
