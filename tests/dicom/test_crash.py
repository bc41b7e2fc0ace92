"""SIGKILL while storing: every instance answered 0x0000 is in the spool and the index after a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from pathlib import Path

from tests.dicom.dicom_harness import free_port, running_receiver, store_until_killed
from tests.dicom.dicom_testdata import ct_slice, dataset_bytes, new_study, save, xa_run


async def test_sigkill_during_long_store_loses_nothing_acknowledged(tmp_path: Path) -> None:
    study, series = new_study()
    small = [save(ct_slice(study, series, i), tmp_path / "ct") for i in range(40)]
    big = [save(xa_run(study, series, i, frames=60, rows=512, cols=512), tmp_path / "xa") for i in range(3)]
    state_dir, port = tmp_path / "state", free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "suite_daemon.dicom.standalone",
        str(state_dir),
        str(port),
        "32",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while (line := await proc.stdout.readline()) and line.strip() != b"READY":
                pass
        assert line.strip() == b"READY"
        acknowledged: list[Path] = []
        big_started = threading.Event()
        sender = threading.Thread(target=store_until_killed, args=(port, small + big, acknowledged, big_started))
        sender.start()
        await asyncio.to_thread(big_started.wait, 60)
        await asyncio.sleep(0.05)  # a multi-frame run is on the wire now
        proc.kill()
        await proc.wait()
        await asyncio.to_thread(sender.join, 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert len(acknowledged) >= len(small)
    with sqlite3.connect(state_dir / "index.sqlite3") as db:
        unannounced = {r[0] for r in db.execute("SELECT sop_instance_uid FROM dicom_instances WHERE announced = 0")}

    async with running_receiver(state_dir) as scp:  # recovery runs before the receiver reports started
        # Objects answered but not yet filed when the kill came are filed from the ingest log by now.
        spooled = {p.stem for p in (state_dir / "spool").rglob("*.dcm")}
        leftovers = list((state_dir / "spool").rglob("*.tmp"))  # the new process's pool of empty files only
        assert all(p.parent.name == ".incoming" and not p.name.startswith(f"{proc.pid}-") for p in leftovers)
        with sqlite3.connect(state_dir / "index.sqlite3") as db:
            indexed = dict(db.execute("SELECT sop_instance_uid, path FROM dicom_instances").fetchall())
        assert set(indexed) == spooled
        for path in acknowledged:
            assert path.stem in indexed, path.stem
            assert dataset_bytes(Path(indexed[path.stem])) == dataset_bytes(path)
        # Stored but not yet announced before the kill (or not yet filed or indexed): announced now.
        await scp.wait_for(lambda: {i.summary["sop_instance_uid"] for i in scp.images} >= unannounced)
        assert all(i.summary["recovered"] for i in scp.images)
        assert {i.summary["sop_instance_uid"] for i in scp.images} <= spooled
        await asyncio.sleep(1.5)  # the announced flags are flushed every second
    with sqlite3.connect(state_dir / "index.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM dicom_instances WHERE announced = 0").fetchone()[0] == 0
