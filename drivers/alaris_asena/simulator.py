"""A simulated Asena: an infusion program with a line pressure that follows the flow.

Actions: `reset` (volume infused back to zero, as a new infusion), `alarm:CODE` (e.g. `alarm:OCCLUSION`,
pressure climbs, flow stops; `alarm:` clears it), `corrupt` (bad CRC), `garbage`, `stall`.
"""

from __future__ import annotations

from drivers.alaris_asena import codec
from drivers.framing import DelimitedFramer
from drivers.simulator import Simulator

PROGRAM = (("INFUSING", 50.0, 6.0), ("BOLUS", 300.0, 3.0), ("INFUSING", 50.0, 6.0), ("PAUSED", 0.0, 5.0))
"""(mode, rate mL/h, seconds), repeated."""


class AsenaSimulator(Simulator):
    def __init__(self, serial: str = "1234-56789", seed: int = 1) -> None:
        super().__init__(seed)
        self.request_framer = DelimitedFramer(codec.START, codec.END, max_len=128)
        self.serial = serial
        self.volume_ml = 0.0
        self.alarm: str | None = None
        self._last: float | None = None
        self._period = sum(p[2] for p in PROGRAM)

    def program(self, now: float) -> tuple[str, float]:
        if self.alarm is not None:
            return "STOPPED", 0.0
        t = self.elapsed(now) % self._period
        for mode, rate, seconds in PROGRAM:
            if t < seconds:
                return mode, rate
            t -= seconds
        return PROGRAM[-1][0], PROGRAM[-1][1]

    def pressure_mmhg(self, now: float) -> float:
        if self.alarm == "OCCLUSION":
            return 600.0
        _, rate = self.program(now)
        return 20.0 + rate * 0.4

    def advance(self, now: float) -> None:
        self.elapsed(now)
        if self._last is None:
            self._last = now
        while self._last < now:
            step = min(0.05, now - self._last)
            mode, rate = self.program(self._last)
            if mode in codec.FLOWING:
                self.volume_ml += rate / 3600.0 * step
            self._last += step

    def tick(self, now: float) -> bytes:
        self.advance(now)
        return b""

    def reply(self, command: str, now: float) -> bytes | None:
        self.advance(now)
        try:  # requests are CRC-checked too: a damaged request is ignored
            fields = codec.decode(command.encode("ascii", errors="replace"))
        except ValueError:
            return None
        name = fields[0]
        mode, rate = self.program(now)
        if name == "INST_SERIALNO":
            body = f"INST_SERIALNO^{self.serial}"
        elif name == "INF_STATUS":
            body = f"INF_STATUS^{mode}^{self.alarm or 'NONE'}"
        elif name == "INF_RATE":
            body = f"INF_RATE^{rate:.1f}^ML/H"
        elif name == "INF_VI":
            body = f"INF_VI^{self.volume_ml:.3f}^ML"
        elif name == "INF_PRESSURE":
            body = f"INF_PRESSURE^{self.pressure_mmhg(now):.0f}^MMHG"
        else:
            body = "ERR^UNKNOWN_COMMAND"
        return codec.encode(body)

    def corrupt(self, reply: bytes) -> bytes:
        # Flip one checksum digit.
        digit = reply[-2:-1]
        return reply[:-2] + (b"0" if digit != b"0" else b"1") + reply[-1:]

    def apply_specific(self, name: str, arg: str, now: float) -> None:
        self.advance(now)
        if name == "reset":
            self.volume_ml = 0.0
        elif name == "alarm":
            self.alarm = arg or None
        else:
            super().apply_specific(name, arg, now)
