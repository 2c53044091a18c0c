"""The use case: drive batches from the source through masking and validation into
every destination, committing each destination's offset only after it confirmed.

Each destination reads from its own committed position, so a failing destination
keeps its place and retries from there while the others move on; the source is told
to free data only once every destination is past it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence

import attrs

from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.errors import EventsRejectedError, SchemaIncompatibleError
from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.masking import MaskingPolicy, MaskOnce
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import (
    ChangeBatch,
    ChangeSource,
    Clock,
    DeadLetterQueue,
    OffsetStore,
    SchemaHistory,
    SchemaSource,
    Sink,
    SinkBatch,
)
from cdc_domain.routing import RoutedBatch, dead_letter_events, mask_events, route_events
from cdc_domain.schema import TableSchema
from cdc_domain.schema_evolution import BlockedTable, SchemaEvolution
from cdc_domain.validation import EventValidator

__all__ = ["DeliveryOutcome", "Destination", "ReplicateBatch"]


@attrs.frozen(slots=True)
class Destination:
    sink: Sink
    offsets: OffsetStore

    @property
    def name(self) -> str:
        return self.sink.name


@attrs.frozen(slots=True)
class DeliveryOutcome:
    """What one batch did for one destination. ``error`` is set when the batch failed
    and the destination's offset stayed where it was."""

    destination: str
    delivered: int = 0
    dead_lettered: int = 0
    position: SourcePosition | None = None
    error: BaseException | None = None
    schema_changes: int = 0
    last_timestamp_micros: int | None = None
    blocked: tuple[BlockedTable, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


class ReplicateBatch:
    def __init__(
        self,
        *,
        source: ChangeSource,
        schemas: SchemaSource,
        destinations: Sequence[Destination],
        dead_letters: DeadLetterQueue,
        clock: Clock,
        masking: MaskingPolicy,
        history: SchemaHistory,
        validator: EventValidator | None = None,
    ) -> None:
        self._source = source
        self._schemas = schemas
        self._destinations = tuple(destinations)
        self._dlq = dead_letters
        self._clock = clock
        self._masking = MaskOnce(masking)
        self._validator = validator or EventValidator()
        self._evolution = SchemaEvolution(history)
        self._blocked: dict[str, dict[str, BlockedTable]] = {}

    async def __call__(self, max_events: int) -> list[DeliveryOutcome]:
        """One batch per destination, concurrently; then free what all have committed."""
        outcomes = await asyncio.gather(
            *(self.deliver(destination, max_events) for destination in self._destinations)
        )
        await self.acknowledge()
        return list(outcomes)

    async def deliver(self, destination: Destination, max_events: int) -> DeliveryOutcome:
        """Read, route and write one batch for one destination; never raises for a
        failure of that destination, so the others are never held back by it."""
        try:
            return await self._deliver(destination, max_events)
        except Exception as exc:
            return DeliveryOutcome(destination.name, error=exc)

    async def _deliver(self, destination: Destination, max_events: int) -> DeliveryOutcome:
        partition = self._source.partition_id
        record = await destination.offsets.load(destination.name, partition)
        batch = await self._source.read(record.position if record else None, max_events)
        if batch.end is None:
            return DeliveryOutcome(destination.name, position=record.position if record else None)
        now = self._clock.now()
        masked, dead = mask_events(
            batch.events, masking=self._masking, destination=destination.name, now=now
        )
        dead.extend(batch.failures)
        schemas = await self._schemas_for(batch)
        applied, blocked = await self._evolution.prepare(destination.sink, schemas, now)
        self._blocked[destination.name] = blocked
        dead.extend(self._blocked_letters(masked, blocked, now))
        routed = route_events(
            [e for e in masked if e.qualified_table not in blocked],
            schemas=schemas,
            validator=self._validator,
            destination=destination.name,
            kind=destination.sink.kind,
            now=now,
        )
        dead.extend(routed.dead_letters)
        checkpoint = Checkpoint(partition, batch.end, len(batch.events))
        written, rejected = await self._write(destination, routed, checkpoint)
        dead.extend(rejected)
        if dead:
            # Dead letters are stored before the offset moves: a crash between the two
            # re-delivers the batch, and dead letters are idempotent by id.
            await self._dlq.write(dead)
        if not destination.sink.commits_offsets or not written:
            await destination.offsets.commit(destination.name, checkpoint)
        return DeliveryOutcome(
            destination.name,
            delivered=written,
            dead_lettered=len(dead),
            position=batch.end,
            schema_changes=applied,
            last_timestamp_micros=max((e.timestamp_micros for e in routed.valid), default=None),
            blocked=tuple(blocked.values()),
        )

    def _blocked_letters(
        self,
        events: Sequence[ChangeEvent],
        blocked: Mapping[str, BlockedTable],
        now: dt.datetime,
    ) -> list[DeadLetterEvent]:
        letters = []
        for event in events:
            table = blocked.get(event.qualified_table)
            if table is not None:
                letters.append(
                    DeadLetterEvent.for_event(
                        event,
                        reason=FailureReason.SCHEMA_INCOMPATIBLE,
                        error=table.advice,
                        failed_at=now,
                        destination=table.destination,
                        schema_details={"table": table.table, **table.details},
                    )
                )
        return letters

    @property
    def blocked(self) -> list[BlockedTable]:
        """Tables some destination cannot follow, as of each one's latest batch."""
        return [table for tables in self._blocked.values() for table in tables.values()]

    async def _write(
        self, destination: Destination, routed: RoutedBatch, checkpoint: Checkpoint
    ) -> tuple[int, list[DeadLetterEvent]]:
        """Write the valid events; split off the ones the sink rejects as poison and
        write the rest again, so one bad event never blocks its batch."""
        events = routed.valid
        rejected: list[DeadLetterEvent] = []
        while events:
            try:
                await destination.sink.write(SinkBatch(events, routed.schemas, checkpoint))
                return len(events), rejected
            except SchemaIncompatibleError as exc:
                bad = tuple(e for e in events if e.qualified_table == exc.table)
                reason, error, details = FailureReason.SCHEMA_INCOMPATIBLE, str(exc), exc.details
            except EventsRejectedError as exc:
                ids = set(exc.event_ids)
                bad = tuple(e for e in events if e.event_id in ids)
                reason, error, details = FailureReason.PROCESSING_ERROR, str(exc), {}
            if not bad:
                raise RuntimeError(f"{destination.name} rejected events it did not name")
            rejected.extend(
                dead_letter_events(
                    bad,
                    reason=reason,
                    error=error,
                    destination=destination.name,
                    now=self._clock.now(),
                    details=details,
                )
            )
            bad_ids = {e.event_id for e in bad}
            events = tuple(e for e in events if e.event_id not in bad_ids)
        return 0, rejected

    async def _schemas_for(self, batch: ChangeBatch) -> dict[str, TableSchema]:
        """The schemas the source decoded with; the schema source for what it left out."""
        schemas = dict(batch.schemas)
        for event in batch.events:
            name = event.qualified_table
            if name not in schemas:
                schema = await self._schemas.table(event.keyspace, event.table)
                if schema is not None:
                    schemas[name] = schema
        return schemas

    async def acknowledge(self) -> SourcePosition | None:
        """Tell the source how far every destination has committed, so it may free it."""
        partition = self._source.partition_id
        positions = []
        for destination in self._destinations:
            record = await destination.offsets.load(destination.name, partition)
            if record is None:
                return None
            positions.append(record.position)
        if not positions:
            return None
        lowest = min(positions)
        await self._source.acknowledge(lowest)
        return lowest
