"""New Era NE-1000-family syringe pump (also sold as WPI Aladdin), basic (non-safe) RS-232 mode."""

from __future__ import annotations

from drivers.newera_pump.session import NewEraOptions, NewEraSession
from drivers.newera_pump.simulator import NewEraSimulator
from drivers.spec import DriverSpec, SerialDefaults

SPEC = DriverSpec(
    name="newera-pump",
    Options=NewEraOptions,
    kind="injection",
    serial=SerialDefaults(baudrate=19200),
    new_session=lambda options: NewEraSession(options),  # type: ignore[arg-type]
    new_simulator=lambda options: NewEraSimulator(address=options.address),  # type: ignore[attr-defined]
    summary="New Era NE-1000 syringe pump: volume dispensed, rate, status, alarms",
)
