"""`suite-daemon tail`: live events from the broker, JSON Lines with --json, exit 0 on SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.broker import Mosquitto, free_port
from tests.daemon_harness import REPO, DaemonFactory
from tests.test_daemon_lifecycle import ONLY_CT01, rejected_associations


def test_tail_prints_live_events_and_stops_on_sigint(daemon_factory: DaemonFactory, broker: Mosquitto) -> None:
    daemon = daemon_factory(allowed_callers=ONLY_CT01)
    daemon.start()
    with subprocess.Popen(
        daemon.command("tail", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    ) as tail:
        try:
            time.sleep(1.5)  # subscribed
            rejected_associations(daemon.dicom_port, 1)
            line = tail.stdout.readline() if tail.stdout else ""
            event = json.loads(line)
            assert event["type"] == "association.rejected"
            assert event["data"]["calling_ae"] == "INTRUDER"
        finally:
            tail.send_signal(signal.SIGINT)
            assert tail.wait(20) == 0


def test_tail_without_a_broker_exits_69(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(extra_toml="")
    text = daemon.config_path.read_text().replace(f"port = {daemon.broker.port}\n", f"port = {free_port()}\n")
    daemon.config_path.write_text(text)
    result = daemon.cli("tail", timeout=60)
    assert result.returncode == 69
    assert "unavailable" in result.stderr


def test_sample_lines_name_their_device() -> None:
    from suite_daemon.tail import describe

    line = describe(
        {
            "time": "2026-11-22T01:11:23.584Z",
            "procedure_id": "p",
            "seq": 7,
            "type": "injection.sample",
            "data": {"device": "infusion1", "driver": "alaris-asena", "values": {"volume_ml": 0.3}},
        }
    )
    assert "device=infusion1 volume_ml=0.3" in line
