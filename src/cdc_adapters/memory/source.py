from __future__ import annotations

import bisect
from collections.abc import Iterable

from cdc_domain.dead_letters import DeadLetterEvent
from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.ports import ChangeBatch


class MemoryChangeSource:
    """A change source over events (and undecodable entries) the test appends in order.

    Acknowledging frees what it covers, as the Cassandra source deletes consumed
    segments: entries at or before the acknowledged position are dropped and no read
    returns them again, so a test whose destination still needed them fails here as it
    would lose them on a real node.
    """

    def __init__(self, partition_id: str = "memory", events: Iterable[ChangeEvent] = ()) -> None:
        self._partition_id = partition_id
        self._items: list[tuple[SourcePosition, ChangeEvent | DeadLetterEvent]] = []
        self._last: SourcePosition | None = None
        self.acknowledged: SourcePosition | None = None
        self.closed = False
        self.append(*events)

    @property
    def partition_id(self) -> str:
        return self._partition_id

    def append(self, *events: ChangeEvent) -> None:
        for event in events:
            self._add(event.position, event)

    def fail(self, failure: DeadLetterEvent) -> None:
        """Add an entry that cannot be decoded, as a real source reports one."""
        if failure.position is None:
            raise ValueError("a source failure needs its position")
        self._add(failure.position, failure)

    def _add(self, position: SourcePosition, item: ChangeEvent | DeadLetterEvent) -> None:
        if self._last is not None and position <= self._last:
            raise ValueError(f"{position} is not after the last position")
        self._items.append((position, item))
        self._last = position

    async def read(self, after: SourcePosition | None, max_events: int) -> ChangeBatch:
        positions = [p for p, _ in self._items]
        start = 0 if after is None else bisect.bisect_right(positions, after)
        events: list[ChangeEvent] = []
        failures: list[DeadLetterEvent] = []
        end = None
        for position, item in self._items[start:]:
            if len(events) >= max_events:
                break
            if isinstance(item, ChangeEvent):
                events.append(item)
            else:
                failures.append(item)
            end = position
        return ChangeBatch(tuple(events), tuple(failures), end)

    async def acknowledge(self, position: SourcePosition) -> None:
        if self.acknowledged is None or position > self.acknowledged:
            self.acknowledged = position
        positions = [p for p, _ in self._items]
        del self._items[: bisect.bisect_right(positions, position)]

    async def aclose(self) -> None:
        self.closed = True
