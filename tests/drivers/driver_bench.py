"""A session wired to its simulator in memory, in virtual time: no sleeps, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from drivers.session import Health, Notice, Output, Sample, Session
from drivers.simulator import Simulator

SessionT = TypeVar("SessionT", bound=Session)
SimulatorT = TypeVar("SimulatorT", bound=Simulator)


@dataclass
class VirtualBench(Generic[SessionT, SimulatorT]):
    session: SessionT
    simulator: SimulatorT
    step: float = 0.01
    now: float = 1000.0
    outputs: list[Output] = field(default_factory=list)
    connected: bool = False
    plugged: bool = True

    def connect(self) -> None:
        self.session.connected(self.now)
        self.connected = True

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + self.step, 6)
            if self.connected:
                for chunk in self.session.take_outgoing():
                    reply = self.simulator.feed(chunk, self.now) if self.plugged else b""
                    if reply:
                        self.session.received(reply, self.now)
                spontaneous = self.simulator.tick(self.now)
                if spontaneous and self.plugged:
                    self.session.received(spontaneous, self.now)
                self.session.tick(self.now)
                self.outputs.extend(self.session.take_outputs())

    @property
    def samples(self) -> list[Sample]:
        return [o for o in self.outputs if isinstance(o, Sample)]

    def notices(self, kind: str) -> list[Notice]:
        return [o for o in self.outputs if isinstance(o, Notice) and o.kind == kind]

    @property
    def health(self) -> list[Health]:
        return [o for o in self.outputs if isinstance(o, Health)]


def total(samples: list[Sample], key: str) -> float:
    """The documented rule: last value of every segment, minus the first value of the first segment."""
    last: dict[int, float] = {}
    first_segment = samples[0].segment
    first = samples[0].values[key]
    for sample in samples:
        last[sample.segment] = sample.values[key]
    return sum(last.values()) - first if first_segment in last else sum(last.values())
