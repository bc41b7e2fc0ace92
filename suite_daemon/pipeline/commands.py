"""Operator commands from MQTT (`R/command/procedure/open|close`): parsed here, decided by the
correlator, answered on `R/command/response`. A malformed command is answered with an error and
audited; it never reaches the correlator."""

from __future__ import annotations

import json
import re
from typing import Any

import structlog

from suite_daemon.daemon.context import DaemonContext
from suite_daemon.events import SCHEMA, Alerted, OperatorCommanded, rfc3339, utc_now
from suite_daemon.mqtt import topics
from suite_daemon.mqtt.outbox import Message
from suite_daemon.pipeline.conversions import alert_event
from suite_daemon.pipeline.correlation import Outcome

log = structlog.get_logger(__name__)

ACTIONS = ("open", "close")
TEXT_FIELDS = ("study_instance_uid", "accession_number", "operator", "reason")
UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")
ACCESSION_MAX = 16
"""DICOM SH: a longer accession number (or a study uid that is no UID) could never match an object, yet
would be linked into the procedure."""


class CommandError(ValueError):
    def __init__(self, message: str, request_id: str | None) -> None:
        super().__init__(message)
        self.request_id = request_id


def response(root: str, request_id: str | None, status: str, **fields: Any) -> Message:
    body = {"schema": SCHEMA, "time": rfc3339(utc_now()), "request_id": request_id, "status": status, **fields}
    return Message.json(topics.command_response(root), body)


def parse_command(action: str, payload: bytes) -> OperatorCommanded:
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"payload is not JSON: {exc}", None) from exc
    if not isinstance(body, dict):
        raise CommandError("payload must be a JSON object", None)
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise CommandError("request_id (a non-empty string) is required", None)
    if action not in ACTIONS:
        raise CommandError(f"unknown command {action!r} (known: open, close)", request_id)
    unknown = set(body) - {"request_id", *TEXT_FIELDS}
    if unknown:
        raise CommandError(f"unknown keys: {', '.join(sorted(unknown))}", request_id)
    for key in TEXT_FIELDS:
        if key in body and not isinstance(body[key], str):
            raise CommandError(f"{key} must be a string", request_id)
    study, accession = body.get("study_instance_uid"), body.get("accession_number")
    if study and (len(study) > 64 or not UID_RE.fullmatch(study)):
        raise CommandError(f"study_instance_uid {study[:80]!r} is not a DICOM UID", request_id)
    if accession and len(accession) > ACCESSION_MAX:
        raise CommandError(f"accession_number is longer than {ACCESSION_MAX} characters", request_id)
    return OperatorCommanded(action, request_id, *(body.get(key) for key in TEXT_FIELDS))  # type: ignore[arg-type]


class CommandIntake:
    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx

    def receive(self, action: str, payload: bytes) -> None:
        try:
            command = parse_command(action, payload)
        except CommandError as exc:
            log.warning("command_rejected", action=action, error=str(exc))
            alert = Alerted(
                "warning",
                "command_rejected",
                f"operator command {action!r} rejected: {exc}",
                {"action": action, "request_id": exc.request_id, "error": str(exc)},
            )
            reply = response(self.ctx.config.topic_root, exc.request_id, "error", error=str(exc))
            self.ctx.inputs.put_nowait((Outcome(events=[alert_event(alert)], messages=[reply]), None))
            return
        self.ctx.submit(command)
