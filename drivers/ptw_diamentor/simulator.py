"""A simulated DIAMENTOR: the DAP rises while the beam is on and holds while it is off.

Beam cycle: on for `beam_on_s`, then off until `beam_period_s` (a fluoroscopy run every period).
Actions: `reset` (DAP and time to zero, as the RES key or a reboot), `units:N` (front-panel unit
change), `alarm:NN` (replies `ENN` until `alarm:` clears it), `beam:on|off|auto`.
"""

from __future__ import annotations

from drivers.framing import LineFramer
from drivers.ptw_diamentor import codec
from drivers.simulator import Simulator


class DiamentorSimulator(Simulator):
    def __init__(
        self,
        terminator: bytes = b"\r\n",
        units: int = 3,
        dap_rate_gym2_s: float = 2.0e-5,
        beam_on_s: float = 8.0,
        beam_period_s: float = 15.0,
        seed: int = 1,
    ) -> None:
        super().__init__(seed)
        self.terminator = terminator
        self.request_framer = LineFramer(terminator, max_len=64)
        self.units = units
        self.dap_rate = dap_rate_gym2_s
        self.beam_on_s = beam_on_s
        self.beam_period_s = beam_period_s
        self.beam: str = "auto"
        self.dap_gym2 = 0.0
        self.beam_time_s = 0.0
        self.error: str | None = None
        self._last: float | None = None

    def beam_on(self, now: float) -> bool:
        if self.beam != "auto":
            return self.beam == "on"
        return self.elapsed(now) % self.beam_period_s < self.beam_on_s

    def advance(self, now: float) -> None:
        """Integrate the DAP up to `now` (in steps so beam edges inside the interval are respected)."""
        self.elapsed(now)
        if self._last is None:
            self._last = now
        while self._last < now:
            step = min(0.05, now - self._last)
            if self.beam_on(self._last):
                self.dap_gym2 += self.dap_rate * step
                self.beam_time_s += step
            self._last += step

    def rate(self, now: float) -> float:
        return self.dap_rate if self.beam_on(now) else 0.0

    def tick(self, now: float) -> bytes:
        self.advance(now)
        return b""

    def reply(self, command: str, now: float) -> bytes | None:
        self.advance(now)
        if command == "PTW":
            line = "DIAMENTOR SIM 1.0"
        elif command == "SER":
            line = "SER 000123"
        elif self.error is not None:
            line = f"E{self.error}"
        elif command == "U":
            line = f"U{self.units}"
        elif command == "M":
            factor = codec.UNITS[self.units][1]
            line = codec.format_measurement(self.dap_gym2 / factor, self.rate(now) / factor, self.beam_time_s)
        else:
            line = "E01"
        return line.encode("ascii") + self.terminator

    def corrupt(self, reply: bytes) -> bytes:
        # No checksum in this protocol: damage a field so the reply no longer decodes.
        return reply.replace(b",", b",x", 1) if b"," in reply else b"?" + reply

    def apply_specific(self, name: str, arg: str, now: float) -> None:
        self.advance(now)
        if name == "reset":
            self.dap_gym2 = 0.0
            self.beam_time_s = 0.0
        elif name == "units":
            self.units = int(arg)
        elif name == "alarm":
            self.error = arg or None
        elif name == "beam":
            self.beam = arg
        else:
            super().apply_specific(name, arg, now)
