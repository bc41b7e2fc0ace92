"""Asena telegrams: `!` body `|` four hex digits of CRC-16/CCITT-FALSE over the body, CR. No I/O.

The body is fields split by `^`; a reply repeats the command as its first field. Commands decoded here
(names and reply layouts are assumptions, see docs/drivers.md):

| request | reply |
|---|---|
| `INST_SERIALNO` | `INST_SERIALNO^<serial>` |
| `INF_STATUS` | `INF_STATUS^<mode>^<alarm or NONE>` |
| `INF_RATE` | `INF_RATE^<value>^ML/H` |
| `INF_VI` | `INF_VI^<value>^ML` (volume infused) |
| `INF_PRESSURE` | `INF_PRESSURE^<value>^MMHG` |
| anything refused | `ERR^<code>` |
"""

from __future__ import annotations

import math
import re

from drivers.checksum import crc16_ccitt_false
from drivers.session import ChecksumError, ProtocolError

START, END = ord("!"), 0x0D
MMHG_TO_KPA = 0.133322387415
RATE_UNITS = {"ML/H": 1 / 3600, "ML/MIN": 1 / 60}
VOLUME_UNITS = {"ML": 1.0, "L": 1000.0}
PRESSURE_UNITS = {"MMHG": MMHG_TO_KPA, "KPA": 1.0}
MODES = frozenset({"INFUSING", "BOLUS", "KVO", "PURGE", "STOPPED", "PAUSED", "STANDBY"})
FLOWING = frozenset({"INFUSING", "BOLUS", "KVO", "PURGE"})

_NUMBER_RE = re.compile(r"\d+(\.\d+)?")


def encode(body: str) -> bytes:
    raw = body.encode("ascii")
    return b"!" + raw + b"|" + f"{crc16_ccitt_false(raw):04X}".encode("ascii") + b"\r"


def decode(payload: bytes) -> list[str]:
    """The fields of a telegram (payload = bytes between `!` and CR)."""
    body, sep, check = payload.rpartition(b"|")
    if not sep or len(check) != 4:
        raise ProtocolError("telegram without a 4-digit checksum")
    try:
        expected = int(check.decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("checksum is not hexadecimal") from None
    if crc16_ccitt_false(body) != expected:
        raise ChecksumError("CRC mismatch")
    if any(b < 0x20 or b > 0x7E for b in body):
        raise ProtocolError("non-printable byte in telegram")
    return body.decode("ascii").split("^")


def quantity(fields: list[str], units: dict[str, float]) -> float:
    """`[command, value, unit]` -> value converted by the unit's factor."""
    if len(fields) != 3:
        raise ProtocolError(f"expected value and unit, got {fields[1:]!r}")
    value, unit = fields[1], fields[2].upper()
    if not _NUMBER_RE.fullmatch(value):
        raise ProtocolError(f"not a number: {value!r}")
    if unit not in units:
        raise ProtocolError(f"unknown unit {unit!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ProtocolError(f"not finite: {value!r}")
    return number * units[unit]
