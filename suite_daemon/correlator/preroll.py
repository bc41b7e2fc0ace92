"""Serial samples seen while no procedure is open, kept (bounded) so an opening can attach the
last `preroll_s` of them. They are also on the unassigned stream already: nothing depends on this
buffer for not losing data, so it lives in memory only."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from suite_daemon.events import DeviceSampled

MAX_SAMPLES = 20_000


class PrerollBuffer:
    def __init__(self, preroll_s: float, max_samples: int = MAX_SAMPLES) -> None:
        self.window = timedelta(seconds=preroll_s)
        self._samples: deque[DeviceSampled] = deque(maxlen=max_samples)

    def add(self, sample: DeviceSampled) -> None:
        if self.window:
            self._samples.append(sample)

    def prune(self, now: datetime) -> None:
        while self._samples and self._samples[0].host_time < now - self.window:
            self._samples.popleft()

    def take(self, opened_at: datetime) -> list[DeviceSampled]:
        """The samples of the window before `opened_at`, oldest first; the buffer is emptied."""
        start = opened_at - self.window
        taken = [s for s in self._samples if start <= s.host_time <= opened_at]
        self._samples.clear()
        return taken

    def __len__(self) -> int:
        return len(self._samples)
