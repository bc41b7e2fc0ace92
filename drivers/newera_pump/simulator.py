"""A simulated NE-1000 running a pumping program: phases of (rate, volume), pauses, then a rest.

Actions: `reset` (power cycle: volume counters cleared, alarm R until the next query), `alarm:S`
(stalled, until `alarm:` clears it), `stop` / `run`.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.framing import LineFramer
from drivers.newera_pump import codec
from drivers.simulator import Simulator


@dataclass(frozen=True)
class Phase:
    status: str
    """`I` infuse, `T` timed pause."""
    rate_ml_min: float
    seconds: float


DEFAULT_PROGRAM = (
    Phase("I", 30.0, 4.0),  # flush
    Phase("T", 0.0, 2.0),
    Phase("I", 90.0, 6.0),  # bolus
    Phase("T", 0.0, 2.0),
    Phase("I", 30.0, 4.0),  # chase
    Phase("S", 0.0, 6.0),  # program ended, pump idle
)


class NewEraSimulator(Simulator):
    def __init__(
        self, address: int = 0, diameter_mm: float = 26.59, program: tuple[Phase, ...] = DEFAULT_PROGRAM, seed: int = 1
    ) -> None:
        super().__init__(seed)
        self.address = address
        self.request_framer = LineFramer(b"\r", max_len=64)
        self.diameter_mm = diameter_mm
        self.program = program
        self.infused_ml = 0.0
        self.alarm: str | None = None
        self.running = True
        self._last: float | None = None
        self._period = sum(p.seconds for p in program)

    def phase(self, now: float) -> Phase:
        if not self.running or self.alarm is not None:
            return Phase("S", 0.0, 0.0)
        t = self.elapsed(now) % self._period
        for phase in self.program:
            if t < phase.seconds:
                return phase
            t -= phase.seconds
        return self.program[-1]

    def advance(self, now: float) -> None:
        self.elapsed(now)
        if self._last is None:
            self._last = now
        while self._last < now:
            step = min(0.05, now - self._last)
            phase = self.phase(self._last)
            if phase.status == "I":
                self.infused_ml += phase.rate_ml_min / 60.0 * step
            self._last += step

    def tick(self, now: float) -> bytes:
        self.advance(now)
        return b""

    def reply(self, command: str, now: float) -> bytes | None:
        self.advance(now)
        address, body = _split_address(command)
        if address != self.address:
            return None
        if self.alarm is not None:
            reply = codec.format_reply(self.address, "A", f"?{self.alarm}")
            if self.alarm == "R":  # the reset alarm is reported once
                self.alarm = None
            return reply
        phase = self.phase(now)
        if body == "VER":
            data = "NE1000V3.928"
        elif body == "DIA":
            data = codec.format_number(self.diameter_mm)
        elif body == "DIS":
            data = f"I{codec.format_number(self.infused_ml)}W0.000ML"
        elif body == "RAT":
            data = f"{codec.format_number(self.program_rate(now))}MM"
        elif body == "":
            data = ""
        else:
            data = "?NA"
        return codec.format_reply(self.address, phase.status, data)

    def program_rate(self, now: float) -> float:
        phase = self.phase(now)
        return phase.rate_ml_min if phase.status == "I" else max(p.rate_ml_min for p in self.program)

    def corrupt(self, reply: bytes) -> bytes:
        # Basic mode has no checksum: damage the status letter so the reply cannot decode.
        return reply[:3] + b"#" + reply[4:]

    def apply_specific(self, name: str, arg: str, now: float) -> None:
        self.advance(now)
        if name == "reset":
            self.infused_ml = 0.0
            self.alarm = "R"
        elif name == "alarm":
            self.alarm = arg or None
        elif name == "stop":
            self.running = False
        elif name == "run":
            self.running = True
        else:
            super().apply_specific(name, arg, now)


def _split_address(command: str) -> tuple[int, str]:
    digits = len(command) - len(command.lstrip("0123456789"))
    address = int(command[:digits]) if digits else 0
    return address, command[digits:]
