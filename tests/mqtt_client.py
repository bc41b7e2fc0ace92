"""A plain paho subscriber for tests: collects what arrives, in order, in a background thread."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    def __init__(
        self, host: str, port: int, topic: str, qos: int = 1, clean: bool = False, client_id: str | None = None
    ) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self.topic = topic
        self.qos = qos
        client_id = client_id or f"test-{uuid.uuid4().hex[:8]}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]  # paho takes float seconds, annotates int
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscription not acknowledged")

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=self.qos)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met; {len(self.messages)} messages received")
                self._cond.wait(min(left, 0.5))
            return list(self.messages)

    def on(self, topic: str) -> list[Any]:
        with self._cond:
            return [m.json() for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()  # before the loop stops: the loop closes the socket once it has gone out
        self.client.loop_stop()


class SubscriberProcess(Collector):
    """The same collector, with `mosquitto_sub` (a separate C client) doing the subscribing: a subscriber
    that keeps up with any rate, for tests that send thousands of messages."""

    def __init__(self, host: str, port: int, topic: str, client_id: str) -> None:
        self.messages = []
        self._cond = threading.Condition()
        self.topic = topic
        self.process = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                host,
                "-p",
                str(port),
                "-q",
                "1",
                "-c",
                "-i",
                client_id,
                "-t",
                topic,
                "-F",
                "%r\t%t\t%p",
            ],
            stdout=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            retain, topic, payload = line.rstrip(b"\n").split(b"\t", 2)
            with self._cond:
                self.messages.append(Received(topic.decode(), payload, retain == b"1"))
                self._cond.notify_all()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._reader.join(10)  # it reads to the end of the output, then the pipe is closed
        if self.process.stdout is not None:
            self.process.stdout.close()
