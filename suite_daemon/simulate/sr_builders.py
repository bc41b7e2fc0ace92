"""Builders of standard-shaped dose and injection SR objects (valid Part 10, proper SOP classes).

Used by the tests (expected values are the builder *inputs*, computed independently of the parser)
and by the simulated modality. Every vendor departure the parser repairs can be switched on through
`Vendor`. Units are converted here with a table of this module's own, on purpose: a shared table
would hide a wrong factor from the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
ENHANCED_XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.76"
PERFORMED_AGENT_SR = "1.2.840.10008.5.1.4.1.1.88.75"

# Factor from the canonical unit into the unit written (value_written = canonical / factor).
_INTO: dict[str, float] = {
    "Gy.m2": 1.0,
    "Gym2": 1.0,
    "Gy.cm2": 1e-4,
    "dGy.cm2": 1e-5,
    "dGycm2": 1e-5,
    "mGy.cm2": 1e-7,
    "uGy.m2": 1e-6,
    "Gy": 1.0,
    "mGy": 1e-3,
    "mGy.cm": 1.0,
    "mGycm": 1.0,
    "Gy.cm": 1e3,
    "s": 1.0,
    "ms": 1e-3,
    "min": 60.0,
    "kPa": 1.0,
    "[psi]": 6.894757293168361,
    "psi": 6.894757293168361,
    "ml": 1.0,
    "ml/s": 1.0,
}


@dataclass(frozen=True)
class Vendor:
    """Departures from the templates seen in real files; the default is a clean standard object."""

    declare_template: bool = True
    enhanced: bool = False
    """Enhanced X-Ray Radiation Dose SR SOP class instead of the classic one."""
    dap_unit: str = "Gy.m2"
    dose_unit: str = "Gy"
    dlp_unit: str = "mGy.cm"
    time_unit: str = "s"
    meaning_typos: bool = False
    empty_items: bool = False
    """Adds NUM items with no value (and an empty container) next to the real ones."""
    omit_accumulated: bool = False
    omit_fluoro_time: bool = False
    omit_event_uid: bool = False
    omit_plane_in_accumulated: bool = False
    multivalued_pulses: bool = False
    """Per-pulse kVp/mA/pulse width as one multi-valued NUM instead of repeated NUM items."""
    omit_dlp_total: bool = False
    no_unit_scheme: bool = False
    """Unit codes sent with the scheme "99VENDOR" instead of UCUM."""
    legacy_codes: bool = False
    """Retired SNOMED-RT codes, e.g. Fluoroscopy as (P5-06000, SRT) instead of (44491008, SCT)."""


@dataclass(frozen=True)
class XrayEvent:
    uid: str
    kind: Literal["fluoroscopy", "acquisition"]
    dap_gym2: float
    dose_rp_gy: float
    duration_s: float
    plane: Literal["A", "B", "single"] = "single"
    kvp: Sequence[float] = (80.0,)
    tube_current_ma: Sequence[float] = (10.0,)
    pulse_width_ms: Sequence[float] = (8.0,)
    started: str = "20261122100000"


@dataclass(frozen=True)
class CtEvent:
    uid: str
    ctdivol_mgy: float
    dlp_mgycm: float
    phantom: Literal["head", "body"] = "body"
    target_region: tuple[str, str, str] = ("818981001", "SCT", "Abdomen")
    protocol: str = "Guidance"
    acquisition_type: tuple[str, str, str] = ("113804", "DCM", "Sequenced Acquisition")


@dataclass(frozen=True)
class Study:
    study_uid: str = field(default_factory=generate_uid)
    accession: str = "ACC0001"
    patient_id: str = "SIM-0001"
    patient_name: str = "SIMULATED^PATIENT"
    modality_device_uid: str = "1.2.826.0.1.3680043.10.1000.1"
    station: str = "SIMCT01"
    manufacturer: str = "Suite Simulator"


_TYPOS = {"Dose Area Product Total": "Dose Area Prodcut Total", "Dose (RP) Total": "Dose RP Totl", "DLP": "D.L.P."}


def code(value: str, scheme: str, meaning: str, vendor: Vendor | None = None) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = _TYPOS.get(meaning, meaning) if vendor is not None and vendor.meaning_typos else meaning
    return item


class _Tree:
    """Small helpers producing content items (relationship CONTAINS unless told)."""

    def __init__(self, vendor: Vendor) -> None:
        self.vendor = vendor

    def _item(self, vt: str, concept: tuple[str, str, str], rel: str) -> Dataset:
        item = Dataset()
        item.RelationshipType = rel
        item.ValueType = vt
        item.ConceptNameCodeSequence = DicomSequence([code(*concept, vendor=self.vendor)])
        return item

    def container(self, concept: tuple[str, str, str], children: list[Dataset], rel: str = "CONTAINS") -> Dataset:
        item = self._item("CONTAINER", concept, rel)
        item.ContinuityOfContent = "SEPARATE"
        item.ContentSequence = DicomSequence(children)
        return item

    def num(
        self,
        concept: tuple[str, str, str],
        value: float | Sequence[float] | None,
        unit: str,
        rel: str = "CONTAINS",
        canonical_unit: str | None = None,
    ) -> Dataset:
        """`value` is in the canonical unit; it is written in `unit` (converted with this module's table)."""
        item = self._item("NUM", concept, rel)
        mv = Dataset()
        if value is not None:
            factor = _INTO[unit] / _INTO[canonical_unit] if canonical_unit else 1.0
            values = [value] if isinstance(value, (int, float)) else list(value)
            written = [f"{v / factor:.10g}" for v in values]
            mv.NumericValue = written if len(written) > 1 else written[0]
        scheme = "99VENDOR" if self.vendor.no_unit_scheme else "UCUM"
        mv.MeasurementUnitsCodeSequence = DicomSequence([code(unit, scheme, unit)])
        item.MeasuredValueSequence = DicomSequence([mv]) if value is not None else DicomSequence([])
        return item

    def code_item(self, concept: tuple[str, str, str], value: tuple[str, str, str], rel: str = "CONTAINS") -> Dataset:
        item = self._item("CODE", concept, rel)
        item.ConceptCodeSequence = DicomSequence([code(*value)])
        return item

    def uidref(self, concept: tuple[str, str, str], uid: str, rel: str = "CONTAINS") -> Dataset:
        item = self._item("UIDREF", concept, rel)
        item.UID = uid
        return item

    def text(self, concept: tuple[str, str, str], value: str, rel: str = "CONTAINS") -> Dataset:
        item = self._item("TEXT", concept, rel)
        item.TextValue = value
        return item

    def dt(self, concept: tuple[str, str, str], value: str, rel: str = "CONTAINS") -> Dataset:
        item = self._item("DATETIME", concept, rel)
        item.DateTime = value
        return item


def part10_dataset(
    sop_class: str, study: Study, sop_uid: str | None, series_uid: str, modality: str, when: datetime
) -> Dataset:
    """A Part 10 data set with file meta and the patient, study, series and equipment modules filled."""
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid) if sop_uid else generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.AccessionNumber = study.accession
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = study.manufacturer
    ds.StationName = study.station
    return ds


def _sr_dataset(sop_class: str, study: Study, sop_uid: str | None, series_uid: str, content_dt: datetime) -> Dataset:
    ds = part10_dataset(sop_class, study, sop_uid, series_uid, "SR", content_dt)
    ds.SeriesNumber = 900
    ds.InstanceNumber = 1
    ds.ContentDate = content_dt.strftime("%Y%m%d")
    ds.ContentTime = content_dt.strftime("%H%M%S.%f")
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([])
    ds.PerformedProcedureCodeSequence = DicomSequence([])
    return ds


def _observer(t: _Tree, study: Study) -> list[Dataset]:
    return [
        t.code_item(("121005", "DCM", "Observer Type"), ("121007", "DCM", "Device"), rel="HAS OBS CONTEXT"),
        t.uidref(("121012", "DCM", "Device Observer UID"), study.modality_device_uid, rel="HAS OBS CONTEXT"),
        t.text(("121013", "DCM", "Device Observer Name"), study.station, rel="HAS OBS CONTEXT"),
        t.text(("121014", "DCM", "Device Observer Manufacturer"), study.manufacturer, rel="HAS OBS CONTEXT"),
    ]


_PLANE_CODES = {
    "A": ("113620", "DCM", "Plane A"),
    "B": ("113621", "DCM", "Plane B"),
    "single": ("113622", "DCM", "Single Plane"),
}


def _per_pulse(t: _Tree, concept: tuple[str, str, str], values: Sequence[float], unit: str) -> list[Dataset]:
    if t.vendor.multivalued_pulses or len(values) == 1:
        return [t.num(concept, list(values) if len(values) > 1 else values[0], unit)]
    return [t.num(concept, v, unit) for v in values]


def build_projection_rdsr(
    events: Sequence[XrayEvent],
    study: Study | None = None,
    *,
    vendor: Vendor | None = None,
    sop_uid: str | None = None,
    series_uid: str | None = None,
    content_dt: datetime | None = None,
) -> Dataset:
    """A TID 10001 Projection X-Ray dose report: accumulated data per plane (sums of `events`),
    then one TID 10003 container per event."""
    vendor = vendor or Vendor()
    study = study or Study()
    t = _Tree(vendor)
    content_dt = content_dt or datetime.now(UTC)
    sop_class = ENHANCED_XRAY_DOSE_SR if vendor.enhanced else XRAY_DOSE_SR
    ds = _sr_dataset(sop_class, study, sop_uid, series_uid or generate_uid(), content_dt)
    ds.ConceptNameCodeSequence = DicomSequence([code("113701", "DCM", "X-Ray Radiation Dose Report")])
    if vendor.declare_template:
        tpl = Dataset()
        tpl.MappingResource = "DCMR"
        tpl.TemplateIdentifier = "10001"
        ds.ContentTemplateSequence = DicomSequence([tpl])
    content: list[Dataset] = [
        t.code_item(
            ("121058", "DCM", "Procedure reported"), ("113704", "DCM", "Projection X-Ray"), rel="HAS CONCEPT MOD"
        ),
        *_observer(t, study),
        t.dt(("113809", "DCM", "Start of X-Ray Irradiation"), events[0].started if events else "20261122100000"),
    ]
    planes = sorted({e.plane for e in events}, key=["A", "B", "single"].index) or ["single"]
    if not vendor.omit_accumulated:
        for plane in planes:
            mine = [e for e in events if e.plane == plane]
            fluoro = [e for e in mine if e.kind == "fluoroscopy"]
            acq = [e for e in mine if e.kind == "acquisition"]
            items: list[Dataset] = []
            if not vendor.omit_plane_in_accumulated:
                items.append(
                    t.code_item(("113764", "DCM", "Acquisition Plane"), _PLANE_CODES[plane], rel="HAS CONCEPT MOD")
                )
            totals = [
                t.num(
                    ("113722", "DCM", "Dose Area Product Total"),
                    sum(e.dap_gym2 for e in mine),
                    vendor.dap_unit,
                    canonical_unit="Gy.m2",
                ),
                t.num(
                    ("113726", "DCM", "Fluoro Dose Area Product Total"),
                    sum(e.dap_gym2 for e in fluoro),
                    vendor.dap_unit,
                    canonical_unit="Gy.m2",
                ),
                t.num(
                    ("113727", "DCM", "Acquisition Dose Area Product Total"),
                    sum(e.dap_gym2 for e in acq),
                    vendor.dap_unit,
                    canonical_unit="Gy.m2",
                ),
                t.num(
                    ("113725", "DCM", "Dose (RP) Total"),
                    sum(e.dose_rp_gy for e in mine),
                    vendor.dose_unit,
                    canonical_unit="Gy",
                ),
                t.num(
                    ("113728", "DCM", "Fluoro Dose (RP) Total"),
                    sum(e.dose_rp_gy for e in fluoro),
                    vendor.dose_unit,
                    canonical_unit="Gy",
                ),
                t.num(
                    ("113729", "DCM", "Acquisition Dose (RP) Total"),
                    sum(e.dose_rp_gy for e in acq),
                    vendor.dose_unit,
                    canonical_unit="Gy",
                ),
                t.num(
                    ("113855", "DCM", "Total Acquisition Time"),
                    sum(e.duration_s for e in acq),
                    vendor.time_unit,
                    canonical_unit="s",
                ),
                t.num(("113731", "DCM", "Total Number of Radiographic Frames"), float(len(acq)), "1"),
            ]
            if not vendor.omit_fluoro_time:
                totals.append(
                    t.num(
                        ("113730", "DCM", "Total Fluoro Time"),
                        sum(e.duration_s for e in fluoro),
                        vendor.time_unit,
                        canonical_unit="s",
                    )
                )
            if vendor.empty_items:
                totals.append(t.num(("113722", "DCM", "Dose Area Product Total"), None, vendor.dap_unit))
            inner = t.container(("113702", "DCM", "Accumulated X-Ray Dose Data"), items + totals)
            content.append(inner)
    for e in events:
        fluoroscopy = ("P5-06000", "SRT", "Fluoroscopy") if vendor.legacy_codes else ("44491008", "SCT", "Fluoroscopy")
        kind = fluoroscopy if e.kind == "fluoroscopy" else ("113611", "DCM", "Stationary Acquisition")
        items = [
            t.code_item(("113764", "DCM", "Acquisition Plane"), _PLANE_CODES[e.plane]),
            t.dt(("111526", "DCM", "DateTime Started"), e.started),
            t.code_item(("113721", "DCM", "Irradiation Event Type"), kind),
            t.num(("122130", "DCM", "Dose Area Product"), e.dap_gym2, vendor.dap_unit, canonical_unit="Gy.m2"),
            t.num(("113738", "DCM", "Dose (RP)"), e.dose_rp_gy, vendor.dose_unit, canonical_unit="Gy"),
            t.num(("113742", "DCM", "Irradiation Duration"), e.duration_s, vendor.time_unit, canonical_unit="s"),
            *_per_pulse(t, ("113733", "DCM", "KVP"), e.kvp, "kV"),
            *_per_pulse(t, ("113734", "DCM", "X-Ray Tube Current"), e.tube_current_ma, "mA"),
            *_per_pulse(t, ("113793", "DCM", "Pulse Width"), e.pulse_width_ms, "ms"),
            t.num(("113768", "DCM", "Number of Pulses"), float(len(e.kvp)), "{pulses}"),
        ]
        if not vendor.omit_event_uid:
            items.insert(1, t.uidref(("113769", "DCM", "Irradiation Event UID"), e.uid))
        if vendor.empty_items:
            items.append(t.num(("113770", "DCM", "Column Angulation"), None, "deg"))
        content.append(t.container(("113706", "DCM", "Irradiation Event X-Ray Data"), items))
    ds.ContentSequence = DicomSequence(content)
    return ds


def build_ct_rdsr(
    events: Sequence[CtEvent],
    study: Study | None = None,
    *,
    vendor: Vendor | None = None,
    sop_uid: str | None = None,
    series_uid: str | None = None,
    content_dt: datetime | None = None,
) -> Dataset:
    """A TID 10011 CT dose report: accumulated DLP (sum of `events`) and one TID 10013 per event."""
    vendor = vendor or Vendor()
    study = study or Study()
    t = _Tree(vendor)
    content_dt = content_dt or datetime.now(UTC)
    sop_class = ENHANCED_XRAY_DOSE_SR if vendor.enhanced else XRAY_DOSE_SR
    ds = _sr_dataset(sop_class, study, sop_uid, series_uid or generate_uid(), content_dt)
    ds.ConceptNameCodeSequence = DicomSequence([code("113701", "DCM", "X-Ray Radiation Dose Report")])
    if vendor.declare_template:
        tpl = Dataset()
        tpl.MappingResource = "DCMR"
        tpl.TemplateIdentifier = "10011"
        ds.ContentTemplateSequence = DicomSequence([tpl])
    accumulated = [t.num(("113812", "DCM", "Total Number of Irradiation Events"), float(len(events)), "{events}")]
    if not vendor.omit_dlp_total:
        accumulated.append(
            t.num(
                ("113813", "DCM", "CT Dose Length Product Total"),
                sum(e.dlp_mgycm for e in events),
                vendor.dlp_unit,
                canonical_unit="mGy.cm",
            )
        )
    if vendor.empty_items:
        accumulated.append(t.num(("113813", "DCM", "CT Dose Length Product Total"), None, vendor.dlp_unit))
    content: list[Dataset] = [
        t.code_item(
            ("121058", "DCM", "Procedure reported"),
            ("77477000", "SCT", "Computerized axial tomography"),
            rel="HAS CONCEPT MOD",
        ),
        *_observer(t, study),
        t.container(("113811", "DCM", "CT Accumulated Dose Data"), accumulated),
    ]
    phantoms = {
        "head": ("113690", "DCM", "IEC Head Dosimetry Phantom"),
        "body": ("113691", "DCM", "IEC Body Dosimetry Phantom"),
    }
    for e in events:
        dose = [
            t.num(("113830", "DCM", "Mean CTDIvol"), e.ctdivol_mgy, "mGy"),
            t.code_item(("113835", "DCM", "CTDIw Phantom Type"), phantoms[e.phantom]),
            t.num(("113838", "DCM", "DLP"), e.dlp_mgycm, vendor.dlp_unit, canonical_unit="mGy.cm"),
        ]
        items = [
            t.text(("125203", "DCM", "Acquisition Protocol"), e.protocol),
            t.code_item(("123014", "DCM", "Target Region"), e.target_region),
            t.code_item(("113820", "DCM", "CT Acquisition Type"), e.acquisition_type),
            t.container(("113829", "DCM", "CT Dose"), dose),
        ]
        if not vendor.omit_event_uid:
            items.insert(3, t.uidref(("113769", "DCM", "Irradiation Event UID"), e.uid))
        content.append(t.container(("113819", "DCM", "CT Acquisition"), items))
    ds.ContentSequence = DicomSequence(content)
    return ds


# --- Performed Imaging Agent Administration SR (Supplement 164) ----------------------------------


@dataclass(frozen=True)
class Agent:
    identifier: str
    concept: tuple[str, str, str]


CONTRAST = Agent("A1", ("109218004", "SCT", "Iohexol"))
SALINE = Agent("S1", ("373757009", "SCT", "Saline"))


@dataclass(frozen=True)
class InjectionPhase:
    uid: str
    agent: Agent
    volume_ml: float
    peak_flow_mlps: float
    duration_s: float
    peak_pressure_kpa: float
    pressure_limit_kpa: float = 2068.0
    phase_type: tuple[str, str, str] = ("130168", "DCM", "Automatic Programmed Administration Phase")


@dataclass(frozen=True)
class InjectorEvent:
    kind: tuple[str, str, str]
    """A CID 71 code, e.g. ("130156", "DCM", "Terminated due to pressure above termination limit")."""
    detected: str = "20261122100100"
    phase_uid: str | None = None


PRESSURE_TERMINATION = ("130156", "DCM", "Terminated due to pressure above termination limit")
AIR_DETECTED = ("130175", "DCM", "Air detected")
MANUAL_HOLD = ("130267", "DCM", "Manual hold started")


def build_agent_sr(
    phases: Sequence[InjectionPhase],
    study: Study | None = None,
    *,
    events: Sequence[InjectorEvent] = (),
    vendor: Vendor | None = None,
    pressure_unit: str = "kPa",
    sop_uid: str | None = None,
    content_dt: datetime | None = None,
    completed: bool = True,
) -> Dataset:
    """A Performed Imaging Agent Administration SR: agents, one step with `phases`, injector events."""
    vendor = vendor or Vendor()
    study = study or Study()
    t = _Tree(vendor)
    content_dt = content_dt or datetime.now(UTC)
    ds = _sr_dataset(PERFORMED_AGENT_SR, study, sop_uid, generate_uid(), content_dt)
    ds.Modality = "SR"
    ds.ConceptNameCodeSequence = DicomSequence([code("130227", "DCM", "Performed Imaging Agent Administration")])
    if vendor.declare_template:
        tpl = Dataset()
        tpl.MappingResource = "DCMR"
        tpl.TemplateIdentifier = "11020"
        ds.ContentTemplateSequence = DicomSequence([tpl])
    agents = {p.agent.identifier: p.agent for p in phases}
    content: list[Dataset] = [*_observer(t, study)]
    for agent in agents.values():
        content.append(
            t.container(
                ("130183", "DCM", "Imaging Agent Information"),
                [
                    t.text(("130254", "DCM", "Imaging Agent Identifier"), agent.identifier),
                    t.code_item(("130238", "DCM", "Imaging Agent Component"), agent.concept),
                ],
            )
        )
    phase_items = []
    for n, p in enumerate(phases, start=1):
        activity = t.container(
            ("130237", "DCM", "Imaging Agent Administration Activity"),
            [
                t.text(("130255", "DCM", "Referenced Imaging Agent Identifier"), p.agent.identifier),
                t.num(("130208", "DCM", "Starting Flow Rate of administration"), p.peak_flow_mlps, "ml/s"),
                t.num(("130209", "DCM", "Ending Flow Rate of administration"), p.peak_flow_mlps, "ml/s"),
                t.num(("118565006", "SCT", "Volume"), p.volume_ml, "ml"),
                t.num(("103335007", "SCT", "Duration"), p.duration_s, "s"),
            ],
        )
        phase_items.append(
            t.container(
                ("130202", "DCM", "Imaging Agent Administration Phase"),
                [
                    t.text(("130203", "DCM", "Imaging Agent Administration Phase Identifier"), str(n)),
                    t.uidref(("130261", "DCM", "Imaging Agent Administration Performed Phase UID"), p.uid),
                    t.code_item(("130204", "DCM", "Imaging Agent Administration Phase Type"), p.phase_type),
                    t.num(("130240", "DCM", "Total Phase Volume Administered"), p.volume_ml, "ml"),
                    t.num(("130244", "DCM", "Peak Flow Rate in Phase Activity"), p.peak_flow_mlps, "ml/s"),
                    t.num(
                        ("130245", "DCM", "Peak Pressure in Phase Activity"),
                        p.peak_pressure_kpa,
                        pressure_unit,
                        canonical_unit="kPa",
                    ),
                    t.num(
                        ("130193", "DCM", "Pressure Limit"), p.pressure_limit_kpa, pressure_unit, canonical_unit="kPa"
                    ),
                    activity,
                ],
            )
        )
    step = t.container(
        ("130195", "DCM", "Imaging Agent Administration Step"),
        [
            t.uidref(("130246", "DCM", "Imaging Agent Administration Performed Step UID"), generate_uid()),
            t.num(("130241", "DCM", "Total Step Volume Administered"), sum(p.volume_ml for p in phases), "ml"),
            *phase_items,
        ],
    )
    content.append(t.container(("130192", "DCM", "Imaging Agent Administration Steps"), [step]))
    if events:
        event_items = []
        for ev in events:
            item = t.code_item(("130234", "DCM", "Imaging Agent Administration Injector Event Type"), ev.kind)
            props = [t.dt(("130235", "DCM", "Injector Event Detection DateTime"), ev.detected, rel="HAS PROPERTIES")]
            if ev.phase_uid:
                props.append(
                    t.uidref(
                        ("130262", "DCM", "Referenced Imaging Agent Administration Phase UID"),
                        ev.phase_uid,
                        rel="HAS PROPERTIES",
                    )
                )
            item.ContentSequence = DicomSequence(props)
            event_items.append(item)
        content.append(t.container(("130233", "DCM", "Imaging Agent Administration Injector Events"), event_items))
    status = ("255594003", "SCT", "Complete") if completed else PRESSURE_TERMINATION
    content.append(t.code_item(("130211", "DCM", "Imaging Agent Administration Completion Status"), status))
    ds.ContentSequence = DicomSequence(content)
    return ds


def save(ds: Dataset, path: str | Path) -> Path:
    """Write as a Part 10 file (preamble, DICM, file meta)."""
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path
