"""NE-1000 basic-mode telegrams. No I/O.

Request: `<address><command>CR` (address 0..99, command with no argument = a query).
Reply: `STX <address, 2 digits> <status> <data> ETX`. Status letters: I infusing, W withdrawing,
S stopped, P paused, T timed pause phase, U waiting for a trigger, X purging; `A` with data `?<code>`
is an alarm (R reset/power loss, S stalled, T safe-mode timeout, E program error, O phase out of range).
A data field starting with `?` is the pump refusing the command (`?`, `?NA`, `?OOR`, `?COM`, `?IGN`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from drivers.session import ProtocolError

STX, ETX = 0x02, 0x03

STATES = {
    "I": "infusing",
    "W": "withdrawing",
    "S": "stopped",
    "P": "paused",
    "T": "pause_phase",
    "U": "trigger_wait",
    "X": "purging",
}
ALARMS = {
    "R": "pump reset (power was interrupted)",
    "S": "motor stalled",
    "T": "safe-mode communication timeout",
    "E": "pumping program error",
    "O": "pumping program phase out of range",
}
VOLUME_UNITS = {"UL": 1e-3, "ML": 1.0}
"""Volume unit -> factor to mL."""
RATE_UNITS = {"UM": 1e-3 / 60, "MM": 1 / 60, "UH": 1e-3 / 3600, "MH": 1 / 3600}
"""Rate unit -> factor to mL/s."""

_DISPENSED_RE = re.compile(r"I([0-9.]+)W([0-9.]+)(UL|ML)")
_RATE_RE = re.compile(r"([0-9.]+)(UM|MM|UH|MH)")
_NUMBER_RE = re.compile(r"[0-9.]+")


@dataclass(frozen=True, slots=True)
class Reply:
    address: int
    status: str
    """A key of STATES, or `A` for an alarm."""
    data: str
    alarm: str | None = None

    @property
    def refused(self) -> bool:
        return self.alarm is None and self.data.startswith("?")


def parse_reply(payload: bytes) -> Reply:
    if any(b < 0x20 or b > 0x7E for b in payload):
        raise ProtocolError("non-printable byte in reply")
    text = payload.decode("ascii")
    if len(text) < 3 or not text[:2].isdigit():
        raise ProtocolError(f"reply without address and status: {text!r}")
    address, status, data = int(text[:2]), text[2], text[3:]
    if status == "A":
        if not data.startswith("?") or data[1:] not in ALARMS:
            raise ProtocolError(f"bad alarm reply {text!r}")
        return Reply(address, status, data, alarm=data[1:])
    if status not in STATES:
        raise ProtocolError(f"unknown status {status!r}")
    return Reply(address, status, data)


def _number(text: str) -> float:
    if not _NUMBER_RE.fullmatch(text) or text.count(".") > 1:
        raise ProtocolError(f"not a number: {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"not a finite number: {text!r}")
    return value


def parse_dispensed(data: str) -> tuple[float, float]:
    """`I<infused>W<withdrawn><UL|ML>` -> (infused mL, withdrawn mL)."""
    match = _DISPENSED_RE.fullmatch(data)
    if not match:
        raise ProtocolError(f"not a volume-dispensed reply: {data!r}")
    factor = VOLUME_UNITS[match.group(3)]
    return _number(match.group(1)) * factor, _number(match.group(2)) * factor


def parse_rate(data: str) -> float:
    """`<value><UM|MM|UH|MH>` -> mL/s."""
    match = _RATE_RE.fullmatch(data)
    if not match:
        raise ProtocolError(f"not a rate reply: {data!r}")
    return _number(match.group(1)) * RATE_UNITS[match.group(2)]


def parse_number(data: str) -> float:
    return _number(data)


def format_reply(address: int, status: str, data: str) -> bytes:
    return bytes([STX]) + f"{address:02d}{status}{data}".encode("ascii") + bytes([ETX])


def format_number(value: float) -> str:
    """The pump shows at most 4 significant digits and 5 characters (e.g. `12.34`, `0.125`)."""
    for decimals in (3, 2, 1, 0):
        text = f"{value:.{decimals}f}"
        if len(text) <= 5:
            return text
    return f"{value:.0f}"
