"""How each input becomes an event's `data` (shared by every correlator)."""

from __future__ import annotations

from typing import Any

from suite_daemon.events import (
    Alerted,
    AlertLevel,
    AssociationRejected,
    DeviceNoticed,
    DeviceSampled,
    DeviceStatusChanged,
    Event,
    ImageStored,
    MppsReceived,
    rfc3339,
)


def device_source(device: str) -> str:
    return f"device:{device}"


def sample_event(item: DeviceSampled, procedure_id: str | None) -> Event:
    data: dict[str, Any] = {
        "device": item.device,
        "driver": item.driver,
        "values": dict(item.values),
        "quality": item.quality,
        "segment": item.segment,
    }
    if item.device_time is not None:
        data["device_time"] = item.device_time
    kind = "dose.sample" if item.kind == "dose" else "injection.sample"
    return Event(kind, device_source(item.device), data, procedure_id, item.host_time)


def device_status_event(item: DeviceStatusChanged, procedure_id: str | None = None) -> Event:
    data = {
        "device": item.device,
        "driver": item.driver,
        "state": item.state,
        "detail": item.detail,
        "counters": dict(item.counters),
    }
    return Event("device.status", device_source(item.device), data, procedure_id, item.time)


def device_notice_event(item: DeviceNoticed, procedure_id: str | None) -> Event:
    """Alarms, counter resets, unit changes and phases; raw frames are journal-only (see `raw_record`)."""
    data = {"device": item.device, "driver": item.driver, "kind": item.kind, **item.data}
    if item.kind == "phase":
        return Event("injection.phase", device_source(item.device), data, procedure_id, item.time)
    level: AlertLevel = "critical" if item.data.get("critical") else "warning" if item.kind == "alarm" else "notice"
    message = item.data.get("message") or f"{item.device}: {item.kind.replace('_', ' ')}"
    return alert_event(Alerted(level, f"device_{item.kind}", str(message), data, procedure_id, item.time))


def raw_record(item: DeviceNoticed) -> dict[str, Any]:
    return {
        "received_at": rfc3339(item.time),
        "source": device_source(item.device),
        "driver": item.driver,
        "data": dict(item.data),
    }


def alert_event(item: Alerted) -> Event:
    data = {"level": item.level, "kind": item.kind, "message": item.message, "data": dict(item.data)}
    return Event("alert", "daemon", data, item.procedure_id, item.time)


def rejected_event(item: AssociationRejected) -> Event:
    data = {
        "calling_ae": item.calling_ae,
        "called_ae": item.called_ae,
        "host": item.host,
        "port": item.port,
        "reason": item.reason,
    }
    return Event("association.rejected", "dicom", data, None, item.time)


def image_event(item: ImageStored, procedure_id: str | None, extra: dict[str, Any] | None = None) -> Event:
    data = {**item.summary, "duplicate": item.duplicate, **(extra or {})}
    return Event("image.received", "dicom", data, procedure_id, item.received_at)


def mpps_data(item: MppsReceived) -> dict[str, Any]:
    return {
        "mpps_sop_instance_uid": item.sop_instance_uid,
        "action": item.action,
        "status": item.status,
        "study_instance_uid": item.study_instance_uid,
        "accession_number": item.accession_number,
    }
