"""Recorder session: frames the byte stream and hands every frame on as a `raw` notice. Sends nothing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from drivers.framing import DelimitedFramer, Frame, LineFramer
from drivers.session import DriverOptions, Health, Notice, Session

TERMINATORS = {"crlf": b"\r\n", "cr": b"\r", "lf": b"\n"}


class RecorderOptions(DriverOptions):
    framing: Literal["line", "delimited"] = "line"
    terminator: Literal["crlf", "cr", "lf"] = "crlf"
    """`line` framing: the end of a line."""
    start_byte: int = Field(default=0x02, ge=0, le=255)
    """`delimited` framing: the byte that starts a frame (default STX)."""
    end_byte: int = Field(default=0x03, ge=0, le=255)
    """`delimited` framing: the byte that ends a frame (default ETX)."""
    max_frame_bytes: int = Field(default=4096, ge=16, le=1_000_000)
    """Longer frames are dropped and counted as garbage."""

    @model_validator(mode="after")
    def _distinct(self) -> RecorderOptions:
        if self.framing == "delimited" and self.start_byte == self.end_byte:
            raise ValueError("start_byte and end_byte must differ")
        return self

    @property
    def line_terminator(self) -> bytes:
        return TERMINATORS[self.terminator]


class RecorderSession(Session):
    def __init__(self, options: RecorderOptions) -> None:
        super().__init__()
        if options.framing == "line":
            self.framer = LineFramer(options.line_terminator, max_len=options.max_frame_bytes)
        else:
            self.framer = DelimitedFramer(options.start_byte, options.end_byte, max_len=options.max_frame_bytes)

    def connected(self, now: float) -> None:
        super().connected(now)
        # A listen-only port cannot tell a silent device from an absent one: the open port is all we know.
        self.emit(Health(True, "recording"))

    def on_frame(self, frame: Frame, now: float) -> None:
        self.emit(Notice("raw", {"hex": frame.raw.hex(), "length": len(frame.raw)}, frame.time))
