"""A bounded least-recently-used map of the states the sink last wrote.

With a single writer per destination table, what the sink wrote is what ClickHouse
holds, so a hit saves the read-back of that key. Bounded by entries, so memory stays
proportional to the configured size whatever the table's size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["LruCache"]

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
