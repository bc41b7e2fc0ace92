"""The systemd notify protocol against datagram sockets the test binds (path and abstract)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from suite_daemon.daemon.sd_notify import Notifier, watchdog_interval_s
from tests.broker import Mosquitto
from tests.daemon_harness import DaemonFactory
from tests.mqtt_client import Collector


def test_notifier_is_a_no_op_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    os.environ.pop("NOTIFY_SOCKET", None)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("x")  # nothing to send to, nothing raised


def test_notifier_writes_to_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier(str(path))
        notifier.ready("listening")
        notifier.watchdog()
        notifier.stopping()
        assert server.recv(100) == b"READY=1\nSTATUS=listening"
        assert server.recv(100) == b"WATCHDOG=1"
        assert server.recv(100) == b"STOPPING=1\nSTATUS=stopping"
        notifier.close()


def test_notifier_writes_to_an_abstract_socket() -> None:
    name = f"suite-daemon-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(b"\0" + name.encode())
        notifier = Notifier("@" + name)
        notifier.status("hello")
        notifier.close()
        assert server.recv(100) == b"STATUS=hello"


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    os.environ["WATCHDOG_USEC"] = "4000000"
    os.environ["WATCHDOG_PID"] = str(os.getpid())
    try:
        assert watchdog_interval_s() == 2.0
        os.environ["WATCHDOG_PID"] = "1"
        assert watchdog_interval_s() is None  # meant for another process
    finally:
        del os.environ["WATCHDOG_USEC"], os.environ["WATCHDOG_PID"]


def test_daemon_speaks_the_protocol_in_order(daemon_factory: DaemonFactory, broker: Mosquitto) -> None:
    daemon = daemon_factory()
    status = Collector(broker.host, broker.port, f"{daemon.root}/status")
    daemon.start(env={"WATCHDOG_USEC": "1000000"})
    # READY=1 comes once the receiver listens and the outbox is open.
    assert (
        subprocess.run(
            ["echoscu", "-aet", "CT01", "-aec", "SUITE_SCP", "127.0.0.1", str(daemon.dicom_port)], timeout=30
        ).returncode
        == 0
    )
    daemon.wait_notification("WATCHDOG=1", timeout=10)
    status.wait_for(lambda ms: any(m.json()["state"] == "online" for m in ms))
    assert daemon.stop(signal.SIGTERM) == 0
    while True:
        daemon.read_notifications(0.2)
        if not daemon.notifications or "STOPPING=1" in daemon.notifications[-1]:
            break
    notes = daemon.notifications
    ready = next(i for i, n in enumerate(notes) if "READY=1" in n.split("\n"))
    stopping = next(i for i, n in enumerate(notes) if "STOPPING=1" in n.split("\n"))
    assert ready < stopping
    assert any(n.startswith("STATUS=") or "\nSTATUS=" in n for n in notes)
    assert any("dicom running" in n for n in notes)
    status.close()
