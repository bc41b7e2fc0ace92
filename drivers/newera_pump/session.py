"""NE-1000 session: firmware version and diameter on every (re)connect, then dispensed volume and rate."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from drivers.framing import DelimitedFramer, Frame
from drivers.newera_pump import codec
from drivers.session import Notice, PolledOptions, PolledSession, ProtocolError, Sample, SegmentTracker

FLOWING = {"I", "X"}


class NewEraOptions(PolledOptions):
    address: int = Field(default=0, ge=0, le=99)
    """Network address of the pump (0 for a single pump)."""


class NewEraSession(PolledSession):
    # Queries only: the same commands with an argument would set values; RUN/STP/CLD/SAF are never sent,
    # so safe mode (which alarms when the host goes quiet) is never enabled.
    ALLOWED = frozenset({"VER", "DIA", "DIS", "RAT"})
    startup = ("VER", "DIA")
    poll = ("DIS", "RAT")

    def __init__(self, options: NewEraOptions) -> None:
        super().__init__(options)
        self.opts = options
        self.framer = DelimitedFramer(codec.STX, codec.ETX, max_len=64)
        self.version: str | None = None
        self.diameter_mm: float | None = None
        self.status: str | None = None
        self.alarm: str | None = None
        self.segments = SegmentTracker(("volume_ml", "withdrawn_ml"))
        self._cycle: dict[str, float] = {}
        self._cycle_time = 0.0

    def identity(self) -> str:
        return self.version or "answering"

    def encode(self, command: str) -> bytes:
        return f"{self.opts.address}{command}\r".encode("ascii")

    def handle(self, command: str, frame: Frame, now: float) -> None:
        reply = codec.parse_reply(frame.payload)
        if reply.address != self.opts.address:
            raise ProtocolError(f"reply from address {reply.address}, expected {self.opts.address}")
        self._status(reply, frame.time)
        if reply.alarm is not None or reply.refused:
            return
        if command == "VER":
            self.version = reply.data
        elif command == "DIA":
            self.diameter_mm = codec.parse_number(reply.data)
        elif command == "DIS":
            infused, withdrawn = codec.parse_dispensed(reply.data)
            self._cycle.update(volume_ml=infused, withdrawn_ml=withdrawn)
            self._cycle_time = frame.time
        elif command == "RAT":
            self._cycle["rate_set_mlps"] = codec.parse_rate(reply.data)

    def _status(self, reply: codec.Reply, time: float) -> None:
        if reply.alarm is not None:
            if reply.alarm != self.alarm:
                self.alarm = reply.alarm
                self.emit(Notice("alarm", {"code": reply.alarm, "message": codec.ALARMS[reply.alarm]}, time))
            return
        self.alarm = None
        if reply.status != self.status:
            data: dict[str, Any] = {"state": codec.STATES[reply.status]}
            if self.status is not None:
                data["previous"] = codec.STATES[self.status]
            self.status = reply.status
            self.emit(Notice("phase", data, time))

    def cycle_complete(self, now: float) -> None:
        cycle, self._cycle = self._cycle, {}
        if "volume_ml" not in cycle:
            return
        values = dict(cycle)
        rate = cycle.get("rate_set_mlps")
        if rate is not None:
            values["flow_mlps"] = rate if self.status in FLOWING and self.alarm is None else 0.0
        if self.diameter_mm is not None:
            values["syringe_diameter_mm"] = self.diameter_mm
        previous = self.segments.observe(values)
        if previous is not None:
            data = {"segment": self.segments.segment, "previous": previous}
            self.emit(Notice("counter_reset", data, self._cycle_time))
        quality = "alarm" if self.alarm is not None else "good"
        self.emit(Sample("injection", values, self._cycle_time, quality=quality, segment=self.segments.segment))
