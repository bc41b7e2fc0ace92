"""Drains the outbox to the broker, in order, with a bounded number of QoS 1 publishes in flight.

One connection at a time, re-made with exponential backoff and jitter. A fresh client is made for
every connection, so nothing is retransmitted from a previous connection's memory: after a
reconnect the outbox is replayed from its oldest unacknowledged message. Subscribers may therefore
see a message twice (QoS 1 "at least once"); events carry a per-stream `seq` to detect that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import structlog

from suite_daemon import __version__
from suite_daemon.config import SuiteConfig
from suite_daemon.events import SCHEMA, rfc3339, utc_now
from suite_daemon.mqtt import topics
from suite_daemon.mqtt.outbox import Outbox

log = structlog.get_logger(__name__)

CommandHandler = Callable[[str, bytes], None]
"""Called with (action, payload) for every message on `R/command/procedure/<action>`."""

ACK_BATCH_S = 0.05
PUBLISH_TIMEOUT_S = 60.0
"""A QoS 1 message not acknowledged within this time means the connection is dead: reconnect and replay."""

PAHO_LOG = logging.getLogger("suite_daemon.mqtt.client")
PAHO_LOG.setLevel(logging.ERROR)  # paho warns on every queued publish; our own logs say what matters


def status_payload(state: str, started_at: datetime) -> bytes:
    body = {
        "schema": SCHEMA,
        "time": rfc3339(utc_now()),
        "state": state,
        "version": __version__,
        "started_at": rfc3339(started_at),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def tls_context(config: SuiteConfig) -> ssl.SSLContext | None:
    tls = config.mqtt.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def read_password(config: SuiteConfig) -> str | None:
    if config.mqtt.password_file is None:
        return None
    return config.mqtt.password_file.read_text(encoding="utf-8").rstrip("\r\n")


class Publisher:
    def __init__(self, config: SuiteConfig, outbox: Outbox, started_at: datetime) -> None:
        self.config = config
        self.outbox = outbox
        self.root = config.topic_root
        self.started_at = started_at
        self.on_command: CommandHandler | None = None
        self.on_state: Callable[[str], None] = lambda state: None
        self._wake = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._acked: list[int] = []
        self._inflight: dict[int, tuple[int, float]] = {}
        """In flight on this connection: paho message id → (outbox row id, deadline for its PUBACK)."""
        self._ack_writes: set[asyncio.Future[None]] = set()
        self._cancels_before_connect = 0
        self.connected = asyncio.Event()
        self.connections = 0
        """Successful connections so far (each loss may repeat up to `max_inflight` messages)."""

    # -- called by the rest of the daemon --------------------------------------------------

    def wake(self) -> None:
        """New messages are in the outbox."""
        self._wake.set()

    def publish_live(self, topic: str, payload: Mapping[str, Any]) -> None:
        """QoS 0, best effort; dropped when not connected (live displays only)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return
        body = json.dumps(payload, separators=(",", ":")).encode()
        client._client.publish(f"{self.root}/{topic}", body, qos=0)  # paho call: no await, no PUBACK

    # -- the connection loop ---------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        mqtt = self.config.mqtt
        will = aiomqtt.Will(topics.status(self.root), status_payload("offline", self.started_at), qos=1, retain=True)
        return aiomqtt.Client(
            hostname=mqtt.host,
            port=mqtt.port,
            identifier=self.config.client_id,
            clean_session=False,
            username=mqtt.username,
            password=read_password(self.config),
            keepalive=mqtt.keepalive_s,
            will=will,
            tls_context=tls_context(self.config),
            max_inflight_messages=mqtt.max_inflight,
            timeout=10,
            logger=PAHO_LOG,
        )

    async def run(self) -> None:
        """Connect, drain, reconnect: until cancelled."""
        delay = self.config.mqtt.reconnect_min_s
        while True:
            client = self._make_client()
            task = asyncio.current_task()
            self._cancels_before_connect = task.cancelling() if task is not None else 0
            try:
                async with client:
                    self._client = client
                    delay = self.config.mqtt.reconnect_min_s
                    await self._serve(client)
            except* aiomqtt.MqttError as group:
                error = "; ".join(str(exc) for exc in group.exceptions)
                if self.connected.is_set():
                    log.warning("broker_connection_lost", host=self.config.mqtt.host, error=error)
                    self.on_state("broker disconnected")
                else:
                    log.info("broker_unavailable", host=self.config.mqtt.host, error=error, retry_s=round(delay, 2))
            finally:
                self._client = None
                self.connected.clear()
                _retrieve_disconnection(client)
                await self._abandon_inflight()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.mqtt.reconnect_max_s)

    async def _serve(self, client: aiomqtt.Client) -> None:
        # Subscribed first: once `online` is out, commands are taken (scripts may wait for it before sending).
        await client.subscribe(topics.command_filter(self.root), qos=1)
        await client.publish(topics.status(self.root), status_payload("online", self.started_at), qos=1, retain=True)
        self.connected.set()
        self.connections += 1
        log.info("broker_connected", host=self.config.mqtt.host, port=self.config.mqtt.port, backlog=self.outbox.count)
        self.on_state("broker connected")
        task = asyncio.current_task()
        if task is not None and task.cancelling() > self._cancels_before_connect:
            # A cancel (the daemon stopping) that arrived together with the broker's answer was swallowed by
            # `asyncio.wait_for` inside aiomqtt (a Python 3.11 race): without this, the task group below would
            # run until the connection drops, and the daemon's shutdown would wait for it forever. (Counted
            # from before this connection: Python 3.11's TaskGroup leaves one uncancelled request behind when
            # a child fails, as with the previous connection's loss.)
            raise asyncio.CancelledError
        async with asyncio.TaskGroup() as group:
            group.create_task(self._drain(client))
            group.create_task(self._flush_acks())
            group.create_task(self._receive_commands(client))

    async def _drain(self, client: aiomqtt.Client) -> None:
        # Messages go to paho directly, tracked by message id until their PUBACK (`_on_puback`): no task, event
        # and timer per message as with `await client.publish(...)`, which costs more than the send itself.
        paho = client._client
        aiomqtt_on_publish = paho.on_publish

        def on_publish(*args: Any) -> None:  # (client, userdata, mid, reason_code, properties)
            if aiomqtt_on_publish is not None:
                aiomqtt_on_publish(*args)
            self._on_puback(args[2])

        paho.on_publish = on_publish
        loop = asyncio.get_running_loop()
        limit = self.config.mqtt.max_inflight
        self._inflight = {}
        cursor = 0
        while True:
            self._wake.clear()
            room = limit - len(self._inflight)
            rows = self.outbox.pending(cursor, room) if room > 0 else []
            for row in rows:
                m = row.message
                try:
                    info = paho.publish(m.topic, m.payload, m.qos, m.retain)
                except ValueError:
                    # Never sendable (as before: it stays in the outbox, is not acknowledged, and is tried
                    # again after a reconnect); the messages after it go on.
                    log.exception("publish_rejected", topic=m.topic)
                    cursor = row.id
                    continue
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    # A dead connection: the connection loop replays from the oldest unacknowledged row.
                    raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
                self._inflight[info.mid] = (row.id, loop.time() + PUBLISH_TIMEOUT_S)
                cursor = row.id
            if len(rows) == room > 0:
                continue  # there may be more, and room for it
            if not self._inflight:
                await self._wake.wait()
                continue
            # Woken by new rows or by a PUBACK that frees room; a message unacknowledged for PUBLISH_TIMEOUT_S
            # means a dead connection.
            _, deadline = next(iter(self._inflight.values()))
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()
            except TimeoutError:
                if self._inflight and next(iter(self._inflight.values()))[1] <= loop.time():
                    raise aiomqtt.MqttError("Operation timed out") from None

    def _on_puback(self, mid: int) -> None:
        sent = self._inflight.pop(mid, None)
        if sent is not None:
            self._acked.append(sent[0])
            if len(self._inflight) == self.config.mqtt.max_inflight - 1:
                self._wake.set()  # room again

    async def _flush_acks(self) -> None:
        while True:
            await asyncio.sleep(ACK_BATCH_S)
            await self._write_acks()

    async def _write_acks(self) -> None:
        if self._acked:
            ids, self._acked = self._acked, []
            # Shielded: a cancelled connection must not cancel a queued delete, or acknowledged
            # messages would be sent again after the reconnect.
            write = asyncio.ensure_future(self.outbox.ack(ids))
            self._ack_writes.add(write)
            write.add_done_callback(self._ack_writes.discard)
            await asyncio.shield(write)

    async def _abandon_inflight(self) -> None:
        self._inflight = {}  # not acknowledged: sent again on the next connection
        await self._write_acks()
        if self._ack_writes:
            await asyncio.gather(*self._ack_writes)

    async def _receive_commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            action = str(message.topic).rsplit("/", 1)[-1]
            if self.on_command is not None:
                self.on_command(
                    action,
                    bytes(message.payload)
                    if isinstance(message.payload, bytes | bytearray)
                    else str(message.payload).encode(),
                )

    # -- shutdown ------------------------------------------------------------------------

    async def drain_and_close(self, grace_s: float) -> None:
        """At shutdown: give the backlog `grace_s` to drain, then say `offline` and disconnect."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self.outbox.count > 0 and self.connected.is_set() and loop.time() < deadline:
            self.wake()
            await asyncio.sleep(0.05)
            await self._write_acks()
        client = self._client
        if client is not None and self.connected.is_set():
            try:
                payload = status_payload("offline", self.started_at)
                await client.publish(topics.status(self.root), payload, qos=1, retain=True, timeout=5)
            except aiomqtt.MqttError as exc:
                log.warning("offline_status_not_published", error=str(exc))
        await self._write_acks()


def _retrieve_disconnection(client: aiomqtt.Client) -> None:
    """Mark an unexpected disconnection's error as seen. aiomqtt keeps it on a future that only its message
    iterator awaits; when our publishing notices the dead connection first, the iterator is cancelled before
    it looks, nobody does, and asyncio logs "Future exception was never retrieved" once the client is
    collected. The loss itself was handled (and logged) above."""
    disconnected = client._disconnected
    if disconnected.done() and not disconnected.cancelled():
        disconnected.exception()
