"""A full disk under the outbox: the batch that cannot be committed is refused to whoever waits on it
(a store answers with a failure status), nothing half-written is published, and the daemon recovers
once there is room again. Needs a small tmpfs (root); skipped where it cannot be mounted."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from suite_daemon.daemon.context import Submission
from suite_daemon.events import Alerted, Event
from suite_daemon.mqtt.outbox import Outbox
from suite_daemon.pipeline.correlation import Outcome
from suite_daemon.pipeline.loop import Pipeline
from suite_daemon.pipeline.routing import router
from suite_daemon.pipeline.unassigned import UnassignedCorrelator
from tests.test_outbox_outage import NullJournals


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, timeout=30
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


async def test_commit_on_a_full_disk_is_refused_and_the_pipeline_recovers(tiny_disk: Path) -> None:
    outbox = Outbox(tiny_disk / "outbox.sqlite3", 1_000_000)
    await outbox.open()
    inputs: asyncio.Queue[Submission] = asyncio.Queue()
    pipeline = Pipeline(inputs, UnassignedCorrelator(), outbox, router("suite/t"), NullJournals(), lambda: None, 0.8)
    task = asyncio.create_task(pipeline.run())
    ballast = tiny_disk / "ballast"
    try:
        fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk to the last block
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        refused = 0
        for i in range(50):
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            inputs.put_nowait((Alerted("notice", "probe", "x" * 4000, {"i": i}), done))
            try:
                await asyncio.wait_for(asyncio.wrap_future(done), 10)
            except Exception:  # sqlite3.OperationalError: database or disk is full
                refused += 1
        assert refused > 0
        assert not task.done()  # the pipeline is still running
        ballast.unlink()
        done = concurrent.futures.Future()
        inputs.put_nowait((Outcome(events=[Event("dose.sample", "t", {"after": True}, "p")]), None))
        inputs.put_nowait((Alerted("notice", "probe", "after", {}), done))
        await asyncio.wait_for(asyncio.wrap_future(done), 10)
        payloads = [row.message.payload for row in outbox.pending(0, 100_000)]
        assert any(b'"after":true' in p for p in payloads)
    finally:
        ballast.unlink(missing_ok=True)
        pipeline.stop()
        await asyncio.wait_for(task, 10)
        await outbox.close()
