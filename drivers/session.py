"""The sans-I/O session layer every driver builds on.

A session is fed bytes and clock ticks and produces bytes to send and typed outputs. It never reads a
clock itself: every call carries `now` (host monotonic seconds), so tests drive it in virtual time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from drivers.framing import DelimitedFramer, Frame, LineFramer


class ProtocolError(ValueError):
    """A frame that does not decode. The session drops it and counts it; the link stays up."""


class ChecksumError(ProtocolError):
    """A frame whose checksum does not match."""


class PolicyError(RuntimeError):
    """A driver tried to send a command outside its read-only allow-list (a bug, never a device fault)."""


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    kind: Literal["dose", "injection"]
    values: Mapping[str, float]
    time: float
    """Host monotonic time of the first byte of the (last) reply this sample was decoded from."""
    device_time: str | None = None
    quality: str = "good"
    segment: int = 0


@dataclass(frozen=True, slots=True)
class Notice:
    kind: Literal["alarm", "counter_reset", "unit_change", "phase", "raw"]
    data: Mapping[str, Any]
    time: float


@dataclass(frozen=True, slots=True)
class Health:
    """Whether the device answers: `ok` once it does, `fault` when it stops answering or reports a fault."""

    ok: bool
    detail: str


Output = Sample | Notice | Health


@dataclass
class Counters:
    bytes_in: int = 0
    bytes_out: int = 0
    frames: int = 0
    bad_frames: int = 0
    checksum_errors: int = 0
    garbage_bytes: int = 0
    timeouts: int = 0
    reconnects: int = 0

    def snapshot(self) -> dict[str, int]:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------------
# Options shared by request/response drivers
# ---------------------------------------------------------------------------------------------


class DriverOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolledOptions(DriverOptions):
    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    """How often the measurement commands are sent."""
    response_timeout_s: float = Field(default=1.0, gt=0, le=60)
    """How long to wait for a reply before retrying."""
    retries: int = Field(default=2, ge=0, le=10)
    """Retries of one request before it counts as unanswered (the device is then marked `fault`)."""


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------


class SegmentTracker:
    """Numbers the segments of cumulative counters: a new segment starts when any counter goes backwards.

    It lives as long as the device component, so a reset while the link was down is still seen.
    """

    def __init__(self, keys: tuple[str, ...], tolerance: float = 1e-12) -> None:
        self.keys = keys
        self.tolerance = tolerance
        self.segment = 0
        self._last: dict[str, float] = {}

    def observe(self, values: Mapping[str, float]) -> dict[str, float] | None:
        """Record `values`; return the previous values of the counters if this starts a new segment."""
        went_back = any(
            key in values and key in self._last and values[key] < self._last[key] - self.tolerance for key in self.keys
        )
        previous = dict(self._last) if went_back else None
        if went_back:
            self.segment += 1
        for key in self.keys:
            if key in values:
                self._last[key] = values[key]
        return previous


class Session(ABC):
    """Protocol state for one device. Subclasses set `framer` and implement `on_frame`."""

    framer: LineFramer | DelimitedFramer

    def __init__(self) -> None:
        self.counters = Counters()
        self._outgoing: list[bytes] = []
        self._outputs: list[Output] = []
        self._garbage_seen = 0

    # --- driven by the runner -----------------------------------------------------------------

    def connected(self, now: float) -> None:
        self.framer.reset()

    def disconnected(self, now: float) -> None:  # noqa: B027 - optional hook
        """The link went away. Protocol state restarts on the next `connected`."""

    def received(self, data: bytes, now: float) -> None:
        self.counters.bytes_in += len(data)
        frames = self.framer.feed(data, now)
        self.counters.garbage_bytes += self.framer.garbage - self._garbage_seen
        self._garbage_seen = self.framer.garbage
        for frame in frames:
            self.counters.frames += 1
            try:
                self.on_frame(frame, now)
            except ChecksumError:
                self.counters.checksum_errors += 1
            except (ValueError, IndexError, KeyError):
                # ProtocolError, and any decoding slip a device's bytes can provoke: the frame is dropped,
                # the link and the other frames are not affected.
                self.counters.bad_frames += 1

    def tick(self, now: float) -> None:  # noqa: B027 - optional hook
        """Timers: called at (or after) `next_deadline()` and after every chunk."""

    def next_deadline(self) -> float | None:
        return None

    def take_outgoing(self) -> list[bytes]:
        out, self._outgoing = self._outgoing, []
        return out

    def take_outputs(self) -> list[Output]:
        out, self._outputs = self._outputs, []
        return out

    # --- for subclasses ----------------------------------------------------------------------

    @abstractmethod
    def on_frame(self, frame: Frame, now: float) -> None: ...

    def emit(self, output: Output) -> None:
        self._outputs.append(output)

    def send_bytes(self, data: bytes) -> None:
        self.counters.bytes_out += len(data)
        self._outgoing.append(data)


@dataclass
class _Pending:
    command: str
    startup: bool = False
    attempts: int = 0
    sent_at: float = 0.0


@dataclass
class _PollState:
    queue: deque[_Pending] = field(default_factory=deque)
    outstanding: _Pending | None = None
    next_poll: float = 0.0
    in_cycle: bool = False
    unanswered: int = 0


class PolledSession(Session):
    """Request/response protocols: one outstanding request, timeouts, retries, a poll schedule.

    On every (re)connect the `startup` commands are sent once (identity, units...), then the `poll`
    commands every `poll_interval_s`. Only commands in `ALLOWED` are ever sent.
    """

    ALLOWED: frozenset[str] = frozenset()
    startup: tuple[str, ...] = ()
    poll: tuple[str, ...] = ()

    def __init__(self, options: PolledOptions) -> None:
        super().__init__()
        self.options = options
        self._state = _PollState()
        self._healthy: bool | None = None

    # --- subclass API ------------------------------------------------------------------------

    @abstractmethod
    def encode(self, command: str) -> bytes:
        """The bytes of a request."""

    @abstractmethod
    def handle(self, command: str, frame: Frame, now: float) -> None:
        """Decode `frame` as the reply to `command`; raise ProtocolError if it is not one."""

    def cycle_complete(self, now: float) -> None:
        """Every poll command of a cycle was answered or given up: emit the cycle's sample."""

    def identity(self) -> str:
        return "answering"

    # --- machinery ---------------------------------------------------------------------------

    def connected(self, now: float) -> None:
        super().connected(now)
        self._state = _PollState(queue=deque(_Pending(c, startup=True) for c in self.startup), next_poll=now)
        self._healthy = None
        self._pump(now)

    def disconnected(self, now: float) -> None:
        self._state = _PollState()
        self._healthy = None

    def on_frame(self, frame: Frame, now: float) -> None:
        pending = self._state.outstanding
        if pending is None:
            raise ProtocolError("unsolicited frame")
        self.handle(pending.command, frame, now)
        self._answered(now)

    def tick(self, now: float) -> None:
        state = self._state
        pending = state.outstanding
        if pending is not None and now >= pending.sent_at + self.options.response_timeout_s:
            self.counters.timeouts += 1
            if pending.attempts <= self.options.retries:
                self._send(pending, now)
            else:
                state.outstanding = None
                state.unanswered += 1
                self._set_health(False, f"no valid reply to {pending.command} after {pending.attempts} attempts")
        self._pump(now)

    def next_deadline(self) -> float | None:
        state = self._state
        if state.outstanding is not None:
            return state.outstanding.sent_at + self.options.response_timeout_s
        if state.queue or not self.poll:
            return None
        return state.next_poll

    def _answered(self, now: float) -> None:
        self._state.outstanding = None
        self._state.unanswered = 0
        if not any(p.startup for p in self._state.queue):  # report once the identity is complete
            self._set_health(True, self.identity())
        self._pump(now)

    def _set_health(self, ok: bool, detail: str) -> None:
        if self._healthy is not ok:
            self._healthy = ok
            self.emit(Health(ok, detail))

    def _pump(self, now: float) -> None:
        state = self._state
        if state.outstanding is not None:
            return
        if not state.queue and state.in_cycle:
            state.in_cycle = False
            self.cycle_complete(now)
        if not state.queue and now >= state.next_poll and self.poll:
            state.queue.extend(_Pending(c) for c in self.poll)
            state.in_cycle = True
            # Keep the schedule regular, but never try to catch up on missed polls.
            state.next_poll = max(state.next_poll + self.options.poll_interval_s, now)
        if state.queue:
            self._send(state.queue.popleft(), now)

    def _send(self, pending: _Pending, now: float) -> None:
        if pending.command not in self.ALLOWED:
            raise PolicyError(f"{type(self).__name__} may not send {pending.command!r}")
        pending.attempts += 1
        pending.sent_at = now
        self._state.outstanding = pending
        self.send_bytes(self.encode(pending.command))
