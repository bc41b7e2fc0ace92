"""`suite-daemon procedure open|close` (`cmd_procedure`) against the running daemon and a real broker."""

from __future__ import annotations

import json

import pytest

from suite_daemon.audit.verify import verify_file
from suite_daemon.config import load_config
from suite_daemon.correlator.operator_cli import EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, cmd_procedure
from tests.broker import Mosquitto
from tests.daemon_harness import DaemonFactory
from tests.mqtt_client import Collector


def test_open_link_close_through_the_daemon(
    daemon_factory: DaemonFactory, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = daemon_factory(dicom_enabled=False)
    daemon.start()
    config = load_config(daemon.config_path)
    collector = Collector(broker.host, broker.port, f"{daemon.root}/#")
    try:
        # READY does not wait for the broker; `online` says the daemon is subscribed to its commands.
        collector.wait_for(lambda _: any(s["state"] == "online" for s in collector.on(f"{daemon.root}/status")))
        assert cmd_procedure(config, "close", None, None, "tech", None, True, 10.0) == EXIT_REFUSED
        refused = json.loads(capsys.readouterr().out)
        assert refused["status"] == "error" and refused["error"] == "no procedure is open"

        assert cmd_procedure(config, "open", "1.2.3", "ACC9", "dr-a", "start", True, 10.0) == EXIT_OK
        opened = json.loads(capsys.readouterr().out)
        pid = opened["procedure_id"]
        assert opened["status"] == "ok" and pid.startswith(f"{daemon.suite_id}-")

        assert cmd_procedure(config, "open", "1.2.4", None, "dr-a", "second study", False, 10.0) == EXIT_OK
        assert capsys.readouterr().out.strip() == f"open: procedure {pid}"
        assert cmd_procedure(config, "close", None, None, "dr-a", "done", False, 10.0) == EXIT_OK
        collector.wait_for(
            lambda _: any(s["state"] == "closed" for s in collector.on(f"{daemon.root}/procedure/{pid}/summary"))
        )
    finally:
        collector.close()
        daemon.terminate()
    summary = collector.on(f"{daemon.root}/procedure/{pid}/summary")[-1]
    assert summary["study_instance_uids"] == ["1.2.3", "1.2.4"] and summary["close_reason"] == "operator"
    records = [json.loads(line) for line in (daemon.state_dir / "journal" / f"{pid}.jsonl").read_text().splitlines()]
    commands = [r for r in records if r["event"] == "operator.command"]
    assert [(c["action"], c["outcome"], c["operator"]) for c in commands] == [
        ("open", "opened", "dr-a"),
        ("open", "linked", "dr-a"),
        ("close", "closed", "dr-a"),
    ]
    # the close command is audited before the record that closes the journal, which therefore verifies
    assert [r["event"] for r in records[-2:]] == ["operator.command", "procedure.closed"]
    assert verify_file(daemon.state_dir / "journal" / f"{pid}.jsonl", expect_closed=True).ok
    daemon_journal = (daemon.state_dir / "journal" / "daemon.jsonl").read_text()
    assert "no procedure is open" in daemon_journal  # the refused command is audited too


def test_no_daemon_or_no_broker_is_69(
    daemon_factory: DaemonFactory, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = daemon_factory(dicom_enabled=False)  # configured, never started: nobody answers
    config = load_config(daemon.config_path)
    assert cmd_procedure(config, "open", None, None, None, None, False, 1.0) == EXIT_UNAVAILABLE
    assert "no answer from the daemon" in capsys.readouterr().err
    broker.stop()
    try:
        assert cmd_procedure(config, "open", None, None, None, None, False, 1.0) == EXIT_UNAVAILABLE
        assert "unavailable" in capsys.readouterr().err
    finally:
        broker.start()
