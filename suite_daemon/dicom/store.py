"""C-STORE: check, make durable, answer; then (filing.py) file, index, announce.

Runs in pynetdicom's association threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import structlog
from pydicom.filereader import dcmread

from suite_daemon.daemon.context import DaemonContext
from suite_daemon.dicom.filing import Filer
from suite_daemon.dicom.index import InstanceIndex, StoredInstance
from suite_daemon.dicom.ingest_log import LoggedRecord, LogWriter, RecordRef, read_record
from suite_daemon.dicom.part10 import (
    UID_RE,
    DatasetError,
    HeaderValues,
    clean_uid,
    dataset_offset,
    encode_file_meta,
    read_header,
    summarize,
)
from suite_daemon.dicom.spool import Spool, SpoolStream
from suite_daemon.events import Alerted, AlertLevel, ImageStored

log = structlog.get_logger()

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC210
"""The data set cannot be parsed (truncated, malformed)."""
MISSING_UIDS = 0xC220
"""Study, Series or SOP Instance UID missing or not a valid UID."""
INSTANCE_UID_MISMATCH = 0xC221
"""The data set's SOP Instance UID differs from the C-STORE request's Affected SOP Instance UID."""
PROCESSING_FAILURE = 0xC211


@dataclass(frozen=True, slots=True)
class _Request:
    """What a C-STORE request says besides its data set (the SOP UIDs cleaned of padding)."""

    sop_class: str
    sop_instance: str
    transfer_syntax: str
    calling_ae: str
    where: dict[str, Any]
    """The request's fields for logs, audit records and alerts."""


class Refusal(Exception):
    """An object that is not stored: its failure status, the alert's kind, and why."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class StoreService:
    def __init__(self, ctx: DaemonContext, spool: Spool, index: InstanceIndex, min_free_mb: int) -> None:
        self.ctx = ctx
        self.spool = spool
        self.index = index
        self.min_free_mb = min_free_mb
        self._in_flight: set[str] = set()
        self._in_flight_cv = threading.Condition()
        self.filer = Filer(spool, index, self.announce_many)

    # -- the handler ---------------------------------------------------------------------------

    def handle(self, event: Any) -> int:
        """EVT_C_STORE handler: returns the C-STORE status."""
        request = event.request
        sop_class = clean_uid(request.AffectedSOPClassUID)
        sop_instance = clean_uid(request.AffectedSOPInstanceUID)
        calling_ae, host = _caller(event.assoc)
        where = {"calling_ae": calling_ae, "host": host, "sop_class_uid": sop_class, "sop_instance_uid": sop_instance}
        asked = _Request(sop_class, sop_instance, str(event.context.transfer_syntax), calling_ae, where)
        # A data set that came in several PDUs was written to the spool while it arrived (see fast_dimse).
        stream: SpoolStream | None = getattr(request, "suite_stream", None)
        try:
            data = request.DataSet.getbuffer() if stream is None else stream.data_view()
        except OSError as exc:
            if stream is not None:
                stream.discard()
            message = f"writing the object failed: {exc.strerror}"
            return self._fail(OUT_OF_RESOURCES, "spool_write_failed", message, where, level="critical")
        try:
            return self._store(data, stream, asked)
        except Exception as exc:
            log.exception("dicom_store_error", **where)
            return self._fail(PROCESSING_FAILURE, "processing_failure", f"storing failed: {type(exc).__name__}", where)
        finally:
            data.release()
            if stream is not None and not stream.committed:
                stream.discard()

    def _store(self, data: memoryview, stream: SpoolStream | None, asked: _Request) -> int:
        try:
            free_mb = self.spool.free_mb()
        except OSError:
            free_mb = 0.0
        if free_mb < self.min_free_mb:
            return self._fail(
                OUT_OF_RESOURCES,
                "out_of_space",
                f"free space {free_mb:.0f} MB is below dicom.min_free_mb = {self.min_free_mb}",
                {**asked.where, "free_mb": round(free_mb, 1)},
                level="critical",
            )
        # Claimed before anything is written: a copy sent at the same moment on another association then
        # finds this object stored (or refused) and is never written ahead, so that a crash can leave no
        # record of it to be filed over this one's. (A request naming no instance is claimed once checked.)
        if asked.sop_instance:
            self._claim(asked.sop_instance)
        try:
            ahead = self._write_ahead(data, stream, asked)
            try:
                return self._check_and_keep(data, stream, ahead, asked)
            finally:
                if ahead is not None:
                    self._void(ahead)  # unless it was synced as stored: refused, a copy, or failed
        finally:
            if asked.sop_instance:
                self._unclaim(asked.sop_instance)

    @staticmethod
    def _void(ahead: LogWriter) -> None:
        try:
            ahead.void()
        except OSError as exc:
            log.error("dicom_ingest_record_not_voided", error=exc.strerror)

    def _write_ahead(self, data: memoryview, stream: SpoolStream | None, asked: _Request) -> LogWriter | None:
        """Make the object's ingest log record complete before the object is checked, and start its
        write-back, so that the disk writes it while the checks run (docs/performance.md, "Written ahead of
        the checks"): an object that came in one piece is written now; one streamed into the log while it
        arrived has its record sealed. Only for a SOP Instance UID that is new by a cheap look: a copy of a
        stored object is checked first and never logged. A record not kept is voided before the answer."""
        if not asked.sop_instance or self._maybe_stored(asked.sop_instance):
            return None
        try:
            if stream is not None:
                # Its head names the request's UIDs only when both are UIDs (see fast_dimse._open_stream).
                if not (UID_RE.fullmatch(asked.sop_class) and UID_RE.fullmatch(asked.sop_instance)):
                    return None
                return self.spool.seal_ahead(stream)
            head = encode_file_meta(asked.sop_class, asked.sop_instance, asked.transfer_syntax, asked.calling_ae)
            return self.spool.write_ahead(head, data)
        except OSError:
            return None  # written again after the checks, where a failure is answered and reported

    def _maybe_stored(self, sop_instance: str) -> bool:
        """False when the instance is certainly neither pending nor in the index (no database read)."""
        return self.filer.pending(sop_instance) is not None or self.index.might_hold(sop_instance)

    def _check_and_keep(
        self, data: memoryview, stream: SpoolStream | None, ahead: LogWriter | None, asked: _Request
    ) -> int:
        try:
            ds, path = self.check(data, asked.transfer_syntax, asked.sop_class, asked.sop_instance)
        except Refusal as refusal:
            return self._fail(refusal.status, refusal.kind, str(refusal), asked.where)
        instance = ds.text("SOPInstanceUID")
        summary = summarize(
            ds,
            sop_class_uid=asked.sop_class,
            transfer_syntax_uid=asked.transfer_syntax,
            calling_ae=asked.calling_ae,
            nbytes=len(data),
        )
        claim_now = not asked.sop_instance  # else claimed by `_store` (`check` proved it the same UID)
        if claim_now:
            self._claim(instance)
        try:
            known_path = self.filer.pending(instance)
            if known_path is None:
                known = self.index.lookup(instance)
                known_path = known.path if known is not None else None
            if known_path is not None:
                log.info("dicom_duplicate_instance", sop_instance_uid=instance, calling_ae=asked.calling_ae)
                if not self.filer.add_duplicate(summary, known_path):
                    self.ctx.submit(ImageStored(summary=summary, path=known_path, duplicate=True))
                return SUCCESS
            ref: RecordRef | None
            try:
                if ahead is not None:
                    ref = ahead.sync_ahead()
                    if stream is not None:
                        stream.committed = True
                elif stream is not None:  # already written while it arrived (see fast_dimse)
                    ref = self.spool.commit(stream, path)
                else:
                    head = encode_file_meta(asked.sop_class, instance, asked.transfer_syntax, asked.calling_ae)
                    ref = self.spool.write(path, head, data)
            except OSError as exc:
                return self._fail(
                    OUT_OF_RESOURCES,
                    "spool_write_failed",
                    f"writing the object failed: {exc.strerror}",
                    asked.where,
                    level="critical",
                )
            self.spool.count_written(len(data))
            self.filer.submit(summary, path, ref)
        finally:
            if claim_now:
                self._unclaim(instance)
        log.debug(
            "dicom_stored", sop_instance_uid=instance, study_instance_uid=summary["study_instance_uid"], bytes=len(data)
        )
        return SUCCESS

    def check(
        self, data: memoryview, transfer_syntax: str, sop_class: str, sop_instance: str
    ) -> tuple[HeaderValues, Path]:
        """The object's header values and spool path; `Refusal` if it is not to be stored. The same checks
        decide at start whether a record written ahead of them is filed (`recover`)."""
        try:
            header = read_header(data, transfer_syntax)
        except DatasetError as exc:
            raise Refusal(CANNOT_UNDERSTAND, "dataset_unreadable", str(exc)) from None
        ds = header.dataset
        study, series, instance = (  # stripped already, as `clean_uid` would
            ds.text("StudyInstanceUID"),
            ds.text("SeriesInstanceUID"),
            ds.text("SOPInstanceUID"),
        )
        try:
            path = self.spool.path_for(study, series, instance)
        except ValueError as exc:
            raise Refusal(MISSING_UIDS, "dataset_missing_uids", f"study/series/SOP instance UID: {exc}") from None
        if sop_instance and instance != sop_instance:
            raise Refusal(
                INSTANCE_UID_MISMATCH, "sop_instance_mismatch", "data set SOP Instance UID differs from the request"
            )
        ds_class = ds.get("SOPClassUID")
        if ds_class and ds_class != sop_class:
            message = "data set SOP Class UID differs from the request"
            raise Refusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "sop_class_mismatch", message)
        return ds, path

    def announce_many(
        self, stored: list[StoredInstance], duplicates: list[tuple[dict[str, Any], Path]] | None = None
    ) -> None:
        """Hand objects to the pipeline, with one wake-up of the event loop; once an object's events are
        durable, flag it announced. `duplicates` (summary, path) follow them, in the same order."""
        futures = self.ctx.submit_durable_many([ImageStored(summary=s.summary, path=s.path) for s in stored])
        for item, future in zip(stored, futures, strict=True):
            future.add_done_callback(self._announced_callback(item.sop_instance_uid))
        for summary, path in duplicates or ():
            self.ctx.submit(ImageStored(summary=summary, path=path, duplicate=True))

    def _announced_callback(self, uid: str) -> Callable[[Any], None]:
        def _done(f: Any) -> None:
            if not f.cancelled() and f.exception() is None:
                self.index.mark_announced(uid)

        return _done

    def _claim(self, sop_instance: str) -> None:
        """One writer per SOP Instance UID at a time (the same object on two associations at once); every
        claim is followed by `_unclaim`."""
        with self._in_flight_cv:
            while sop_instance in self._in_flight:
                self._in_flight_cv.wait()
            self._in_flight.add(sop_instance)

    def _unclaim(self, sop_instance: str) -> None:
        with self._in_flight_cv:
            self._in_flight.discard(sop_instance)
            self._in_flight_cv.notify_all()

    def _fail(self, status: int, kind: str, message: str, where: dict[str, Any], level: AlertLevel = "warning") -> int:
        fields = {**where, "status": f"0x{status:04X}", "reason": kind}
        log.warning("dicom_store_failed", detail=message, **fields)
        try:
            self.ctx.audit_daemon("dicom_store_failed", detail=message, **fields)
        finally:
            self.ctx.submit(Alerted(level=level, kind="dicom_store_failed", message=message, data=fields))
        return status

    # -- startup recovery ------------------------------------------------------------------------

    def recover(self, logged: list[LoggedRecord]) -> tuple[int, int]:
        """File the ingest log's objects, index spool files a crash left unindexed, then re-announce
        everything not yet announced. Runs before the receiver serves.

        Returns (files indexed now, instances re-announced).
        """
        for record in logged:
            path = self._logged_path(record)
            if path is None:
                self.spool.log.filed(record.ref, None)
                continue
            self.spool.file_record(record.ref, path)
        if logged:
            self.spool.checkpoint(idle=True)
            log.info("dicom_ingest_log_replayed", objects=len(logged))
        known = self.index.known_paths()
        indexed = 0
        for path in self.spool.files():
            if str(path) in known:
                continue
            summary = _summary_from_file(path)
            if summary is None:
                log.warning("dicom_spool_file_unreadable", path=str(path))
                continue
            if self.index.add(summary, path):
                indexed += 1
        pending = self.index.unannounced()
        # `recovered`: the pipeline may have committed it just before a crash; it can dedupe on the UID.
        self.announce_many(
            [StoredInstance(s.sop_instance_uid, s.path, {**s.summary, "recovered": True}, False) for s in pending]
        )
        if indexed or pending:
            log.info("dicom_recovered", indexed=indexed, announced=len(pending))
        return indexed, len(pending)

    def _logged_path(self, record: LoggedRecord) -> Path | None:
        """Where a logged object is filed; None if it is not to be filed. A record written ahead of the
        store's checks (`_write_ahead`; no path in it) is checked again: it is filed only if it passes,
        as its store would have answered had the daemon not stopped first."""
        if record.relative_path:
            try:
                return self.spool.from_relative(record.relative_path)
            except ValueError:
                log.error("dicom_ingest_record_bad_path", path=record.relative_path)
                return None
        raw = read_record(record.ref)
        try:
            meta, data = _split_part10(raw)
            transfer_syntax = clean_uid(meta.TransferSyntaxUID)
            sop_class = clean_uid(meta.MediaStorageSOPClassUID)
            sop_instance = clean_uid(meta.MediaStorageSOPInstanceUID)
        except Exception as exc:
            log.error("dicom_ingest_record_unreadable", error=f"{type(exc).__name__}: {exc}")
            return None
        try:
            return self.check(data, transfer_syntax, sop_class, sop_instance)[1]
        except Refusal as refusal:
            log.info("dicom_ingest_record_refused", sop_instance_uid=sop_instance, reason=str(refusal))
            return None
        finally:
            data.release()


def _caller(assoc: Any) -> tuple[str, str]:
    """The calling AE title and host of an association, read once for all its stores."""
    caller: tuple[str, str] | None = getattr(assoc, "suite_caller", None)
    if caller is None:
        caller = (str(assoc.requestor.ae_title).strip(), str(assoc.requestor.address))
        assoc.suite_caller = caller
    return caller


def _split_part10(raw: bytes) -> tuple[Any, memoryview]:
    """A Part 10 file's meta information (pydicom's) and its data set."""
    meta = dcmread(BytesIO(raw), stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta
    return meta, memoryview(raw)[dataset_offset(raw) :]


def _summary_from_file(path: Path) -> dict[str, Any] | None:
    try:
        meta, data = _split_part10(path.read_bytes())
        transfer_syntax = clean_uid(meta.TransferSyntaxUID)
        sop_class = clean_uid(meta.MediaStorageSOPClassUID)
        source_ae = str(meta.get("SourceApplicationEntityTitle", "")).strip()
        header = read_header(data, transfer_syntax)
    except Exception:
        return None
    return summarize(
        header.dataset,
        sop_class_uid=sop_class,
        transfer_syntax_uid=transfer_syntax,
        calling_ae=source_ae,
        nbytes=len(data),
    )
