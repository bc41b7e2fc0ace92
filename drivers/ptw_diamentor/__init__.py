"""PTW DIAMENTOR dose-area-product meter (ASCII request/response over RS-232)."""

from __future__ import annotations

from drivers.ptw_diamentor.session import DiamentorOptions, DiamentorSession
from drivers.ptw_diamentor.simulator import DiamentorSimulator
from drivers.spec import DriverSpec, SerialDefaults

SPEC = DriverSpec(
    name="ptw-diamentor",
    Options=DiamentorOptions,
    kind="dose",
    serial=SerialDefaults(baudrate=9600),
    new_session=lambda options: DiamentorSession(options),  # type: ignore[arg-type]
    new_simulator=lambda options: DiamentorSimulator(terminator=options.line_terminator),  # type: ignore[attr-defined]
    summary="PTW DIAMENTOR DAP meter: DAP, DAP rate, irradiation time",
)
