"""Raw-frame recorder for devices whose protocol is not documented yet (a printer port, a data port)."""

from __future__ import annotations

from drivers.recorder.session import RecorderOptions, RecorderSession
from drivers.recorder.simulator import PrinterSimulator
from drivers.spec import DriverSpec, SerialDefaults

SPEC = DriverSpec(
    name="recorder",
    Options=RecorderOptions,
    kind="raw",
    serial=SerialDefaults(baudrate=9600),
    new_session=lambda options: RecorderSession(options),  # type: ignore[arg-type]
    new_simulator=lambda options: PrinterSimulator(terminator=options.line_terminator),  # type: ignore[attr-defined]
    summary="records every frame (line or start/end-byte framing) as device.raw; decodes nothing",
)
