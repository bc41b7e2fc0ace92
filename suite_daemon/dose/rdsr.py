"""X-Ray Radiation Dose SR (and Enhanced X-Ray RDSR) -> `DoseReport`.

Projection X-ray follows TID 10001 (accumulated data per plane, TID 10002/10004; irradiation events,
TID 10003/10003a); CT follows TID 10011 (accumulated, TID 10012; CT acquisitions, TID 10013). The
content tree is walked by concept codes only. Vendor departures are repaired where the meaning is
certain and every repair is listed in `DoseReport.repairs` for the audit journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, Literal

import pydicom
from pydicom.dataset import Dataset

from suite_daemon.dose import codes as C
from suite_daemon.dose.sr_tree import Node, Repairs, child_value, child_values, code_of

RDSR_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
        "1.2.840.10008.5.1.4.1.1.88.76",  # Enhanced X-Ray Radiation Dose SR
    }
)
_EVENT_CONTAINERS = frozenset({C.IRRADIATION_EVENT_XRAY_DATA, C.CT_ACQUISITION})
_PLANES = {C.PLANE_A: "A", C.PLANE_B: "B", C.SINGLE_PLANE: "single"}
_PHANTOMS = {C.IEC_HEAD_PHANTOM: "head", C.IEC_BODY_PHANTOM: "body"}
_ACQUISITION_TYPES = frozenset({C.STATIONARY_ACQUISITION, C.STEPPING_ACQUISITION, C.ROTATIONAL_ACQUISITION})

EventKind = Literal["fluoroscopy", "acquisition", "ct", "unknown"]


class DoseParseError(ValueError):
    """The object is not a dose report this parser can read (the reason says why)."""


DoseKind = Literal["projection", "ct", "mixed", "unknown"]


@dataclass(frozen=True, slots=True)
class IrradiationEvent:
    uid: str | None
    kind: EventKind
    datetime: str | None = None
    """DICOM DT as sent by the modality (its clock)."""
    plane: str | None = None
    dap_gym2: float | None = None
    dose_rp_gy: float | None = None
    duration_s: float | None = None
    kvp_kv: float | None = None
    """Averaged over non-zero pulses when the modality sent per-pulse values."""
    tube_current_ma: float | None = None
    pulse_width_ms: float | None = None
    pulses: float | None = None
    ctdivol_mgy: float | None = None
    dlp_mgycm: float | None = None
    phantom: str | None = None
    """`head`, `body`, or the code meaning sent."""
    target_region: str | None = None
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class PlaneTotals:
    """One Accumulated X-Ray Dose Data container (one per plane on a biplane system)."""

    plane: str
    dap_total_gym2: float | None = None
    dose_rp_total_gy: float | None = None
    fluoro_dap_total_gym2: float | None = None
    fluoro_dose_rp_total_gy: float | None = None
    acquisition_dap_total_gym2: float | None = None
    acquisition_dose_rp_total_gy: float | None = None
    fluoro_time_s: float | None = None
    acquisition_time_s: float | None = None
    radiographic_frames: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceObserver:
    uid: str | None = None
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None

    @property
    def key(self) -> str:
        """Identifies the modality across reports: its UID, else manufacturer/model/serial/name."""
        if self.uid:
            return self.uid
        return "|".join(x or "" for x in (self.manufacturer, self.model, self.serial, self.name))


def _sum(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


@dataclass(frozen=True, slots=True)
class DoseReport:
    """What one dose object (RDSR or MPPS) says. Totals are None when not measured, never 0."""

    source: Literal["rdsr", "mpps"]
    kind: DoseKind
    study_instance_uid: str | None
    sop_instance_uid: str | None
    content_datetime: str | None = None
    device: DeviceObserver = field(default_factory=DeviceObserver)
    planes: tuple[PlaneTotals, ...] = ()
    events: tuple[IrradiationEvent, ...] = ()
    ct_dlp_total_mgycm: float | None = None
    ct_event_count: int | None = None
    declared_template: str | None = None
    mpps_exposure_count: int | None = None
    mpps_entrance_dose_gy: float | None = None
    repairs: tuple[str, ...] = ()

    # --- totals of this one report -------------------------------------------------------------
    def _plane_or_events(self, attr: str, event_attr: str | None, kinds: tuple[str, ...] = ()) -> float | None:
        total = _sum([getattr(p, attr) for p in self.planes])
        if total is not None or event_attr is None:
            return total
        return _sum([getattr(e, event_attr) for e in self.events if not kinds or e.kind in kinds])

    @property
    def dap_total_gym2(self) -> float | None:
        """Sum over planes of the accumulated DAP; the events' sum when no accumulated data came."""
        return self._plane_or_events("dap_total_gym2", "dap_gym2")

    @property
    def air_kerma_total_gy(self) -> float | None:
        return self._plane_or_events("dose_rp_total_gy", "dose_rp_gy")

    @property
    def fluoro_time_s(self) -> float | None:
        return self._plane_or_events("fluoro_time_s", "duration_s", ("fluoroscopy",))

    @property
    def acquisition_time_s(self) -> float | None:
        return self._plane_or_events("acquisition_time_s", "duration_s", ("acquisition",))

    @property
    def ctdivol_max_mgy(self) -> float | None:
        values = [e.ctdivol_mgy for e in self.events if e.ctdivol_mgy is not None]
        return max(values) if values else None

    @property
    def dlp_total_mgycm(self) -> float | None:
        if self.ct_dlp_total_mgycm is not None:
            return self.ct_dlp_total_mgycm
        return _sum([e.dlp_mgycm for e in self.events])

    @property
    def irradiation_events(self) -> int:
        return len(self.events)

    def totals(self) -> dict[str, Any]:
        return {
            "dap_total_gym2": self.dap_total_gym2,
            "air_kerma_total_gy": self.air_kerma_total_gy,
            "fluoro_time_s": self.fluoro_time_s,
            "ctdivol_max_mgy": self.ctdivol_max_mgy,
            "dlp_total_mgycm": self.dlp_total_mgycm,
            "irradiation_events": self.irradiation_events,
        }

    def to_data(self) -> dict[str, Any]:
        """JSON-ready `data` for a `dose.report` event (no patient identity in it)."""
        return {
            "source": self.source,
            "kind": self.kind,
            "study_instance_uid": self.study_instance_uid,
            "sop_instance_uid": self.sop_instance_uid,
            "content_datetime": self.content_datetime,
            "device_observer_uid": self.device.uid,
            "device_observer_name": self.device.name,
            **self.totals(),
            "planes": [{k: getattr(p, k) for k in PlaneTotals.__slots__} for p in self.planes],
            "repairs": list(self.repairs),
        }


def read_dataset(source: Dataset | str | Path) -> Dataset:
    if isinstance(source, Dataset):
        return source
    try:
        return pydicom.dcmread(str(source), force=True)
    except Exception as exc:  # pydicom raises many types for a broken file
        raise DoseParseError(f"cannot read {source}: {exc}") from exc


def _device(root: Node, ds: Dataset) -> DeviceObserver:
    def text(code: C.Code) -> str | None:
        node = root.first(code)
        if node is None:
            return None
        return node.uid if node.value_type == "UIDREF" else node.text

    return DeviceObserver(
        uid=text(C.DEVICE_OBSERVER_UID) or (str(ds.get("DeviceUID", "")) or None),
        name=text(C.DEVICE_OBSERVER_NAME) or (str(ds.get("StationName", "")) or None),
        manufacturer=text(C.DEVICE_OBSERVER_MANUFACTURER) or (str(ds.get("Manufacturer", "")) or None),
        model=text(C.DEVICE_OBSERVER_MODEL) or (str(ds.get("ManufacturerModelName", "")) or None),
        serial=text(C.DEVICE_OBSERVER_SERIAL) or (str(ds.get("DeviceSerialNumber", "")) or None),
    )


def _plane_of(node: Node) -> str | None:
    found = node.first_descendant(C.ACQUISITION_PLANE, _EVENT_CONTAINERS)
    if found is None:
        return None
    code = found.code_value
    return _PLANES.get(code) if code else None


def _mean_nonzero(values: list[float]) -> float | None:
    nonzero = [v for v in values if v != 0]
    return fmean(nonzero) if nonzero else None


def _accumulated(node: Node, index: int, count: int, repairs: Repairs) -> PlaneTotals:
    plane = _plane_of(node)
    if plane is None:
        plane = "single" if count == 1 else f"unknown-{index + 1}"
        repairs.add(f"accumulated dose container {index + 1} names no acquisition plane; taken as {plane!r}")

    def v(code: C.Code, quantity: str) -> float | None:
        return child_value(node, code, quantity)

    return PlaneTotals(
        plane=plane,
        dap_total_gym2=v(C.DAP_TOTAL, "dap"),
        dose_rp_total_gy=v(C.DOSE_RP_TOTAL, "dose"),
        fluoro_dap_total_gym2=v(C.FLUORO_DAP_TOTAL, "dap"),
        fluoro_dose_rp_total_gy=v(C.FLUORO_DOSE_RP_TOTAL, "dose"),
        acquisition_dap_total_gym2=v(C.ACQUISITION_DAP_TOTAL, "dap"),
        acquisition_dose_rp_total_gy=v(C.ACQUISITION_DOSE_RP_TOTAL, "dose"),
        fluoro_time_s=v(C.TOTAL_FLUORO_TIME, "time"),
        acquisition_time_s=v(C.TOTAL_ACQUISITION_TIME, "time"),
        radiographic_frames=v(C.TOTAL_RADIOGRAPHIC_FRAMES, "count"),
    )


def _event_uid(node: Node, repairs: Repairs, label: str) -> str | None:
    found = node.first(C.IRRADIATION_EVENT_UID)
    uid = found.uid if found is not None else None
    if uid is None:
        repairs.add(f"{label} has no Irradiation Event UID; counted within this report only")
    return uid


def _projection_event(node: Node, index: int, repairs: Repairs) -> IrradiationEvent:
    label = f"irradiation event {index + 1}"
    type_node = node.first(C.IRRADIATION_EVENT_TYPE)
    type_code = type_node.code_value if type_node is not None else None
    kind: EventKind
    if type_code == C.FLUOROSCOPY:
        kind = "fluoroscopy"
    elif type_code in _ACQUISITION_TYPES:
        kind = "acquisition"
    else:
        kind = "unknown"
        repairs.add(f"{label}: irradiation event type {type_code} not recognised")
    dt = node.first(C.DATETIME_STARTED)
    stop = _EVENT_CONTAINERS
    current = child_values(node, C.XRAY_TUBE_CURRENT, "current", stop) or child_values(
        node, C.AVERAGE_XRAY_TUBE_CURRENT, "current", stop
    )
    return IrradiationEvent(
        uid=_event_uid(node, repairs, label),
        kind=kind,
        datetime=dt.datetime if dt is not None else None,
        plane=_plane_of(node),
        dap_gym2=child_value(node, C.DOSE_AREA_PRODUCT, "dap", stop),
        dose_rp_gy=child_value(node, C.DOSE_RP, "dose", stop),
        duration_s=child_value(node, C.IRRADIATION_DURATION, "time", stop),
        kvp_kv=_mean_nonzero(child_values(node, C.KVP, "kv", stop)),
        tube_current_ma=_mean_nonzero(current),
        pulse_width_ms=_mean_nonzero(child_values(node, C.PULSE_WIDTH, "time_ms", stop)),
        pulses=child_value(node, C.NUMBER_OF_PULSES, "count", stop),
    )


def _ct_event(node: Node, index: int, repairs: Repairs) -> IrradiationEvent:
    label = f"CT acquisition {index + 1}"
    dose = node.first_descendant(C.CT_DOSE, _EVENT_CONTAINERS)
    if dose is None:
        repairs.add(f"{label} has no CT Dose container; dose items searched in the acquisition itself")
        dose = node
    phantom_node = dose.first_descendant(C.CTDIW_PHANTOM_TYPE, _EVENT_CONTAINERS)
    phantom = None
    if phantom_node is not None:
        pc = phantom_node.code_value
        phantom = _PHANTOMS.get(pc) if pc else None
        phantom = phantom or phantom_node.code_meaning
    region = node.first(C.TARGET_REGION)
    protocol = node.first(C.ACQUISITION_PROTOCOL)
    dt = node.first_descendant(C.DATETIME_STARTED, _EVENT_CONTAINERS)
    return IrradiationEvent(
        uid=_event_uid(node, repairs, label),
        kind="ct",
        datetime=dt.datetime if dt is not None else None,
        ctdivol_mgy=child_value(dose, C.MEAN_CTDIVOL, "ct_dose", _EVENT_CONTAINERS),
        dlp_mgycm=child_value(dose, C.DLP, "dlp", _EVENT_CONTAINERS),
        phantom=phantom,
        target_region=region.code_meaning if region is not None else None,
        protocol=protocol.text if protocol is not None else None,
    )


def parse_rdsr(source: Dataset | str | Path) -> DoseReport:
    """Parse an X-Ray Radiation Dose SR. Raises `DoseParseError` if it is not one."""
    ds = read_dataset(source)
    repairs = Repairs()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class and sop_class not in RDSR_SOP_CLASSES:
        repairs.add(f"SOP class {sop_class} is not an X-Ray Radiation Dose SR; read by content")
    if "ContentSequence" not in ds:
        raise DoseParseError("no SR content tree (ContentSequence missing)")
    root = Node(ds, repairs)
    root_code = code_of(ds.ConceptNameCodeSequence[0]) if ds.get("ConceptNameCodeSequence") else None
    if root_code != C.XRAY_RADIATION_DOSE_REPORT:
        dose_containers = {C.ACCUMULATED_XRAY_DOSE, C.CT_ACCUMULATED_DOSE, *_EVENT_CONTAINERS}
        if not any(c.code in dose_containers for c in root.children):
            raise DoseParseError(f"root concept {root_code} is not an X-Ray Radiation Dose Report, and no dose data")
        repairs.add(f"root concept {root_code} is not (113701, DCM); dose containers found, read anyway")
    else:
        root.check_meaning()

    template = None
    for item in ds.get("ContentTemplateSequence", None) or []:
        template = str(item.get("TemplateIdentifier", "") or "") or None
    if template is None:
        repairs.add("no content template declared; template recognised from the content")

    accumulated = root.find(C.ACCUMULATED_XRAY_DOSE)
    planes = tuple(_accumulated(node, i, len(accumulated), repairs) for i, node in enumerate(accumulated))
    projection_nodes = root.find(C.IRRADIATION_EVENT_XRAY_DATA)
    ct_nodes = root.find(C.CT_ACQUISITION)
    events = [_projection_event(n, i, repairs) for i, n in enumerate(projection_nodes)]
    events += [_ct_event(n, i, repairs) for i, n in enumerate(ct_nodes)]

    ct_accumulated = root.first(C.CT_ACCUMULATED_DOSE)
    ct_dlp_total = child_value(ct_accumulated, C.CT_DLP_TOTAL, "dlp")
    ct_count_value = child_value(ct_accumulated, C.TOTAL_NUMBER_OF_IRRADIATION_EVENTS, "count")
    if ct_accumulated is not None and ct_dlp_total is None and ct_nodes:
        repairs.add("CT Dose Length Product Total missing; summed from the CT acquisitions")

    is_projection = bool(accumulated or projection_nodes)
    is_ct = bool(ct_accumulated is not None or ct_nodes)
    kind: DoseKind = (
        "mixed" if is_projection and is_ct else "projection" if is_projection else "ct" if is_ct else "unknown"
    )
    if projection_nodes and not accumulated:
        repairs.add("no Accumulated X-Ray Dose Data; totals summed from the irradiation events")

    uids = [e.uid for e in events if e.uid]
    if len(uids) != len(set(uids)):
        repairs.add("an Irradiation Event UID appears twice in one report; counted once")
        seen: set[str] = set()
        unique: list[IrradiationEvent] = []
        for e in events:
            if e.uid is None or e.uid not in seen:
                unique.append(e)
                if e.uid:
                    seen.add(e.uid)
        events = unique

    content_dt = None
    if ds.get("ContentDate"):
        content_dt = f"{ds.ContentDate}{ds.get('ContentTime', '') or ''}"
    return DoseReport(
        source="rdsr",
        kind=kind,
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or "") or None,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or "") or None,
        content_datetime=content_dt,
        device=_device(root, ds),
        planes=planes,
        events=tuple(events),
        ct_dlp_total_mgycm=ct_dlp_total,
        ct_event_count=int(ct_count_value) if ct_count_value is not None else None,
        declared_template=template,
        repairs=tuple(repairs.notes),
    )
