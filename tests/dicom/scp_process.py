"""The receiver alone in a process, for crash tests: `python scp_process.py STATE_DIR PORT`.

Runs `DicomReceiver` on a real `DaemonContext` whose sink resolves every durable submission at once,
prints `READY` when listening, and runs until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from suite_daemon.config import SuiteConfig
from suite_daemon.daemon.context import DaemonContext
from suite_daemon.dicom.receiver import DicomReceiver


async def main(state_dir: Path, port: int) -> None:
    config = SuiteConfig(
        suite={"id": "t", "state_dir": state_dir},
        dicom={"bind": "127.0.0.1", "port": port, "min_free_mb": 0, "allowed_callers": [{"ae_title": "*"}]},
    )
    queue: asyncio.Queue[Any] = asyncio.Queue()
    ctx = DaemonContext(config=config, loop=asyncio.get_running_loop(), inputs=queue)

    async def sink() -> None:
        while True:
            _, done = await queue.get()
            if done is not None:
                done.set_result(None)

    consumer = asyncio.create_task(sink())
    await DicomReceiver(config).run(ctx, lambda: print("READY", flush=True))
    consumer.cancel()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
