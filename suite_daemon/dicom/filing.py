"""After the answer: file logged objects into the spool, index them and announce them, in batches.

A store makes its object durable (in the ingest log or its spool file), answers, and hands it here. A small
object stored `inline` (the C-STORE fast path, on the association's DUL thread) is copied to its spool file
right after the answer, while the sender gets the next object ready (cheaper than a thread hand-over); larger
ones are copied by the background thread, in parallel with receiving the next object (from 128 KiB around
the page cache: `direct_io.py`).
The background thread inserts the index rows of a batch in one transaction, hands the batch to the pipeline
in one call, and lets the ingest log reuse segments whose objects are all filed. Until its row is indexed,
an object is found by `pending` (duplicate detection).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from suite_daemon.dicom.index import InstanceIndex, StoredInstance
from suite_daemon.dicom.ingest_log import RecordRef
from suite_daemon.dicom.spool import Spool

log = structlog.get_logger()

INLINE_MAX = 64 * 1024
"""Logged objects up to this size are filed by the storing thread itself after the answer."""
GATHER_S = 0.05
"""After a wake-up, wait this long for more objects: one transaction and one hand-over per batch. An event
reaches the pipeline up to this much later; in exchange, during a burst the background thread and the
pipeline wake 20 times a second instead of 200, and leave the CPU to the receiving thread and the sender
(5 ms to 50 ms, side by side: small objects +12 % with the receiver alone, +15 % with the whole daemon;
CT slices +30 % with the whole daemon)."""
IDLE_CHECKPOINT_S = 1.0
"""With no object for this long, partly used log segments are synced and reused too."""
RETRY_S = 5.0

Announce = Callable[[list[StoredInstance], list[tuple[dict[str, Any], Path]]], None]
"""Hands objects to the pipeline: (stored objects, then (summary, path) of duplicates received meanwhile)."""


@dataclass(slots=True)
class _Job:
    summary: dict[str, Any]
    path: Path
    ref: RecordRef | None
    """Set while the object is only in the ingest log."""


class Filer:
    def __init__(self, spool: Spool, index: InstanceIndex, announce: Announce) -> None:
        self.spool = spool
        self.index = index
        self.announce = announce
        self._jobs: collections.deque[_Job] = collections.deque()
        self._pending: dict[str, Path] = {}
        self._duplicates: dict[str, list[tuple[dict[str, Any], Path]]] = {}
        """Copies of a pending object received again: announced right after it, never before."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._hurry = threading.Event()
        """Skip the gathering wait: `flush` is waiting, or the filer stops."""
        self._stop = threading.Event()
        self._rounds = threading.Condition()
        self._rounds_started = 0
        self._rounds_done = 0
        self._thread: threading.Thread | None = None
        self._unfiled: list[_Job] = []
        """Objects not yet filed (e.g. disk full; their segment waits) or not yet indexed: retried."""
        self._local = threading.local()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dicom-filer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """File what is queued, sync, and stop."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(60)
        self._file_batch()
        try:
            self.spool.checkpoint(idle=True)
        except OSError as exc:
            log.error("dicom_checkpoint_failed", error=str(exc))

    def submit(self, summary: dict[str, Any], path: Path, ref: RecordRef | None) -> None:
        """Thread-safe, never blocks: `path` is durable (in the log when `ref` is set)."""
        with self._lock:
            self._pending[summary["sop_instance_uid"]] = path
        job = _Job(summary, path, ref)
        held: list[_Job] | None = getattr(self._local, "held", None)
        if held is not None:
            held.append(job)
            return
        self._jobs.append(job)
        self._wake.set()

    @contextmanager
    def inline(self) -> Iterator[None]:
        """Objects stored in this block are filed by this thread when it ends (after the answer went out)."""
        held: list[_Job] = []
        self._local.held = held
        try:
            yield
        finally:
            self._local.held = None
            for job in held:
                if job.ref is not None and job.ref.payload_len <= INLINE_MAX:
                    self._file(job)
                self._jobs.append(job)
            if held and not self._wake.is_set():  # set already during a burst: no lock and notify per object
                self._wake.set()

    def _file(self, job: _Job) -> bool:
        if job.ref is None:
            return True
        try:
            self.spool.file_record(job.ref, job.path)
        except OSError as exc:
            # Durable in the log; filed on a later try or at the next start.
            log.error("dicom_filing_failed", path=str(job.path), error=str(exc))
            return False
        job.ref = None
        return True

    def pending(self, sop_instance_uid: str) -> Path | None:
        with self._lock:
            return self._pending.get(sop_instance_uid)

    def add_duplicate(self, summary: dict[str, Any], path: Path) -> bool:
        """Announce a copy of a pending object right after the object itself. False when the object is no
        longer pending: it has been announced, and the copy may be announced at once."""
        uid = summary["sop_instance_uid"]
        with self._lock:
            if uid not in self._pending:
                return False
            self._duplicates.setdefault(uid, []).append((summary, path))
            return True

    def flush(self, timeout_s: float) -> None:
        """Return once every object submitted before the call has been handed to the pipeline (or after
        `timeout_s`): an MPPS message that ends a procedure must reach the pipeline after the objects
        stored before it, such as the procedure's dose report."""
        thread = self._thread
        if thread is None or not thread.is_alive() or threading.current_thread() is thread:
            return
        with self._rounds:
            after = self._rounds_started + 1  # a round under way may have taken its jobs before ours came
        self._hurry.set()
        self._wake.set()
        with self._rounds:
            self._rounds.wait_for(lambda: self._rounds_done >= after or not thread.is_alive(), timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(IDLE_CHECKPOINT_S if not self._unfiled else RETRY_S)
            self._wake.clear()
            if woken and not self._stop.is_set():
                self._hurry.wait(GATHER_S)
            self._hurry.clear()
            try:
                self._file_batch()
                self.spool.checkpoint(idle=not woken)
            except Exception:
                log.exception("dicom_filing_failed")
                self._stop.wait(1.0)

    def _file_batch(self) -> None:
        with self._rounds:
            self._rounds_started += 1
        try:
            self._file_jobs()
        finally:
            with self._rounds:
                self._rounds_done += 1
                self._rounds.notify_all()

    def _file_jobs(self) -> None:
        jobs, self._unfiled = self._unfiled, []
        while self._jobs:
            jobs.append(self._jobs.popleft())
        if not jobs:
            return
        filed: list[_Job] = []
        for job in jobs:
            if self._file(job):
                filed.append(job)
            else:
                self._unfiled.append(job)
        if not filed:
            return
        try:
            self.index.add_many([(job.summary, job.path) for job in filed])
        except BaseException:
            self._unfiled.extend(filed)  # filed (durable) already: indexed on the next try
            raise
        duplicates: list[tuple[dict[str, Any], Path]] = []
        # Under the lock: a copy that finds its object no longer pending must be announced after it.
        with self._lock:
            for job in filed:
                uid = job.summary["sop_instance_uid"]
                if self._pending.get(uid) == job.path:
                    del self._pending[uid]
                    duplicates.extend(self._duplicates.pop(uid, ()))
            self.announce(
                [StoredInstance(j.summary["sop_instance_uid"], j.path, j.summary, False) for j in filed], duplicates
            )
