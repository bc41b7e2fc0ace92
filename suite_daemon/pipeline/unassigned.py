"""The simplest correlator: every input on the daemon-wide stream, no procedures.

Used where no procedure logic is wanted (tests of the pipeline, a daemon without a correlator).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from suite_daemon.events import (
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
)
from suite_daemon.pipeline import conversions
from suite_daemon.pipeline.correlation import Outcome


class UnassignedCorrelator:
    def needs_prepare(self, item: Input) -> bool:
        return False

    def prepare(self, item: Input) -> None:
        pass

    def startup(self, now: datetime, state: Mapping[str, str]) -> Outcome:
        return Outcome()

    def tick(self, now: datetime) -> Outcome:
        return Outcome()

    def handle(self, item: Input, now: datetime) -> Outcome:
        match item:
            case DeviceSampled():
                return Outcome(events=[conversions.sample_event(item, None)])
            case DeviceStatusChanged():
                return Outcome(events=[conversions.device_status_event(item)])
            case DeviceNoticed(kind="raw"):
                return Outcome(journal=[("unassigned", "device.raw", conversions.raw_record(item))])
            case DeviceNoticed():
                return Outcome(events=[conversions.device_notice_event(item, None)])
            case Alerted():
                return Outcome(events=[conversions.alert_event(item)])
            case AssociationRejected():
                return Outcome(events=[conversions.rejected_event(item)])
            case ImageStored():
                return Outcome(events=[conversions.image_event(item, None)])
            case MppsReceived():
                return Outcome(
                    events=[Event("dose.report", "dicom", conversions.mpps_data(item), None, item.received_at)]
                )
            case OperatorCommanded():
                return Outcome()
        raise TypeError(f"unknown input {type(item).__name__}")
