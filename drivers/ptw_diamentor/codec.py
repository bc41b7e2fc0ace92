"""DIAMENTOR telegrams: ASCII text, one command or reply per line. No I/O.

Replies decoded here (assumptions documented in docs/drivers.md):
- `U<n>`: the display unit of the DAP, n = 1..4.
- `M<dap>,<rate>,<minutes>,<seconds>[,...]`: DAP and DAP rate in the display unit (rate per second by
  default), irradiation time; further fields are not decoded.
- `E<nn>`: an error code instead of a reply.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from drivers.session import ProtocolError

UNITS: dict[int, tuple[str, float]] = {
    1: ("cGy·cm²", 1e-6),
    2: ("Gy·cm²", 1e-4),
    3: ("µGy·m²", 1e-6),
    4: ("R·cm²", 8.76e-7),  # 1 R of exposure is 8.76 mGy air kerma
}
"""Display unit number -> (name, factor to Gy·m²)."""

_UNITS_RE = re.compile(r"U([1-4])")
_ERROR_RE = re.compile(r"E(\d{2})")
_NUMBER_RE = re.compile(r"[+]?\d+(\.\d*)?([eE][-+]?\d+)?")


@dataclass(frozen=True, slots=True)
class Measurement:
    dap: float
    rate: float
    seconds: float
    extra: tuple[str, ...]


def text(payload: bytes) -> str:
    """The telegram as text; only printable ASCII is valid."""
    if any(b < 0x20 or b > 0x7E for b in payload):
        raise ProtocolError("non-printable byte in telegram")
    return payload.decode("ascii").strip()


def error_code(line: str) -> str | None:
    match = _ERROR_RE.fullmatch(line)
    return match.group(1) if match else None


def parse_units(line: str) -> int:
    match = _UNITS_RE.fullmatch(line)
    if not match:
        raise ProtocolError(f"not a units reply: {line!r}")
    return int(match.group(1))


def _number(field: str) -> float:
    field = field.strip()
    if not _NUMBER_RE.fullmatch(field):
        raise ProtocolError(f"not a non-negative number: {field!r}")
    value = float(field)
    if not math.isfinite(value):
        raise ProtocolError(f"not a finite number: {field!r}")
    return value


def parse_measurement(line: str) -> Measurement:
    if not line.startswith("M"):
        raise ProtocolError(f"not a measurement reply: {line!r}")
    fields = line[1:].split(",")
    if len(fields) < 4:
        raise ProtocolError(f"measurement reply has {len(fields)} fields, expected at least 4")
    dap, rate, minutes, seconds = (_number(f) for f in fields[:4])
    if seconds >= 60 or minutes != int(minutes) or seconds != int(seconds):
        raise ProtocolError(f"bad irradiation time {fields[2]!r}:{fields[3]!r}")
    return Measurement(dap, rate, minutes * 60 + seconds, tuple(f.strip() for f in fields[4:]))


def format_measurement(dap: float, rate: float, seconds: float) -> str:
    """The simulator's side of `parse_measurement` (two decimals, as the display)."""
    whole = int(seconds)
    return f"M{dap:.2f},{rate:.2f},{whole // 60},{whole % 60},0,0"
