"""A lost broker connection is handled without leaving errors behind for asyncio to complain about."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from suite_daemon.config import SuiteConfig
from suite_daemon.config.models import MqttSection, SuiteSection
from suite_daemon.events import utc_now
from suite_daemon.mqtt.outbox import Message, Outbox
from suite_daemon.mqtt.publisher import Publisher
from tests.broker import Mosquitto


async def _until(predicate: Callable[[], bool], limit_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_connection_found_dead_while_publishing_leaves_no_unretrieved_error(
    broker: Mosquitto, suite_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """paho reports the lost connection (aiomqtt puts the error on a future for its message iterator) and
    refuses the next publish; the publisher's drain fails first and the iterator is cancelled before it
    looks. The error must still be marked seen, or asyncio prints "Future exception was never retrieved"
    (seen at the end of test runs, about one in three)."""
    real_publish = mqtt.Client.publish
    armed = False

    def publish(self: mqtt.Client, topic: str, *args: Any, **kwargs: Any) -> mqtt.MQTTMessageInfo:
        nonlocal armed
        if armed and topic.endswith("/probe"):
            armed = False
            lost = ReasonCode(PacketTypes.DISCONNECT, identifier=128)
            # what paho's loop does (with the VERSION2 callbacks aiomqtt asks for, cast as paho casts them)
            on_disconnect = cast(mqtt.CallbackOnDisconnect_v2, self.on_disconnect)
            on_disconnect(self, None, mqtt.DisconnectFlags(False), lost, None)
            info = mqtt.MQTTMessageInfo(0)
            info.rc = mqtt.MQTT_ERR_NO_CONN
            return info
        return real_publish(self, topic, *args, **kwargs)

    monkeypatch.setattr(mqtt.Client, "publish", publish)
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(str(context.get("message"))))
    config = SuiteConfig(
        suite=SuiteSection(id=suite_id, state_dir=tmp_path),
        mqtt=MqttSection(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5),
    )
    outbox = Outbox(tmp_path / "outbox.sqlite3", config.mqtt.outbox_max_events)
    await outbox.open()
    publisher = Publisher(config, outbox, utc_now())
    task = asyncio.create_task(publisher.run())
    try:
        await _until(publisher.connected.is_set)
        armed = True
        await outbox.append([], lambda _event: [], extra=[Message.json(f"suite/{suite_id}/probe", {"n": 1})])
        publisher.wake()
        await _until(lambda: publisher.connections >= 2)  # reconnected after the loss
        await _until(lambda: outbox.count == 0)  # and the message went out then
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0)
        loop.set_exception_handler(previous)
    assert not [m for m in reported if "never retrieved" in m], reported
