"""Reading a live node's changes through the real change source, in tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from cdc_view import CdcRawView

from cdc_adapters.cassandra import CassandraChangeSource, CassandraSchemaSource
from cdc_domain.dead_letters import DeadLetterEvent
from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.ports import ChangeBatch


def live_source(
    view: CdcRawView, schemas: CassandraSchemaSource, *tables: str
) -> CassandraChangeSource:
    """A source over the view capturing ``tables`` (``ks.table`` or ``ks.*``)."""
    return CassandraChangeSource(
        partition_id="it-node", cdc_raw_dir=view.view, schemas=schemas, tables=tables
    )


class Consumer:
    """Reads from a source into lists, the way one destination would, until told enough."""

    def __init__(self, source: CassandraChangeSource, view: CdcRawView) -> None:
        self.source = source
        self.view = view
        self.after: SourcePosition | None = None
        self.events: list[ChangeEvent] = []
        self.failures: list[DeadLetterEvent] = []
        self.batches: list[ChangeBatch] = []

    async def step(self, max_events: int = 1000) -> ChangeBatch:
        self.view.sync()
        batch = await self.source.read(self.after, max_events)
        if batch.end is not None:
            assert self.after is None or batch.end > self.after
            assert all(self.after is None or e.position > self.after for e in batch.events)
            self.after = batch.end
            self.events += batch.events
            self.failures += batch.failures
            self.batches.append(batch)
        return batch

    async def until(
        self, done: Callable[[list[ChangeEvent]], bool], within: float = 30.0
    ) -> list[ChangeEvent]:
        deadline = time.monotonic() + within
        while not done(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up after {within}s with {len(self.events)} events")
            batch = await self.step()
            if batch.end is None:
                await asyncio.sleep(0.05)
        return self.events
