"""DIAMENTOR session: identity, serial number and units on every (re)connect, then `U` and `M` polls."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from drivers.framing import Frame, LineFramer
from drivers.ptw_diamentor import codec
from drivers.session import Notice, PolledOptions, PolledSession, ProtocolError, Sample, SegmentTracker

TERMINATORS = {"crlf": b"\r\n", "cr": b"\r", "lf": b"\n"}


class DiamentorOptions(PolledOptions):
    poll_interval_s: float = Field(default=0.5, gt=0, le=3600)
    """Measurement poll period (default 2 Hz)."""
    terminator: Literal["crlf", "cr", "lf"] = "crlf"
    """Telegram end, both directions."""
    rate_per: Literal["s", "min"] = "s"
    """Time base of the DAP rate field of the `M` reply."""

    @property
    def line_terminator(self) -> bytes:
        return TERMINATORS[self.terminator]


class DiamentorSession(PolledSession):
    # Read commands only. `RES` (reset) and `U1`..`U4` (select units) change the instrument: never sent.
    ALLOWED = frozenset({"PTW", "SER", "U", "M"})
    startup = ("PTW", "SER", "U")
    # Units are re-read every cycle so a unit changed on the front panel never mis-scales a sample.
    poll = ("U", "M")

    def __init__(self, options: DiamentorOptions) -> None:
        super().__init__(options)
        self.opts = options
        self.framer = LineFramer(options.line_terminator, max_len=128)
        self.model: str | None = None
        self.serial: str | None = None
        self.units: int | None = None
        self.segments = SegmentTracker(("dap_gym2", "fluoro_time_s"))
        self._error: str | None = None

    def identity(self) -> str:
        parts = [p for p in (self.model, f"serial {self.serial}" if self.serial else None) if p]
        return ", ".join(parts) or "answering"

    def encode(self, command: str) -> bytes:
        return command.encode("ascii") + self.opts.line_terminator

    def handle(self, command: str, frame: Frame, now: float) -> None:
        line = codec.text(frame.payload)
        code = codec.error_code(line)
        if code is not None:
            if code != self._error:
                self._error = code
                self.emit(Notice("alarm", {"code": f"E{code}", "command": command}, frame.time))
            return
        if command == "PTW":
            self.model = line
        elif command == "SER":
            self.serial = line.removeprefix("SER").strip()
        elif command == "U":
            self._units(codec.parse_units(line), frame.time)
        elif command == "M":
            self._measurement(codec.parse_measurement(line), frame.time)
        self._error = None

    def _units(self, units: int, time: float) -> None:
        if self.units is not None and units != self.units:
            old, new = codec.UNITS[self.units][0], codec.UNITS[units][0]
            self.emit(Notice("unit_change", {"from": old, "to": new}, time))
        self.units = units

    def _measurement(self, m: codec.Measurement, time: float) -> None:
        if self.units is None:
            raise ProtocolError("measurement before the units are known")
        factor = codec.UNITS[self.units][1]
        per_second = 60.0 if self.opts.rate_per == "min" else 1.0
        values = {
            "dap_gym2": m.dap * factor,
            "dap_rate_gym2_s": m.rate * factor / per_second,
            "fluoro_time_s": m.seconds,
        }
        previous = self.segments.observe(values)
        if previous is not None:
            self.emit(Notice("counter_reset", {"segment": self.segments.segment, "previous": previous}, time))
        self.emit(Sample("dose", values, time, segment=self.segments.segment))
