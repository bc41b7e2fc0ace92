"""A real DicomReceiver on a real DaemonContext and event loop, with a stand-in for the pipeline's sink."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, XRayAngiographicImageStorage
from pynetdicom import AE

from suite_daemon.config import SuiteConfig
from suite_daemon.daemon.context import DaemonContext
from suite_daemon.dicom.ingest_log import LoggedRecord
from suite_daemon.dicom.receiver import DicomReceiver
from suite_daemon.dicom.spool import DIRECT_FILING_SMALLEST, Spool
from suite_daemon.events import Alerted, AssociationRejected, ImageStored, MppsReceived

SCP_AE = "SUITE_SCP"


FILING_SIZES = [  # (object size, `direct_filing_min`): the ways a logged object is filed
    pytest.param(9_000, DIRECT_FILING_SMALLEST, id="small-copied"),
    pytest.param(4 * DIRECT_FILING_SMALLEST, DIRECT_FILING_SMALLEST, id="large-direct"),
    pytest.param(4 * DIRECT_FILING_SMALLEST, 0, id="large-copied"),  # the default
]


def ready_spool(
    root: Path, log_bytes: int = 32 * 1024 * 1024, direct_filing_min: int = 0
) -> tuple[Spool, list[LoggedRecord]]:
    """A spool whose ingest log has a segment to write into, and the records its log held (as at a start)."""
    spool = Spool(root, log_bytes, direct_filing_min)
    pending = spool.prepare()
    deadline = time.monotonic() + 30
    while (writer := spool.log.writer()) is None:
        assert time.monotonic() < deadline, "no ingest log segment was made"
        time.sleep(0.01)
    writer.abandon()
    return spool, pending


def pynetdicom_store(
    port: int, objects: Sequence[Dataset | Path], contexts: Sequence[tuple[str, str | None]] = ((CTImageStorage, None),)
) -> list[int]:
    """C-STOREs by pynetdicom as TESTSCU, in order over one association (a Part 10 file's data set is sent as
    its bytes are); the statuses. `contexts`: (SOP class, transfer syntax; None: pynetdicom's defaults)."""
    ae = AE(ae_title="TESTSCU")
    for sop_class, transfer_syntax in contexts:
        ae.add_requested_context(sop_class, transfer_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=SCP_AE)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(item).Status) for item in objects]
    finally:
        assoc.release()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    port: int
    state_dir: Path
    config: SuiteConfig
    receiver: DicomReceiver
    items: list[Any] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: type) -> list[Any]:
        return [i for i in self.items if isinstance(i, kind)]

    @property
    def images(self) -> list[ImageStored]:
        return self.of(ImageStored)

    @property
    def alerts(self) -> list[Alerted]:
        return self.of(Alerted)

    @property
    def rejections(self) -> list[AssociationRejected]:
        return self.of(AssociationRejected)

    @property
    def mpps(self) -> list[MppsReceived]:
        return self.of(MppsReceived)

    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_for(self, predicate: Callable[[], bool], limit_s: float = 20.0) -> None:
        """Until `predicate()` holds for what the sink received."""
        async with asyncio.timeout(limit_s), self.changed:
            await self.changed.wait_for(predicate)


def make_config(state_dir: Path, port: int, **dicom: Any) -> SuiteConfig:
    settings: dict[str, Any] = {
        "bind": "127.0.0.1",
        "port": port,
        "ae_title": SCP_AE,
        "min_free_mb": 0,
        "ingest_log_mb": 32,  # two segments: less zero-filling per test than the default 256
        "allowed_callers": [
            {"ae_title": "STORESCU", "host": "127.0.0.1"},
            {"ae_title": "ECHOSCU", "host": "*"},
            {"ae_title": "TESTSCU", "host": "127.0.0.1"},
        ],
    }
    settings.update(dicom)
    return SuiteConfig.model_validate({"suite": {"id": "t", "state_dir": state_dir}, "dicom": settings})


@contextlib.asynccontextmanager
async def running_receiver(state_dir: Path, port: int | None = None, **dicom: Any) -> AsyncIterator[Running]:
    port = port or free_port()
    config = make_config(state_dir, port, **dicom)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    running = Running(port, state_dir, config, DicomReceiver(config))

    def audit(event: str, **fields: Any) -> None:
        running.audit.append({"event": event, **fields})

    ctx = DaemonContext(config=config, loop=asyncio.get_running_loop(), inputs=queue, audit_daemon=audit)

    async def sink() -> None:  # what the lead's event sink does: take the input, make it durable, resolve
        while True:
            item, done = await queue.get()
            running.items.append(item)
            if done is not None:
                done.set_result(None)
            async with running.changed:
                running.changed.notify_all()

    started = asyncio.Event()
    consumer = asyncio.create_task(sink())
    task = asyncio.create_task(running.receiver.run(ctx, started.set))
    try:
        async with asyncio.timeout(30):
            await started.wait()
        yield running
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer


async def run_tool(*args: str, env: dict[str, str] | None = None, limit_s: float = 120) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    async with asyncio.timeout(limit_s):
        out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode(errors="replace")


def close_requestor_socket(assoc: Any) -> None:
    """pynetdicom leaves a requestor's socket open when the association fails under it (the peer killed, a
    TLS handshake refused): its close() skips a socket it no longer counts as connected."""
    raw = getattr(assoc.dul.socket, "socket", None)
    if raw is not None:
        raw.close()


def store_until_killed(port: int, files: list[Path], acknowledged: list[Path], big_started: threading.Event) -> None:
    """Send `files` on one association (run in a thread), recording each path answered 0x0000; sets
    `big_started` when the first file of an `xa` folder goes out, so a test can kill the receiver then."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    ae.add_requested_context(XRayAngiographicImageStorage, "1.2.840.10008.1.2.1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5  # bounds the wait once the peer is killed
    assoc = ae.associate("127.0.0.1", port, ae_title=SCP_AE)
    assert assoc.is_established
    try:
        for path in files:
            if path.parent.name == "xa":
                big_started.set()
            status = assoc.send_c_store(path)
            if status and int(status.Status) == 0:
                acknowledged.append(path)
            elif not assoc.is_established:
                return
    finally:
        big_started.set()
        if assoc.is_established:
            assoc.abort()
        close_requestor_socket(assoc)
