"""BD Alaris Asena GH/CC infusion pump status (CRC-checked ASCII telegrams), read-only."""

from __future__ import annotations

from drivers.alaris_asena.session import AsenaOptions, AsenaSession
from drivers.alaris_asena.simulator import AsenaSimulator
from drivers.spec import DriverSpec, SerialDefaults

SPEC = DriverSpec(
    name="alaris-asena",
    Options=AsenaOptions,
    kind="injection",
    serial=SerialDefaults(baudrate=38400),
    new_session=lambda options: AsenaSession(options),  # type: ignore[arg-type]
    new_simulator=lambda options: AsenaSimulator(),
    summary="Alaris Asena GH/CC pump: rate, volume infused, pressure, mode, alarm",
)
