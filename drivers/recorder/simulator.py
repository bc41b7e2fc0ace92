"""A simulated printer port: a dose meter that prints one line per second while the beam is on."""

from __future__ import annotations

from drivers.framing import LineFramer
from drivers.simulator import Simulator


class PrinterSimulator(Simulator):
    def __init__(self, terminator: bytes = b"\r\n", interval_s: float = 1.0, seed: int = 1) -> None:
        super().__init__(seed)
        self.terminator = terminator
        self.request_framer = LineFramer(terminator, max_len=64)
        self.interval_s = interval_s
        self.count = 0
        self._next: float | None = None

    def tick(self, now: float) -> bytes:
        t = self.elapsed(now)
        if self._next is None:
            self._next = 0.0
        if t < self._next or self.stalled:
            return b""
        self._next = t + self.interval_s
        self.count += 1
        line = f"{self.count:05d} DAP {self.count * 1.25:8.2f} uGym2 T {int(t) // 60:02d}:{int(t) % 60:02d}"
        return self._damaged(line.encode("ascii") + self.terminator)

    def reply(self, command: str, now: float) -> bytes | None:
        return None

    def corrupt(self, reply: bytes) -> bytes:
        return reply[: len(reply) // 2] + self.terminator

    def apply_specific(self, name: str, arg: str, now: float) -> None:
        if name == "reset":
            self.count = 0
        else:
            super().apply_specific(name, arg, now)
