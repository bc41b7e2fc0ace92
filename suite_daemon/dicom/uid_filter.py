"""A Bloom filter of the SOP Instance UIDs in the index: most stores are of new instances, and for those
the duplicate check then needs no database read (a read costs locks and page reads on the receiving
thread, between the object's arrival and its answer)."""

from __future__ import annotations

from collections.abc import Iterable

_BITS_PER_UID = 12
_HASHES = 5
"""With 12 bits per UID and 5 hashes about 0.3 % of new UIDs still ask the database."""
MIN_CAPACITY = 1 << 16


class UidFilter:
    """`might_contain` is False only for a UID never added. In memory only (Python's `hash` of a string
    differs between processes): built from the index at start."""

    def __init__(self, capacity: int, uids: Iterable[str] = ()) -> None:
        self.capacity = max(capacity, MIN_CAPACITY)
        size = 1 << (self.capacity * _BITS_PER_UID - 1).bit_length()
        self._mask = size - 1
        self._bits = bytearray(size >> 3)
        self.count = 0
        for uid in uids:
            self.add(uid)

    def _positions(self, uid: str) -> list[int]:
        h = hash(uid) & 0xFFFF_FFFF_FFFF_FFFF
        first, step = h & 0xFFFF_FFFF, (h >> 32) | 1
        mask = self._mask
        return [(first + i * step) & mask for i in range(_HASHES)]

    def add(self, uid: str) -> None:
        bits = self._bits
        for p in self._positions(uid):
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def might_contain(self, uid: str) -> bool:
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(uid))

    @property
    def full(self) -> bool:
        return self.count > self.capacity
