from __future__ import annotations

import builtins

from cdc_domain.offsets import Checkpoint, OffsetRecord
from cdc_domain.ports import Clock


class MemoryOffsetStore:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._records: dict[tuple[str, str], OffsetRecord] = {}

    async def load(self, destination: str, partition_id: str) -> OffsetRecord | None:
        return self._records.get((destination, partition_id))

    async def commit(self, destination: str, checkpoint: Checkpoint) -> None:
        self.advance(destination, checkpoint)

    def advance(self, destination: str, checkpoint: Checkpoint) -> None:
        """:meth:`commit` without a suspension point, for a sink that moves its offset
        in the same step as its write (:class:`~cdc_adapters.memory.MemorySink`)."""
        key = (destination, checkpoint.partition_id)
        previous = self._records.get(key)
        total = (previous.events_processed if previous else 0) + checkpoint.events
        self._records[key] = OffsetRecord(
            destination=destination,
            partition_id=checkpoint.partition_id,
            position=checkpoint.position,
            events_processed=total,
            updated_at=self._clock.now(),
        )

    async def list(self) -> builtins.list[OffsetRecord]:
        return sorted(self._records.values(), key=lambda r: (r.destination, r.partition_id))

    async def aclose(self) -> None:
        return None
