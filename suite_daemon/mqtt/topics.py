"""Every topic string of the contract, built in one place. `root` is `<topic_prefix>/<suite.id>`."""

from __future__ import annotations


def status(root: str) -> str:
    return f"{root}/status"


def procedure_current(root: str) -> str:
    return f"{root}/procedure/current"


def procedure_event(root: str, procedure_id: str) -> str:
    return f"{root}/procedure/{procedure_id}/event"


def daemon_event(root: str) -> str:
    return f"{root}/event"


def procedure_summary(root: str, procedure_id: str) -> str:
    return f"{root}/procedure/{procedure_id}/summary"


def device_status(root: str, device: str) -> str:
    return f"{root}/device/{device}/status"


def device_telemetry(root: str, device: str) -> str:
    return f"{root}/device/{device}/telemetry"


def alert(root: str) -> str:
    return f"{root}/alert"


def command(root: str, action: str) -> str:
    return f"{root}/command/procedure/{action}"


def command_filter(root: str) -> str:
    return f"{root}/command/procedure/+"


def command_response(root: str) -> str:
    return f"{root}/command/response"


def event_topic(root: str, procedure_id: str | None) -> str:
    """Where an event goes: its procedure's stream, or the daemon-wide one."""
    return procedure_event(root, procedure_id) if procedure_id else daemon_event(root)
