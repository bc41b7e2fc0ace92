"""The device side of a protocol, as a sans-I/O state machine, with fault modes for tests and demos.

`feed` answers requests, `tick` produces spontaneous output; both take the host monotonic time, so a
simulator runs equally in virtual time (tests) or behind a pty or TCP socket (`sim_transport`).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod

from drivers.framing import DelimitedFramer, LineFramer

GARBAGE_ALPHABET = bytes(range(0x80, 0x100))
"""Line noise: bytes with the high bit set, which none of the drivers' delimiters or payloads use."""


class Simulator(ABC):
    """Common fault modes. Subclasses implement `reply` (and `tick` for streaming devices).

    Actions (`apply`): `stall` / `resume` (stop / start answering), `garbage` (a burst of noise before the
    next reply), `corrupt` (the next reply is damaged: a bad checksum or an undecodable field), `reset`
    (counters back to zero, as after a reboot), plus driver-specific ones (`units:N`, `alarm:CODE`, ...).
    """

    request_framer: LineFramer | DelimitedFramer

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.stalled = False
        self.received: list[str] = []
        """Every request seen, decoded as text (for the read-only policy tests)."""
        self._garbage_next = 0
        self._corrupt_next = 0
        self._t0: float | None = None

    def elapsed(self, now: float) -> float:
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def feed(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for frame in self.request_framer.feed(data, now):
            command = frame.payload.decode("ascii", errors="replace")
            self.received.append(command)
            if self.stalled:
                continue
            reply = self.reply(command, now)
            if reply is None:
                continue
            out += self._damaged(reply)
        return bytes(out)

    def tick(self, now: float) -> bytes:
        """Spontaneous output (streaming devices); request/response devices send nothing unasked."""
        self.elapsed(now)
        return b""

    def apply(self, action: str, now: float) -> None:
        name, _, arg = action.partition(":")
        if name == "stall":
            self.stalled = True
        elif name == "resume":
            self.stalled = False
        elif name == "garbage":
            self._garbage_next = int(arg or 24)
        elif name == "corrupt":
            self._corrupt_next = int(arg or 1)
        else:
            self.apply_specific(name, arg, now)

    def apply_specific(self, name: str, arg: str, now: float) -> None:
        raise ValueError(f"{type(self).__name__} has no action {name!r}")

    @abstractmethod
    def reply(self, command: str, now: float) -> bytes | None:
        """The complete reply telegram to `command`, or None for no answer."""

    @abstractmethod
    def corrupt(self, reply: bytes) -> bytes:
        """`reply` damaged the way this protocol's receiver must detect (bad checksum, bad field)."""

    def garbage(self, n: int) -> bytes:
        return bytes(self.rng.choice(GARBAGE_ALPHABET) for _ in range(n))

    def _damaged(self, reply: bytes) -> bytes:
        if self._corrupt_next:
            self._corrupt_next -= 1
            reply = self.corrupt(reply)
        if self._garbage_next:
            reply = self.garbage(self._garbage_next) + reply
            self._garbage_next = 0
        return reply
