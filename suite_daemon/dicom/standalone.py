"""The DICOM receiver alone in a process, without the event pipeline: for crash tests and benchmarks.

`python -m suite_daemon.dicom.standalone STATE_DIR PORT [INGEST_LOG_MB]` runs the real `DicomReceiver`
(durable spool with fsync, index, announcements) on a real `DaemonContext` whose sink acknowledges every
durable submission at once. Prints `READY` when listening; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import structlog

from suite_daemon.config import SuiteConfig
from suite_daemon.config.models import AllowedCaller, DicomSection, SuiteSection
from suite_daemon.daemon.context import DaemonContext
from suite_daemon.dicom.receiver import DicomReceiver


async def run_receiver(state_dir: Path, port: int, ingest_log_mb: int = 256) -> None:
    dicom = DicomSection(
        bind="127.0.0.1",
        port=port,
        ae_title="SUITE_SCP",
        min_free_mb=0,
        max_associations=16,
        allowed_callers=[AllowedCaller(ae_title="*")],
        ingest_log_mb=ingest_log_mb,
    )
    config = SuiteConfig(suite=SuiteSection(id="standalone", state_dir=state_dir), dicom=dicom)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    ctx = DaemonContext(config=config, loop=asyncio.get_running_loop(), inputs=queue)

    async def acknowledge() -> None:
        while True:
            _, done = await queue.get()
            if done is not None:
                done.set_result(None)

    consumer = asyncio.create_task(acknowledge())
    task = asyncio.create_task(DicomReceiver(config).run(ctx, lambda: print("READY", flush=True)))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    consumer.cancel()


if __name__ == "__main__":
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING), cache_logger_on_first_use=True
    )
    asyncio.run(run_receiver(Path(sys.argv[1]), int(sys.argv[2]), *(int(a) for a in sys.argv[3:4])))
