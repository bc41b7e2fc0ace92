"""The one event model shared by every component.

Producers (the DICOM receiver, device drivers, operator commands, the daemon itself) hand the
correlator *inputs* (the dataclasses below ending in a past-tense fact). The correlator turns them
into `Event`s that belong to a procedure (or to no procedure); the `EventSink` numbers them
(`seq`), makes them durable in the outbox and the audit journal, and the publisher sends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

SCHEMA = 1

EVENT_TYPES = frozenset(
    {
        "procedure.opened",
        "procedure.closed",
        "image.received",
        "dose.report",
        "dose.sample",
        "injection.sample",
        "injection.phase",
        "device.status",
        "device.raw",
        "alert",
        "association.rejected",
        "daemon.started",
        "daemon.stopping",
    }
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(t: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, as the contract asks (`2026-11-22T10:00:00.123Z`)."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Event:
    """One fact about a procedure (or the daemon), as published on MQTT and written to the journal."""

    type: str
    source: str
    data: Mapping[str, Any]
    procedure_id: str | None = None
    time: datetime = field(default_factory=utc_now)
    seq: int | None = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}")

    @property
    def stream(self) -> str:
        """The sequence this event is numbered in: its procedure, or the daemon-wide stream."""
        return self.procedure_id or ""

    def numbered(self, seq: int) -> Event:
        return replace(self, seq=seq)

    def to_payload(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "seq": self.seq,
            "type": self.type,
            "procedure_id": self.procedure_id,
            "time": rfc3339(self.time),
            "source": self.source,
            "data": dict(self.data),
        }


# ---------------------------------------------------------------------------------------------
# Inputs handed to the correlator. Each carries the daemon's receive time (UTC).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageStored:
    """A DICOM object is safely in the spool (fsynced) and its header summary was read."""

    summary: Mapping[str, Any]
    """study_instance_uid, series_instance_uid, sop_instance_uid, sop_class_uid, modality,
    accession_number, station_name, acquisition_datetime, content_datetime, number_of_frames,
    bytes, transfer_syntax_uid, calling_ae, and any dose-relevant header values (e.g. SAR)."""
    path: Path
    duplicate: bool = False
    received_at: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class MppsReceived:
    """An MPPS N-CREATE or N-SET, with every attribute the modality sent (JSON model of the dataset)."""

    action: Literal["create", "set"]
    sop_instance_uid: str
    status: str | None
    """PerformedProcedureStepStatus after this message: IN PROGRESS, COMPLETED or DISCONTINUED."""
    attributes: Mapping[str, Any]
    study_instance_uid: str | None = None
    accession_number: str | None = None
    received_at: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class DeviceSampled:
    """A decoded serial observation. `values` maps `<quantity>_<unit>` to a number, in contract units."""

    device: str
    driver: str
    kind: Literal["dose", "injection"]
    values: Mapping[str, float]
    host_time: datetime = field(default_factory=utc_now)
    device_time: str | None = None
    quality: str = "good"
    segment: int = 0
    """Increases when a device counter restarts (reset, reboot), so totals can add segments."""


@dataclass(frozen=True, slots=True)
class DeviceStatusChanged:
    device: str
    driver: str
    state: Literal["connected", "disconnected", "fault"]
    detail: str = ""
    counters: Mapping[str, int] = field(default_factory=dict)
    time: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class DeviceNoticed:
    """A device event that is not a sample: alarm, counter reset, unit change, injection phase, raw frame."""

    device: str
    driver: str
    kind: Literal["alarm", "counter_reset", "unit_change", "phase", "raw"]
    data: Mapping[str, Any]
    time: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class OperatorCommanded:
    """An operator command from MQTT (`R/command/procedure/...`) or the CLI."""

    action: Literal["open", "close"]
    request_id: str
    study_instance_uid: str | None = None
    accession_number: str | None = None
    operator: str | None = None
    reason: str | None = None
    time: datetime = field(default_factory=utc_now)


AlertLevel = Literal["notice", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class Alerted:
    """A problem a component wants on `R/alert` and in the journal (failed store, rejected caller...)."""

    level: AlertLevel
    kind: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    procedure_id: str | None = None
    time: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    calling_ae: str
    called_ae: str
    host: str
    port: int
    reason: str
    time: datetime = field(default_factory=utc_now)


Input = (
    ImageStored
    | MppsReceived
    | DeviceSampled
    | DeviceStatusChanged
    | DeviceNoticed
    | OperatorCommanded
    | Alerted
    | AssociationRejected
)
