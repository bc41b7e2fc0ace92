"""Which MQTT messages publish an event (contract: MQTT table)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from suite_daemon.events import SCHEMA, Event, rfc3339
from suite_daemon.mqtt import topics
from suite_daemon.mqtt.outbox import Message


def alert_payload(event: Event) -> dict[str, Any]:
    data = event.data
    return {
        "schema": SCHEMA,
        "time": rfc3339(event.time),
        "procedure_id": event.procedure_id,
        "level": data.get("level", "warning"),
        "kind": data.get("kind", "unknown"),
        "message": data.get("message", ""),
        "data": data.get("data", {}),
    }


def device_status_payload(event: Event) -> dict[str, Any]:
    data = event.data
    return {"schema": SCHEMA, "time": rfc3339(event.time), "state": data["state"], "detail": data.get("detail", "")}


def router(root: str) -> Callable[[Event], Iterable[Message]]:
    def route(event: Event) -> Iterable[Message]:
        yield Message.json(topics.event_topic(root, event.procedure_id), event.to_payload())
        if event.type == "alert":
            yield Message.json(topics.alert(root), alert_payload(event))
        elif event.type == "device.status":
            topic = topics.device_status(root, event.data["device"])
            yield Message.json(topic, device_status_payload(event), retain=True)

    return route
