"""What a driver module declares: its name, its options, its port defaults, its session and simulator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from drivers.session import DriverOptions, Session

if TYPE_CHECKING:
    from drivers.simulator import Simulator


@dataclass(frozen=True, slots=True)
class SerialDefaults:
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1


@dataclass(frozen=True)
class DriverSpec:
    name: str
    Options: type[DriverOptions]
    kind: Literal["dose", "injection", "raw"]
    serial: SerialDefaults
    new_session: Callable[[DriverOptions], Session]
    new_simulator: Callable[[DriverOptions], Simulator]
    summary: str = ""
