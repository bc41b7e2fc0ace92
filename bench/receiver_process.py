"""suite-daemon's DICOM receiver alone in a process, for the benchmark: `python receiver_process.py STATE_DIR PORT`.

The real `DicomReceiver` (durable spool with fsync, index, announcements) on a real `DaemonContext`; the
sink resolves every durable submission at once. Prints `READY` when listening; stops on SIGTERM.
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
from suite_daemon.daemon.context import DaemonContext
from suite_daemon.dicom.receiver import DicomReceiver


async def main(state_dir: Path, port: int, variant: str) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    dicom: dict[str, Any] = {
        "bind": "127.0.0.1",
        "port": port,
        "ae_title": "SUITE_SCP",
        "min_free_mb": 0,
        "max_associations": 16,
        "allowed_callers": [{"ae_title": "*"}],
    }
    if variant == "pdu16k":
        dicom["max_pdu_size"] = 16384
    config = SuiteConfig(suite={"id": "bench", "state_dir": state_dir}, dicom=dicom)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    ctx = DaemonContext(config=config, loop=asyncio.get_running_loop(), inputs=queue)

    async def sink() -> None:
        while True:
            _, done = await queue.get()
            if done is not None:
                done.set_result(None)

    consumer = asyncio.create_task(sink())
    task = asyncio.create_task(DicomReceiver(config).run(ctx, lambda: print("READY", flush=True)))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    consumer.cancel()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "default"))
