"""Writing events to a sink so that one bad event never blocks the others.

Both use cases write through here: the stream (:mod:`cdc_domain.replication`), dead
letter replay, and the snapshot (:mod:`cdc_domain.snapshot`). A sink that refuses
some events as poison names them (or their table); they are handed to the caller as
dead letters and the rest is written again, so the split is the same whatever brought
the events.

A destination takes one writer at a time (:class:`ExclusiveSink`): a sink may merge a
batch with what it read back or cached of the rows it touches (ClickHouse does), which
two concurrent batches would each do from the same old state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import EventsRejectedError, SchemaIncompatibleError, SinkError, TableError
from cdc_domain.events import ChangeEvent
from cdc_domain.health import HealthReport
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import Clock, CopiesReporting, Sink, SinkBatch
from cdc_domain.routing import dead_letter_events
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import SchemaChange

__all__ = ["ExclusiveSink", "Rejected", "write_splitting_poison"]

Rejected = Callable[[list[DeadLetterEvent], SinkError], Awaitable[None]]
"""What to do with events a sink rejected (and why), before the rest is written again."""


async def write_splitting_poison(
    sink: Sink,
    events: tuple[ChangeEvent, ...],
    schemas: Mapping[str, TableSchema],
    checkpoint: Checkpoint | None,
    rejected: Rejected,
    clock: Clock,
) -> int:
    """Write the valid events; hand the ones the sink rejects as poison to
    ``rejected`` and write the rest again. Returns how many were written; any other
    failure is raised with nothing recorded."""
    while events:
        failure: SinkError
        try:
            await sink.write(SinkBatch(events, schemas, checkpoint))
            return len(events)
        except SchemaIncompatibleError as exc:
            bad = tuple(e for e in events if e.qualified_table == exc.table)
            reason, failure, details = FailureReason.SCHEMA_INCOMPATIBLE, exc, exc.details
        except TableError as exc:
            bad = tuple(e for e in events if e.qualified_table == exc.table)
            reason, failure, details = FailureReason.PROCESSING_ERROR, exc, exc.details
        except EventsRejectedError as exc:
            ids = set(exc.event_ids)
            bad = tuple(e for e in events if e.event_id in ids)
            reason, failure, details = FailureReason.PROCESSING_ERROR, exc, {}
        if not bad:
            raise RuntimeError(f"{sink.name} rejected events it did not name")
        await rejected(
            dead_letter_events(
                bad,
                reason=reason,
                error=str(failure),
                destination=sink.name,
                now=clock.now(),
                details=details,
            ),
            failure,
        )
        bad_ids = {e.event_id for e in bad}
        events = tuple(e for e in events if e.event_id not in bad_ids)
    return 0


class ExclusiveSink:
    """A sink written by one task at a time: the stream and the snapshot of a
    destination share one, so their batches and DDL never interleave. It does not own
    the sink it wraps (whoever opened it closes it)."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._lock = asyncio.Lock()

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
        async with self._lock:
            await self._sink.write(batch)

    async def apply_schema_change(self, change: SchemaChange) -> None:
        async with self._lock:
            await self._sink.apply_schema_change(change)

    async def health(self) -> HealthReport:
        return await self._sink.health()

    def take_absorbed_copies(self) -> Mapping[str, int]:
        """The wrapped sink's count when it keeps one record per write
        (:class:`~cdc_domain.ports.CopiesReporting`), else none: without this the
        wrapper hides that the sink counts them, and /metrics never shows its copies."""
        sink = self._sink
        return sink.take_absorbed_copies() if isinstance(sink, CopiesReporting) else {}

    async def aclose(self) -> None:
        return None
