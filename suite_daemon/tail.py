"""`suite-daemon tail`: live events from the broker, as text or JSON Lines."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import aiomqtt

from suite_daemon.config import SuiteConfig
from suite_daemon.mqtt import topics
from suite_daemon.mqtt.publisher import read_password, tls_context

EXIT_UNAVAILABLE = 69


def describe(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    if event.get("type") == "alert":
        detail = f"{data.get('level', '')} {data.get('kind', '')}: {data.get('message', '')}"
    elif "values" in data:
        device = f"device={data['device']} " if data.get("device") else ""  # which meter or pump it was
        detail = device + " ".join(f"{k}={v}" for k, v in data["values"].items())
    else:
        keys = ("modality", "sop_class_uid", "state", "reason", "device", "calling_ae", "status")
        detail = " ".join(f"{k}={data[k]}" for k in keys if data.get(k) not in (None, ""))
    procedure = event.get("procedure_id") or "-"
    return f"{event.get('time', '')}  {procedure:<28} {event.get('seq', ''):>6}  {event.get('type', ''):<18} {detail}"


async def tail(config: SuiteConfig, procedure_id: str | None, as_json: bool) -> int:
    root = config.topic_root
    filters = (
        [topics.procedure_event(root, procedure_id)]
        if procedure_id
        else [topics.procedure_event(root, "+"), topics.daemon_event(root)]
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    mqtt = config.mqtt
    try:
        async with aiomqtt.Client(
            mqtt.host,
            mqtt.port,
            username=mqtt.username,
            password=read_password(config),
            tls_context=tls_context(config),
            timeout=10,
        ) as client:
            for topic_filter in filters:
                await client.subscribe(topic_filter, qos=1)
            reader = asyncio.create_task(_print(client, as_json))
            await asyncio.wait([reader, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
    except aiomqtt.MqttError as exc:
        print(f"suite-daemon tail: broker {mqtt.host}:{mqtt.port} unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return 0


async def _print(client: aiomqtt.Client, as_json: bool) -> None:
    async for message in client.messages:
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else str(message.payload).encode()
        try:
            event = json.loads(payload)
        except ValueError:
            continue
        line = json.dumps(event, separators=(",", ":")) if as_json else describe(event)
        print(line, flush=True)
