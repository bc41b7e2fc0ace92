"""Modality Performed Procedure Step SCP: N-CREATE (IN PROGRESS) and N-SET (COMPLETED / DISCONTINUED)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import structlog
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from suite_daemon.daemon.context import DaemonContext
from suite_daemon.dicom.index import InstanceIndex
from suite_daemon.dicom.part10 import UID_RE, clean_uid
from suite_daemon.events import Alerted, MppsReceived

log = structlog.get_logger()

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
DUPLICATE_INSTANCE = 0x0111
NO_SUCH_INSTANCE = 0x0112
INVALID_ATTRIBUTE_VALUE = 0x0106
MISSING_ATTRIBUTE = 0x0120

IN_PROGRESS = "IN PROGRESS"
FINAL_STATES = frozenset({"COMPLETED", "DISCONTINUED"})


def _scheduled(ds: Dataset, keyword: str) -> str | None:
    for item in ds.get("ScheduledStepAttributesSequence", None) or []:
        value = item.get(keyword)
        if value:
            return clean_uid(value) if keyword.endswith("UID") else str(value).strip()
    return None


class MppsService:
    def __init__(
        self,
        ctx: DaemonContext,
        index: InstanceIndex,
        commit_timeout_s: float,
        stores_announced: Callable[[float], None],
    ) -> None:
        self.ctx = ctx
        self.stores_announced = stores_announced
        """Waits (up to its timeout) until the objects stored so far are with the pipeline."""
        self.index = index
        self.commit_timeout_s = commit_timeout_s
        self._lock = threading.Lock()

    def handle_create(self, event: Any) -> tuple[int, Dataset | None]:
        uid = clean_uid(event.request.AffectedSOPInstanceUID) or generate_uid()
        where = self._where(event, uid)
        try:
            attrs = event.attribute_list
        except Exception:
            return self._fail(
                INVALID_ATTRIBUTE_VALUE, "mpps_unreadable", "N-CREATE attribute list cannot be parsed", where
            )
        if not UID_RE.fullmatch(uid):
            return self._fail(
                INVALID_ATTRIBUTE_VALUE, "mpps_bad_uid", "MPPS SOP Instance UID is not a valid UID", where
            )
        status = str(attrs.get("PerformedProcedureStepStatus", "")).strip().upper()
        if not status:
            return self._fail(
                MISSING_ATTRIBUTE, "mpps_missing_status", "N-CREATE without Performed Procedure Step Status", where
            )
        if status != IN_PROGRESS:
            return self._fail(INVALID_ATTRIBUTE_VALUE, "mpps_bad_status", f"N-CREATE with status {status!r}", where)
        with self._lock:
            if self.index.mpps(uid) is not None:
                return self._fail(DUPLICATE_INSTANCE, "mpps_duplicate", "N-CREATE for an existing MPPS instance", where)
            result = self._commit("create", uid, attrs, status, where)
        if result != SUCCESS:
            return result, None
        log.info("dicom_mpps_created", mpps_uid=uid, calling_ae=where["calling_ae"])
        if not clean_uid(event.request.AffectedSOPInstanceUID):
            # The SCU left the UID to us: pynetdicom returns it in the response's Affected SOP Instance UID.
            response = Dataset()
            response.update(attrs)
            response.AffectedSOPInstanceUID = uid
            return SUCCESS, response
        return SUCCESS, attrs

    def handle_set(self, event: Any) -> tuple[int, Dataset | None]:
        uid = clean_uid(event.request.RequestedSOPInstanceUID)
        where = self._where(event, uid)
        try:
            mods = event.modification_list
        except Exception:
            return self._fail(
                INVALID_ATTRIBUTE_VALUE, "mpps_unreadable", "N-SET modification list cannot be parsed", where
            )
        with self._lock:
            record = self.index.mpps(uid)
            if record is None:
                return self._fail(
                    NO_SUCH_INSTANCE, "mpps_unknown_instance", "N-SET for an unknown MPPS instance", where
                )
            if (record.status or "") in FINAL_STATES:
                return self._fail(
                    PROCESSING_FAILURE, "mpps_already_final", f"N-SET on an MPPS already {record.status}", where
                )
            merged = Dataset.from_json(record.attributes)
            for elem in mods:
                merged[elem.tag] = elem
            status = str(merged.get("PerformedProcedureStepStatus", "")).strip().upper()
            if status not in FINAL_STATES | {IN_PROGRESS}:
                return self._fail(INVALID_ATTRIBUTE_VALUE, "mpps_bad_status", f"N-SET to status {status!r}", where)
            result = self._commit("set", uid, merged, status, where)
        if result != SUCCESS:
            return result, None
        log.info("dicom_mpps_updated", mpps_uid=uid, status=status, calling_ae=where["calling_ae"])
        return SUCCESS, mods

    def _commit(self, action: str, uid: str, ds: Dataset, status: str, where: dict[str, Any]) -> int:
        """Hand the merged instance to the pipeline, wait until durable, then keep it in the table."""
        attributes = ds.to_json_dict()
        study = _scheduled(ds, "StudyInstanceUID")
        accession = _scheduled(ds, "AccessionNumber")
        item = MppsReceived(
            action=action,  # type: ignore[arg-type]
            sop_instance_uid=uid,
            status=status,
            attributes=attributes,
            study_instance_uid=study,
            accession_number=accession,
        )
        try:
            # After the objects stored before it (e.g. the dose report): it may close the procedure.
            self.stores_announced(self.commit_timeout_s)
            self.ctx.submit_durable(item).result(timeout=self.commit_timeout_s)
        except Exception as exc:
            status_code, _ = self._fail(
                PROCESSING_FAILURE, "mpps_not_committed", f"the event pipeline did not commit the MPPS: {exc!r}", where
            )
            return status_code
        self.index.put_mpps(uid, status, attributes, study, accession)
        return SUCCESS

    @staticmethod
    def _where(event: Any, uid: str) -> dict[str, Any]:
        return {
            "calling_ae": str(event.assoc.requestor.ae_title).strip(),
            "host": str(event.assoc.requestor.address),
            "mpps_uid": uid,
        }

    def _fail(self, status: int, kind: str, message: str, where: dict[str, Any]) -> tuple[int, None]:
        fields = {**where, "status": f"0x{status:04X}", "reason": kind}
        log.warning("dicom_mpps_failed", detail=message, **fields)
        try:
            self.ctx.audit_daemon("dicom_mpps_failed", detail=message, **fields)
        finally:
            self.ctx.submit(Alerted(level="warning", kind="dicom_mpps_failed", message=message, data=fields))
        return status, None
