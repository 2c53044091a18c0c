"""Ports wrapped to count what passes through them, so the domain needs no metrics.

The wrappers implement the same ports as what they wrap and are handed to the use
case in their place. They do not own what they wrap: the container closes the real
adapters, so their ``aclose`` does nothing.
"""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Sequence

from cdc_app.metrics import Metrics
from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.events import SourcePosition
from cdc_domain.health import HealthReport
from cdc_domain.ports import (
    ChangeBatch,
    ChangeSource,
    CopiesReporting,
    DeadLetterQueue,
    Sink,
    SinkBatch,
)
from cdc_domain.schema_changes import SchemaChange

__all__ = ["EVERY_DESTINATION", "CountingDeadLetters", "CountingSink", "CountingSource"]

EVERY_DESTINATION = "*"
"""The destination label of a dead letter from the source, which concerns them all."""


class CountingSource:
    """Counts each event read once, by table, however many destinations re-read it:
    only what lies past the furthest position read so far is new. Entries that could
    not be decoded are counted as dead-lettered for every destination here, once,
    rather than by each destination that stores them again."""

    def __init__(self, source: ChangeSource, metrics: Metrics) -> None:
        self._source = source
        self._metrics = metrics
        self._furthest: SourcePosition | None = None

    @property
    def partition_id(self) -> str:
        return self._source.partition_id

    async def read(self, after: SourcePosition | None, max_events: int) -> ChangeBatch:
        batch = await self._source.read(after, max_events)
        furthest = self._furthest
        if batch.end is None or (furthest is not None and batch.end <= furthest):
            return batch
        new = Counter(
            event.qualified_table
            for event in batch.events
            if furthest is None or event.position > furthest
        )
        for table, count in new.items():
            self._metrics.events_read.labels(table).inc(count)
        for failure in batch.failures:
            if furthest is None or (failure.position is not None and failure.position > furthest):
                labels = (failure.table or "", EVERY_DESTINATION, failure.reason.value)
                self._metrics.events_dead_lettered.labels(*labels).inc()
        self._furthest = batch.end
        return batch

    async def acknowledge(self, position: SourcePosition) -> None:
        await self._source.acknowledge(position)

    async def aclose(self) -> None:
        return None


class CountingSink:
    """Counts events written and schema changes applied, by table, and the copies of
    writes a sink already held (:class:`~cdc_domain.ports.CopiesReporting`).

    ``sink`` is what it writes to, ``reporting`` the sink that counts the copies: the
    one ``sink`` wraps (an :class:`~cdc_domain.delivery.ExclusiveSink` reports none
    itself, and asking the wrapper would count nothing)."""

    def __init__(self, sink: Sink, metrics: Metrics, reporting: Sink) -> None:
        self._sink = sink
        self._metrics = metrics
        self._copies = reporting if isinstance(reporting, CopiesReporting) else None

    @property
    def name(self) -> str:
        return self._sink.name

    @property
    def kind(self) -> DestinationKind:
        return self._sink.kind

    @property
    def commits_offsets(self) -> bool:
        return self._sink.commits_offsets

    async def write(self, batch: SinkBatch) -> None:
        await self._sink.write(batch)
        # One increment per table, not per event: a labelled counter takes a lock.
        for table, count in Counter(event.qualified_table for event in batch.events).items():
            self._metrics.events_written.labels(table, self.name).inc(count)
        if self._copies is not None:
            for table, count in self._copies.take_absorbed_copies().items():
                self._metrics.replica_copies_absorbed.labels(self.name, table).inc(count)

    async def apply_schema_change(self, change: SchemaChange) -> None:
        await self._sink.apply_schema_change(change)
        table = f"{change.keyspace}.{change.table}"
        self._metrics.schema_changes.labels(self.name, table, change.kind.value).inc()

    async def health(self) -> HealthReport:
        return await self._sink.health()

    async def aclose(self) -> None:
        return None


class CountingDeadLetters:
    """Counts dead letters stored for a destination by table and reason. Those of no
    destination come from the source and are counted there (:class:`CountingSource`)."""

    def __init__(self, queue: DeadLetterQueue, metrics: Metrics) -> None:
        self._queue = queue
        self._metrics = metrics

    async def write(self, entries: Sequence[DeadLetterEvent]) -> None:
        await self._queue.write(entries)
        for entry in entries:
            # A replayed entry failing again is stored again, not dead-lettered anew.
            if entry.destination is not None and not entry.retry_count:
                labels = (entry.table or "", entry.destination, entry.reason.value)
                self._metrics.events_dead_lettered.labels(*labels).inc()

    async def list(
        self,
        *,
        destination: str | None = None,
        reason: FailureReason | None = None,
        include_replayed: bool = False,
        limit: int | None = None,
    ) -> builtins.list[DeadLetterEvent]:
        return await self._queue.list(
            destination=destination, reason=reason, include_replayed=include_replayed, limit=limit
        )

    async def take_for_replay(
        self,
        *,
        destination: str | None = None,
        reason: FailureReason | None = None,
        limit: int | None = None,
    ) -> builtins.list[DeadLetterEvent]:
        return await self._queue.take_for_replay(
            destination=destination, reason=reason, limit=limit
        )

    async def mark_replayed(self, dlq_ids: Sequence[str]) -> None:
        await self._queue.mark_replayed(dlq_ids)

    async def aclose(self) -> None:
        return None
