"""The daemon as a process: clean stop, SIGKILL with a backlog, a missing broker."""

from __future__ import annotations

import json
import signal
import sqlite3
import time

from suite_daemon.dicom.policy import REJECT_CALLING_AE
from tests.association_probe import request_association
from tests.broker import Mosquitto
from tests.daemon_harness import DaemonFactory, DaemonProcess
from tests.mqtt_client import Collector


def rejected_associations(port: int, count: int) -> None:
    """Associations from a caller that is not allowed: each one is an `association.rejected` event."""
    for _ in range(count):
        assert request_association(port, "INTRUDER", "SUITE_SCP") == REJECT_CALLING_AE


def outbox_rows(daemon: DaemonProcess, topic_like: str = "%") -> int:
    with sqlite3.connect(daemon.state_dir / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count: int = db.execute("SELECT COUNT(*) FROM outbox WHERE topic LIKE ?", (topic_like,)).fetchone()[0]
        return count


def daemon_seqs(collector: Collector, root: str, kind: str | None = None) -> list[int]:
    return [
        m.json()["seq"]
        for m in collector.messages
        if m.topic == f"{root}/event" and (kind is None or m.json()["type"] == kind)
    ]


ONLY_CT01 = '[{ae_title = "CT01", host = "*"}]'


def test_sigterm_publishes_offline_and_leaves_the_outbox_consistent(
    daemon_factory: DaemonFactory, broker: Mosquitto
) -> None:
    daemon = daemon_factory(allowed_callers=ONLY_CT01)
    status = Collector(broker.host, broker.port, f"{daemon.root}/status")
    daemon.start()
    status.wait_for(lambda ms: any(m.json()["state"] == "online" for m in ms))
    rejected_associations(daemon.dicom_port, 5)
    assert daemon.stop(signal.SIGTERM) == 0
    states = status.wait_for(lambda ms: ms[-1].json()["state"] == "offline")
    assert states[-1].retain or states[-1].json()["state"] == "offline"
    assert outbox_rows(daemon) == 0
    # the retained status a newcomer sees is offline
    late = Collector(broker.host, broker.port, f"{daemon.root}/status", clean=True)
    late.wait_for(lambda ms: bool(ms))
    assert late.messages[-1].json()["state"] == "offline" and late.messages[-1].retain
    daemon_journal = (daemon.state_dir / "journal" / "daemon.jsonl").read_text().splitlines()
    assert json.loads(daemon_journal[-1])["event"] == "daemon.stopped"
    assert daemon.cli("audit", "verify").returncode == 0
    status.close()
    late.close()


def test_sigkill_with_a_backlog_then_restart_delivers_everything(
    daemon_factory: DaemonFactory, broker: Mosquitto
) -> None:
    daemon = daemon_factory(allowed_callers=ONLY_CT01)
    subscriber_id = f"{daemon.suite_id}-sub"
    Collector(broker.host, broker.port, f"{daemon.root}/event", client_id=subscriber_id).close()
    broker.stop(signal.SIGTERM)  # the broker is away: events pile up in the outbox
    daemon.start()
    rejected_associations(daemon.dicom_port, 60)
    deadline = time.monotonic() + 20
    while outbox_rows(daemon, "%/event") < 61 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert outbox_rows(daemon, "%/event") == 61  # daemon.started and 60 association.rejected
    daemon.kill()  # SIGKILL with undelivered events in the outbox
    broker.start()
    daemon.start()
    collector = Collector(broker.host, broker.port, f"{daemon.root}/event", client_id=subscriber_id)
    collector.wait_for(lambda ms: len(set(daemon_seqs(collector, daemon.root, "association.rejected"))) >= 60, 60)
    seqs = daemon_seqs(collector, daemon.root)
    first_seen = list(dict.fromkeys(seqs))
    # Every event numbered before the kill arrives, in order, numbering continues after the restart
    # with no gap; a QoS 1 repeat (only what was in flight) would show as a repeated seq.
    assert first_seen == list(range(1, len(first_seen) + 1))
    types = [m.json()["type"] for m in collector.messages if m.topic == f"{daemon.root}/event"]
    assert types.count("daemon.started") == 2
    assert len(seqs) - len(first_seen) == 0  # nothing was in flight: the broker was away before the kill
    assert daemon.stop() == 0
    collector.close()


def test_daemon_starts_and_serves_without_a_broker(daemon_factory: DaemonFactory, broker: Mosquitto) -> None:
    broker.stop()
    daemon = daemon_factory(allowed_callers=ONLY_CT01)
    daemon.start()  # READY without a broker: the receiver must not depend on MQTT
    rejected_associations(daemon.dicom_port, 2)
    broker.start()
    collector = Collector(broker.host, broker.port, f"{daemon.root}/#", clean=True)
    collector.wait_for(lambda ms: any(m.topic.endswith("/status") and m.json()["state"] == "online" for m in ms), 30)
    assert daemon.stop() == 0
    collector.close()


def test_sigkill_leaves_offline_as_the_last_will(daemon_factory: DaemonFactory, broker: Mosquitto) -> None:
    daemon = daemon_factory(allowed_callers=ONLY_CT01, dicom_enabled=False)
    status = Collector(broker.host, broker.port, f"{daemon.root}/status")
    daemon.start()
    status.wait_for(lambda ms: any(m.json()["state"] == "online" for m in ms))
    daemon.kill()
    status.wait_for(lambda ms: ms[-1].json()["state"] == "offline", 30)
    late = Collector(broker.host, broker.port, f"{daemon.root}/status", clean=True)
    late.wait_for(lambda ms: bool(ms))
    assert late.messages[-1].json()["state"] == "offline" and late.messages[-1].retain
    status.close()
    late.close()


def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(
    daemon_factory: DaemonFactory, broker: Mosquitto
) -> None:
    """Two daemons on one state dir would fight over its journals, outbox and broker session (seen in QA:
    every commit of the second failed on the journal lock, both kept kicking each other off the broker)."""
    import subprocess

    daemon = daemon_factory(dicom_enabled=False)
    daemon.start()
    try:
        second = subprocess.run(daemon.command("run"), capture_output=True, text=True, timeout=60)
        assert second.returncode == 78
        assert "config error: suite.state_dir:" in second.stderr and "in use by another suite-daemon" in second.stderr
    finally:
        assert daemon.stop(signal.SIGTERM) == 0
    daemon.start()  # the lock went with the first process
    assert daemon.stop(signal.SIGTERM) == 0
