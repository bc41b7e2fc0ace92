"""`suite-daemon procedure open|close`: the operator commands from the command line, through the broker.

Publishes `R/command/procedure/<action>` (QoS 1) and waits for the daemon's answer on
`R/command/response` with the same `request_id`. Exit codes: 0 ok, 1 the daemon refused (its error
on stderr), 69 broker or daemon unavailable (no connection, or no answer within `timeout`).
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from suite_daemon.config import SuiteConfig
from suite_daemon.mqtt import topics

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNAVAILABLE = 69


class _Exchange:
    """One request and its answer over a short-lived paho client."""

    def __init__(self, config: SuiteConfig, request_id: str) -> None:
        self.root = config.topic_root
        self.request_id = request_id
        self.subscribed = threading.Event()
        self.answered = threading.Event()
        self.answer: dict[str, Any] | None = None
        self.connect_error: str | None = None
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"suite-cli-{request_id[:12]}", clean_session=True
        )
        mqtt = config.mqtt
        if mqtt.username is not None:
            password = mqtt.password_file.read_text().strip() if mqtt.password_file else None
            self.client.username_pw_set(mqtt.username, password)
        if mqtt.tls is not None:
            self.client.tls_set(
                ca_certs=str(mqtt.tls.ca_file) if mqtt.tls.ca_file else None,
                certfile=str(mqtt.tls.cert_file) if mqtt.tls.cert_file else None,
                keyfile=str(mqtt.tls.key_file) if mqtt.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if reason.is_failure:
            self.connect_error = f"broker refused the connection: {reason}"
            self.subscribed.set()
            return
        client.subscribe(topics.command_response(self.root), qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(body, dict) and body.get("request_id") == self.request_id:
            self.answer = body
            self.answered.set()


def cmd_procedure(
    config: SuiteConfig,
    action: str,
    study_instance_uid: str | None,
    accession_number: str | None,
    operator: str | None,
    reason: str | None,
    as_json: bool,
    timeout: float,
) -> int:
    request_id = uuid.uuid4().hex
    body: dict[str, Any] = {"request_id": request_id}
    for key, value in (
        ("study_instance_uid", study_instance_uid),
        ("accession_number", accession_number),
        ("operator", operator),
        ("reason", reason),
    ):
        if value is not None:
            body[key] = value
    exchange = _Exchange(config, request_id)
    client = exchange.client
    try:
        client.connect(config.mqtt.host, config.mqtt.port, keepalive=max(5, int(timeout) + 5))
    except (OSError, ssl.SSLError) as exc:
        print(f"suite-daemon: broker {config.mqtt.host}:{config.mqtt.port} unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    client.loop_start()
    try:
        if not exchange.subscribed.wait(timeout) or exchange.connect_error:
            print(f"suite-daemon: {exchange.connect_error or 'no answer from the broker'}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        info = client.publish(topics.command(config.topic_root, action), json.dumps(body), qos=1)
        if not exchange.answered.wait(timeout):
            acked = info.is_published()
            print(
                f"suite-daemon: no answer from the daemon within {timeout:g} s"
                f"{'' if acked else ' (the broker did not acknowledge the command)'}",
                file=sys.stderr,
            )
            return EXIT_UNAVAILABLE
    finally:
        client.loop_stop()
        client.disconnect()
    answer = exchange.answer or {}
    ok = answer.get("status") == "ok"
    if as_json:
        print(json.dumps(answer, ensure_ascii=False))
    elif ok:
        print(f"{action}: procedure {answer.get('procedure_id')}")
    if not ok:
        print(f"suite-daemon: {action} refused: {answer.get('error', 'unknown error')}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK
