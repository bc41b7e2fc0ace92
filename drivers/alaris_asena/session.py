"""Asena session: serial number on every (re)connect, then status, rate, volume and pressure each poll."""

from __future__ import annotations

from typing import Any

from drivers.alaris_asena import codec
from drivers.framing import DelimitedFramer, Frame
from drivers.session import Notice, PolledOptions, PolledSession, ProtocolError, Sample, SegmentTracker


class AsenaOptions(PolledOptions):
    pass


class AsenaSession(PolledSession):
    # Status queries only; the pump's remote-control commands are never sent.
    ALLOWED = frozenset({"INST_SERIALNO", "INF_STATUS", "INF_RATE", "INF_VI", "INF_PRESSURE"})
    startup = ("INST_SERIALNO",)
    poll = ("INF_STATUS", "INF_RATE", "INF_VI", "INF_PRESSURE")

    def __init__(self, options: AsenaOptions) -> None:
        super().__init__(options)
        self.framer = DelimitedFramer(codec.START, codec.END, max_len=128)
        self.serial: str | None = None
        self.mode: str | None = None
        self.alarm: str | None = None
        self.segments = SegmentTracker(("volume_ml",))
        self._cycle: dict[str, float] = {}
        self._cycle_time = 0.0

    def identity(self) -> str:
        return f"Asena serial {self.serial}" if self.serial else "answering"

    def encode(self, command: str) -> bytes:
        return codec.encode(command)

    def handle(self, command: str, frame: Frame, now: float) -> None:
        fields = codec.decode(frame.payload)
        if fields[0] == "ERR":
            return  # refused: the device is alive, the value is simply not available
        if fields[0] != command:
            raise ProtocolError(f"reply {fields[0]!r} to {command!r}")
        if command == "INST_SERIALNO":
            if len(fields) != 2:
                raise ProtocolError("bad serial number reply")
            self.serial = fields[1]
        elif command == "INF_STATUS":
            self._status(fields, frame.time)
        elif command == "INF_RATE":
            self._cycle["rate_set_mlps"] = codec.quantity(fields, codec.RATE_UNITS)
        elif command == "INF_VI":
            self._cycle["volume_ml"] = codec.quantity(fields, codec.VOLUME_UNITS)
            self._cycle_time = frame.time
        elif command == "INF_PRESSURE":
            self._cycle["pressure_kpa"] = codec.quantity(fields, codec.PRESSURE_UNITS)

    def _status(self, fields: list[str], time: float) -> None:
        if len(fields) != 3 or fields[1] not in codec.MODES:
            raise ProtocolError(f"bad status reply {fields!r}")
        mode, alarm = fields[1], (None if fields[2] == "NONE" else fields[2])
        if mode != self.mode:
            data: dict[str, Any] = {"state": mode.lower()}
            if self.mode is not None:
                data["previous"] = self.mode.lower()
            self.emit(Notice("phase", data, time))
            self.mode = mode
        if alarm != self.alarm and alarm is not None:
            self.emit(Notice("alarm", {"code": alarm}, time))
        self.alarm = alarm

    def cycle_complete(self, now: float) -> None:
        cycle, self._cycle = self._cycle, {}
        if "volume_ml" not in cycle:
            return
        values = dict(cycle)
        if "rate_set_mlps" in cycle:
            values["flow_mlps"] = cycle["rate_set_mlps"] if self.mode in codec.FLOWING else 0.0
        previous = self.segments.observe(values)
        if previous is not None:
            data = {"segment": self.segments.segment, "previous": previous}
            self.emit(Notice("counter_reset", data, self._cycle_time))
        quality = "alarm" if self.alarm is not None else "good"
        self.emit(Sample("injection", values, self._cycle_time, quality=quality, segment=self.segments.segment))
