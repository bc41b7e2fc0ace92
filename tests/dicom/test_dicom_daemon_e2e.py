"""Through the running daemon (subprocess, real Mosquitto): stores, refusals, and SIGKILL mid-store."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dicom.dicom_harness import SCP_AE, store_until_killed
from tests.dicom.dicom_testdata import ct_slice, dataset_bytes, new_study, save, xa_run
from tests.mqtt_client import Collector

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK not installed")

CALLERS = '[{ae_title = "STORESCU", host = "127.0.0.1"}, {ae_title = "TESTSCU", host = "*"}]'


def _events(collector: Collector, root: str, kind: str) -> list[dict[str, Any]]:
    """Events of `kind` on `R/event` or any `R/procedure/<id>/event` (where the correlator puts them)."""
    return [
        m.json()
        for m in list(collector.messages)
        if m.topic.startswith(root) and m.topic.endswith("/event") and m.json().get("type") == kind
    ]


def test_store_and_refusal_published_and_audited(daemon_factory, broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(allowed_callers=CALLERS)
    collector = Collector(broker.host, broker.port, f"{daemon.root}/#")
    try:
        daemon.start()
        study, series = new_study()
        files = [save(ct_slice(study, series, i), tmp_path / "ct") for i in range(20)]
        storescu = ["storescu", "-R", "-aet", "STORESCU", "-aec", SCP_AE, "127.0.0.1", str(daemon.dicom_port)]
        # The last slice twice: its copy arrives while the original is still being filed and announced.
        sent = [*files, files[-1]]
        done = subprocess.run([*storescu, *map(str, sent)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        refused = subprocess.run(
            ["echoscu", "-aet", "INTRUDER", "-aec", SCP_AE, "127.0.0.1", str(daemon.dicom_port)],
            capture_output=True,
            timeout=60,
        )
        assert refused.returncode != 0
        collector.wait_for(
            lambda _: (
                len(_events(collector, daemon.root, "image.received")) == 21
                and len(_events(collector, daemon.root, "association.rejected")) == 1
            )
        )
    finally:
        collector.close()
    images = _events(collector, daemon.root, "image.received")
    assert {e["data"]["sop_instance_uid"] for e in images} == {p.stem for p in files}
    last = [e["data"]["duplicate"] for e in images if e["data"]["sop_instance_uid"] == files[-1].stem]
    assert last == [False, True]  # counted once, and the copy is announced after the original
    assert sum(e["data"]["duplicate"] for e in images) == 1
    assert all(e["data"]["study_instance_uid"] == study for e in images)
    payloads = json.dumps([m.json() for m in collector.messages])
    assert "Doe" not in payloads and "PID-SECRET" not in payloads
    rejected = _events(collector, daemon.root, "association.rejected")[0]["data"]
    assert (rejected["calling_ae"], rejected["host"]) == ("INTRUDER", "127.0.0.1")
    audit = (daemon.state_dir / "journal" / "daemon.jsonl").read_text()
    assert '"association_rejected"' in audit and "INTRUDER" in audit
    for path in files:
        stored = daemon.state_dir / "spool" / study / series / path.name
        assert dataset_bytes(stored) == dataset_bytes(path)
    assert daemon.stop(signal.SIGTERM) == 0


def test_sigkill_during_long_store_then_restart(daemon_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(allowed_callers=CALLERS)
    study, series = new_study()
    small = [save(ct_slice(study, series, i), tmp_path / "ct") for i in range(30)]
    big = [save(xa_run(study, series, i, frames=60, rows=512, cols=512), tmp_path / "xa") for i in range(2)]
    daemon.start()
    acknowledged: list[Path] = []
    big_started = threading.Event()
    sender = threading.Thread(
        target=store_until_killed, args=(daemon.dicom_port, small + big, acknowledged, big_started)
    )
    sender.start()
    assert big_started.wait(120)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(10)
    sender.join(60)
    assert len(acknowledged) >= len(small)
    daemon.start()  # recovery runs before READY
    with sqlite3.connect(daemon.state_dir / "index.sqlite3") as db:
        indexed = dict(db.execute("SELECT sop_instance_uid, path FROM dicom_instances").fetchall())
    for path in acknowledged:
        assert path.stem in indexed, path.stem
        assert dataset_bytes(Path(indexed[path.stem])) == dataset_bytes(path)
    assert daemon.stop(signal.SIGTERM) == 0


def _receiver_child(daemon_pid: int) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == daemon_pid and b"suite_daemon.dicom.process" in cmdline:
            return int(stat.parent.name)
    raise AssertionError("the daemon has no DICOM receiver process")


def test_receiver_process_killed_is_reported_and_restarted(daemon_factory, broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(allowed_callers=CALLERS)
    collector = Collector(broker.host, broker.port, f"{daemon.root}/#")
    try:
        daemon.start()
        first = _receiver_child(daemon.process.pid)
        subprocess.run(["kill", "-9", str(first)], check=True)
        collector.wait_for(
            lambda _: any(
                e["data"]["kind"] == "component_failed" and e["data"]["data"]["component"] == "dicom"
                for e in _events(collector, daemon.root, "alert")
            )
        )
    finally:
        collector.close()
    echo = ["echoscu", "-aet", "TESTSCU", "-aec", SCP_AE, "127.0.0.1", str(daemon.dicom_port)]
    deadline = time.monotonic() + 30
    while subprocess.run(echo, capture_output=True, timeout=30).returncode != 0:  # back after its backoff
        assert time.monotonic() < deadline, "the receiver did not come back"
        time.sleep(0.2)
    assert _receiver_child(daemon.process.pid) != first
    study, series = new_study()
    files = [save(ct_slice(study, series, i), tmp_path / "ct") for i in range(5)]
    storescu = ["storescu", "-aet", "STORESCU", "-aec", SCP_AE, "127.0.0.1", str(daemon.dicom_port)]
    assert subprocess.run([*storescu, *map(str, files)], capture_output=True, timeout=60).returncode == 0
    assert daemon.process.poll() is None
    assert daemon.stop(signal.SIGTERM) == 0
