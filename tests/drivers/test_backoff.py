"""Reconnect backoff: exponential from the minimum, capped, jittered, reset once the device answers."""

from __future__ import annotations

import random

from drivers.backoff import Backoff


def test_backoff_doubles_is_capped_and_jittered() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(7))
    delays = [backoff.next() for _ in range(12)]
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d / c, 6) for d, c in zip(delays, ceilings, strict=True)}) > 1  # jitter
    assert max(delays) <= 30.0
    for _ in range(5000):  # never overflows, however long a device stays away
        assert backoff.next() <= 30.0
    backoff.reset()
    assert backoff.next() <= 0.5
