"""What the sink knows of its tables without asking: the states it last wrote, and
which keys a table cannot hold.

With a single writer per destination table, what the sink wrote is what ClickHouse
holds, so a cache hit saves the read-back of that key, and so does a key filter's "not
there". The cache is bounded by entries and the filter by its bit count, so memory stays
proportional to the configuration whatever the table's size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["KeyFilter", "LruCache"]

V = TypeVar("V")
_MISSING = object()


class LruCache(Generic[V]):
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[Hashable, V] = OrderedDict()

    def lookup(self, key: Hashable) -> tuple[bool, V | None]:
        """(found, value): a cached None is a key known to have no row."""
        value = self._entries.get(key, _MISSING)
        if value is _MISSING:
            return False, None
        self._entries.move_to_end(key)
        return True, value  # type: ignore[return-value]

    def put(self, key: Hashable, value: V) -> None:
        if self._capacity <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class KeyFilter:
    """The keys a table may hold, as a Bloom filter: ``False`` from :meth:`may_contain`
    means the key certainly has no row, so its read-back can be skipped.

    Only sound for a table that was empty when the filter was made and that only this
    sink writes (the cache's own assumption): every key it writes is added *before* its
    insert is sent, so an insert that fails after landing still counts. Fixed size
    (``bits``, three probes): past ~``bits / 12`` keys false positives grow, which only
    brings back read-backs, never a wrong answer.
    """

    def __init__(self, bits: int = 1 << 23) -> None:
        self._mask = max(1 << 10, 1 << (bits - 1).bit_length()) - 1
        self._bits = bytearray((self._mask + 1) // 8)

    def _probes(self, key: Hashable) -> tuple[int, int, int]:
        h = hash(key)
        mask = self._mask
        return h & mask, (h >> 21) & mask, ((h >> 42) ^ (h * 0x9E3779B1)) & mask

    def add(self, key: Hashable) -> None:
        bits = self._bits
        for i in self._probes(key):
            bits[i >> 3] |= 1 << (i & 7)

    def may_contain(self, key: Hashable) -> bool:
        bits = self._bits
        return all(bits[i >> 3] & (1 << (i & 7)) for i in self._probes(key))
