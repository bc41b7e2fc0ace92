"""Shared fixtures: a private Mosquitto broker, unique suites, and the daemon as a subprocess."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import scu_race
from tests.broker import Mosquitto
from tests.daemon_harness import ANY_CALLER, DaemonFactory, DaemonProcess

scu_race.install()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the test session, on a free loopback port. Tests may stop and restart it."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(mosquitto: Mosquitto) -> Iterator[Mosquitto]:
    """The session broker, running at the start of the test (and restarted if a test left it down)."""
    if not mosquitto.running:
        mosquitto.start()
    yield mosquitto
    if not mosquitto.running:
        mosquitto.start()


@pytest.fixture
def suite_id() -> str:
    """A suite id unique to the test, so its topics (`suite/<id>/...`) do not mix with others'."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def daemon_factory(tmp_path: Path, broker: Mosquitto, suite_id: str) -> Iterator[DaemonFactory]:
    """Make `DaemonProcess`es for this test; every one still running at the end is stopped."""
    made: list[DaemonProcess] = []

    def make(
        extra_toml: str = "",
        *,
        dicom_port: int | None = None,
        allowed_callers: str = ANY_CALLER,
        dicom_enabled: bool = True,
    ) -> DaemonProcess:
        daemon = DaemonProcess(
            tmp_path / f"daemon{len(made)}",
            broker,
            suite_id,
            extra_toml,
            dicom_port=dicom_port,
            allowed_callers=allowed_callers,
            dicom_enabled=dicom_enabled,
        )
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.terminate()
