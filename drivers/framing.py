"""Framers: bytes in, frames out, no I/O.

A framer keeps a bounded buffer, drops bytes that cannot start a frame (counted as garbage), drops frames
longer than its hard maximum (counted as overlong) and resynchronises on the next frame start.
Every frame carries the host time of its first byte, taken from the chunk that delivered that byte.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes
    """The frame without its start and end delimiters."""
    raw: bytes
    """Every byte of the frame as it arrived, delimiters included."""
    time: float
    """Host monotonic time of the frame's first byte."""


class LineFramer:
    """Frames ending in `terminator` (e.g. CR LF). Empty lines are ignored.

    A line longer than `max_len` is discarded up to its terminator and counted as garbage.
    """

    def __init__(self, terminator: bytes = b"\r\n", max_len: int = 256) -> None:
        if not terminator:
            raise ValueError("a line terminator cannot be empty")
        self.terminator = terminator
        self.max_len = max_len
        self.garbage = 0
        self.overlong = 0
        self._buf = bytearray()
        self._start_time = 0.0
        self._discarding = False

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes, now: float) -> list[Frame]:
        frames: list[Frame] = []
        term = self.terminator
        for byte in data:
            if not self._buf:
                self._start_time = now
            self._buf.append(byte)
            if self._buf.endswith(term):
                if self._discarding:
                    self.garbage += len(self._buf)
                    self._discarding = False
                else:
                    raw = bytes(self._buf)
                    payload = raw[: -len(term)]
                    if payload:
                        frames.append(Frame(payload, raw, self._start_time))
                self._buf.clear()
            elif len(self._buf) > self.max_len + len(term):
                # Keep the tail that may be the start of a terminator; drop the rest.
                if not self._discarding:
                    self.overlong += 1
                    self._discarding = True
                keep = len(term) - 1
                self.garbage += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
        return frames


class DelimitedFramer:
    """Frames between a start byte and an end byte (STX .. ETX, or `!` .. CR).

    Bytes outside a frame are garbage. A new start byte inside a frame restarts the frame (the partial
    one is garbage), so a frame cut by noise or a replug cannot swallow the next good frame.
    """

    def __init__(self, start: int, end: int, max_len: int = 256) -> None:
        if start == end:
            raise ValueError("start and end delimiters must differ")
        self.start = start
        self.end = end
        self.max_len = max_len
        self.garbage = 0
        self.overlong = 0
        self._buf = bytearray()
        self._in_frame = False
        self._start_time = 0.0

    def reset(self) -> None:
        self._buf.clear()
        self._in_frame = False

    def feed(self, data: bytes, now: float) -> list[Frame]:
        frames: list[Frame] = []
        for byte in data:
            if byte == self.start:
                if self._in_frame:
                    self.garbage += len(self._buf)
                self._buf = bytearray((byte,))
                self._in_frame = True
                self._start_time = now
            elif not self._in_frame:
                self.garbage += 1
            elif byte == self.end:
                self._buf.append(byte)
                raw = bytes(self._buf)
                frames.append(Frame(raw[1:-1], raw, self._start_time))
                self._buf.clear()
                self._in_frame = False
            else:
                self._buf.append(byte)
                if len(self._buf) > self.max_len:
                    self.overlong += 1
                    self.garbage += len(self._buf)
                    self._buf.clear()
                    self._in_frame = False
        return frames
