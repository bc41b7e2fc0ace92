"""Stopping the publisher while it connects (the daemon told to stop right after start)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from suite_daemon.config import SuiteConfig
from suite_daemon.config.models import MqttSection, SuiteSection
from suite_daemon.events import utc_now
from suite_daemon.mqtt.outbox import Outbox
from suite_daemon.mqtt.publisher import Publisher
from tests.broker import Mosquitto


async def test_a_cancel_swallowed_while_subscribing_still_stops_the_publisher(
    broker: Mosquitto, suite_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11's `asyncio.wait_for` (used by aiomqtt) can swallow a cancellation that arrives together with
    the answer it waits for (seen as a daemon that never stopped after SIGTERM right after start)."""
    subscribing = asyncio.Event()
    real_subscribe = aiomqtt.Client.subscribe

    async def subscribe_swallowing_cancel(
        self: aiomqtt.Client, *args: Any, **kwargs: Any
    ) -> tuple[int, ...] | list[ReasonCode]:
        subscribing.set()
        with contextlib.suppress(asyncio.CancelledError):  # the race in wait_for: the cancel is lost
            await asyncio.sleep(0.5)
        return await real_subscribe(self, *args, **kwargs)

    monkeypatch.setattr(aiomqtt.Client, "subscribe", subscribe_swallowing_cancel)
    config = SuiteConfig(
        suite=SuiteSection(id=suite_id, state_dir=tmp_path), mqtt=MqttSection(host=broker.host, port=broker.port)
    )
    outbox = Outbox(tmp_path / "outbox.sqlite3", config.mqtt.outbox_max_events)
    await outbox.open()
    try:
        task = asyncio.create_task(Publisher(config, outbox, utc_now()).run())
        await asyncio.wait_for(subscribing.wait(), 10)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "the publisher did not stop"
        assert task.cancelled()
    finally:
        await outbox.close()
