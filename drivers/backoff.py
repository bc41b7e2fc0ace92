"""Capped exponential backoff with jitter, for reconnecting to a port."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        """The next delay: min * 2^n capped at max, then scaled by a random factor in [0.5, 1]."""
        ceiling = min(self.maximum, self.minimum * 2.0 ** min(self.attempt, 30))
        self.attempt += 1
        return ceiling * self.rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0
