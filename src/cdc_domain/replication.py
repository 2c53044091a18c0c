"""The use case: drive batches from the source through masking and validation into
every destination, committing each destination's offset only after it confirmed, and
re-drive dead letters through the same path once their cause is fixed.

Each destination reads from its own committed position, so a failing destination
keeps its place and retries from there while the others move on; the source is told
to free data only once every destination is past it.

Failures are sorted here into two kinds. Poison — events a destination cannot take
(a bad value, a schema it cannot follow) — go to the dead letter queue and the rest of
the batch goes on. Anything else fails the batch: :meth:`ReplicateBatch.deliver` raises
it, the offset stays where it was, and the caller decides from
:func:`~cdc_domain.errors.classify` whether to retry soon or stop that destination.
Dead letters are always stored before the offset moves: a crash in between re-delivers
the batch, and dead letters are idempotent by id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Mapping, Sequence

import attrs

from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.delivery import write_splitting_poison
from cdc_domain.errors import SchemaIncompatibleError, SinkError, TableError, describe_error
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
)
from cdc_domain.replay import ReplayReport, unreplayable
from cdc_domain.routing import refused_letters, route_events
from cdc_domain.schema import TableSchema
from cdc_domain.schema_evolution import BlockedTable, SchemaEvolution, paused_until
from cdc_domain.shared_reads import SharedReads
from cdc_domain.unknown_tables import UnknownTablePolicy, UnknownTables
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
    """What one batch did for one destination. ``error`` is set only by a round over
    every destination (:meth:`ReplicateBatch.__call__`), for one whose batch failed and
    whose offset stayed where it was."""

    destination: str
    delivered: int = 0
    dead_lettered: int = 0
    position: SourcePosition | None = None
    error: Exception | None = None
    schema_changes: int = 0
    last_timestamp_micros: int | None = None
    blocked: tuple[BlockedTable, ...] = ()
    more: bool = False
    """The batch ended before the data did (it was full, or the rest of an older read):
    the next one may be read at once."""

    @property
    def ok(self) -> bool:
        return self.error is None


class ReplicateBatch:
    """The stream's use case. ``evolution`` is given when another use case (the
    snapshot) writes to the same destinations, so the two apply each table's DDL once.
    ``shared_read_fresh_s``: how long a read that reached the end of the data may be
    shared by the destinations asking for it (:mod:`cdc_domain.shared_reads`); as long
    as they wait between such batches is as stale as it may be without adding to their
    lag."""

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
        unknown_tables: UnknownTablePolicy = UnknownTablePolicy.COUNT,
        unknown_tables_kept: int = 10,
        paused_table_retry_s: float | None = 600.0,
        shared_read_fresh_s: float = 0.1,
        evolution: SchemaEvolution | None = None,
    ) -> None:
        self._source = source
        self._schemas = schemas
        self._destinations = tuple(destinations)
        self._dlq = dead_letters
        self._clock = clock
        # Destinations keeping pace share masked reads (SharedReads); what this cache
        # still serves is one lagging behind them within the source's decoded entries.
        self._masking = MaskOnce(masking, size=10_000)
        self._reads = SharedReads(
            source,
            self._masking,
            clock,
            keep=2 * len(destinations),
            fresh_for=dt.timedelta(seconds=shared_read_fresh_s),
        )
        self._validator = validator or EventValidator()
        self._evolution = evolution or SchemaEvolution(history, retry_after_s=paused_table_retry_s)
        self._pause_for = paused_table_retry_s
        self._blocked: dict[str, dict[str, BlockedTable]] = {}
        self._paused: dict[str, dict[str, BlockedTable]] = {}
        self._unknown = UnknownTables(
            policy=unknown_tables,
            kept_in_full=unknown_tables_kept,
            dead_letters=dead_letters,
            partition_id=source.partition_id,
        )

    async def __call__(self, max_events: int) -> list[DeliveryOutcome]:
        """One batch per destination, concurrently; then free what all have committed.
        A destination whose batch failed is reported with its error; the others are
        never held back by it."""
        results = await asyncio.gather(
            *(self.deliver(destination, max_events) for destination in self._destinations),
            return_exceptions=True,
        )
        outcomes = []
        for destination, result in zip(self._destinations, results, strict=True):
            if isinstance(result, DeliveryOutcome):
                outcomes.append(result)
            elif isinstance(result, Exception):
                outcomes.append(DeliveryOutcome(destination.name, error=result))
            else:
                raise result  # cancelled, or an interpreter exit: never a batch's failure
        await self.acknowledge()
        return outcomes

    async def deliver(self, destination: Destination, max_events: int) -> DeliveryOutcome:
        """Read, route and write one batch for one destination. Poison events are
        dead-lettered; any other failure is raised, with the offset left as it was."""
        partition = self._source.partition_id
        record = await destination.offsets.load(destination.name, partition)
        read = await self._reads.read(record.position if record else None, max_events)
        batch = read.batch
        now = self._clock.now()
        if batch.end is None:
            still = {**self._evolution.paused(destination.name, now)}
            still.update(self._still_paused(destination.name, now))
            self._blocked[destination.name] = still
            return DeliveryOutcome(
                destination.name,
                position=record.position if record else None,
                blocked=tuple(still.values()),
            )
        masked = read.masked
        dead = refused_letters(
            read.refused, masking=self._masking, destination=destination.name, now=now
        )
        dead.extend(await self._unknown.sift(batch.failures, now))
        schemas = await self._schemas_for(batch)
        applied, blocked = await self._evolution.prepare(destination.sink, schemas, now)
        blocked.update(self._still_paused(destination.name, now))
        self._blocked[destination.name] = {
            **self._evolution.paused(destination.name, now),
            **blocked,
        }
        dead.extend(_blocked_letters(masked, blocked, now))
        routed = route_events(
            [e for e in masked if e.qualified_table not in blocked],
            schemas=schemas,
            validator=self._validator,
            destination=destination.name,
            kind=destination.sink.kind,
            now=now,
        )
        dead.extend(routed.dead_letters)
        if dead:
            await self._dlq.write(dead)
        checkpoint = Checkpoint(partition, batch.end, len(batch.events))
        rejected: list[DeadLetterEvent] = []

        async def store(letters: list[DeadLetterEvent], error: SinkError) -> None:
            if isinstance(error, TableError) and not isinstance(error, SchemaIncompatibleError):
                self._pause(destination.name, error, now)
            rejected.extend(letters)
            await self._dlq.write(letters)

        written = await write_splitting_poison(
            destination.sink, routed.valid, routed.schemas, checkpoint, store, self._clock
        )
        if not destination.sink.commits_offsets or not written:
            await destination.offsets.commit(destination.name, checkpoint)
        return DeliveryOutcome(
            destination.name,
            delivered=written,
            dead_lettered=len(dead) + len(rejected),
            position=batch.end,
            schema_changes=applied,
            last_timestamp_micros=max((e.timestamp_micros for e in routed.valid), default=None),
            blocked=tuple(self._blocked[destination.name].values()),
            more=read.full,
        )

    def _pause(self, destination: str, error: TableError, now: dt.datetime) -> None:
        """Stop writing a table the destination refused: its next events go to the dead
        letter queue until the pause ends (or the pipeline restarts)."""
        self._paused.setdefault(destination, {})[error.table] = BlockedTable(
            destination,
            error.table,
            "its writes",
            str(error),
            {"error": str(error), **error.details},
            retry_at=paused_until(now, self._pause_for),
            letters=FailureReason.PROCESSING_ERROR,
        )

    def _still_paused(self, destination: str, now: dt.datetime) -> dict[str, BlockedTable]:
        paused = self._paused.get(destination, {})
        for table in [t for t, b in paused.items() if b.retry_at is not None and now >= b.retry_at]:
            del paused[table]
        return dict(paused)

    @property
    def blocked(self) -> list[BlockedTable]:
        """Tables some destination cannot follow, as of each one's latest batch."""
        return [table for tables in self._blocked.values() for table in tables.values()]

    async def replay(
        self, *, destination: str | None = None, reason: FailureReason | None = None
    ) -> ReplayReport:
        """Re-drive pending dead letters into their destination, as a batch would: the
        table's current schema applied to the destination first, validated, written with
        the same split of poison from the rest. What goes through is marked replayed;
        what fails again stays pending with its new error. Events are written as stored
        (already masked: masking twice would hash a hash), and no offset moves."""
        entries = await self._dlq.take_for_replay(destination=destination, reason=reason)
        sinks = {d.name: d.sink for d in self._destinations}
        skipped = [e for e in entries if unreplayable(e, sinks) is not None]
        replayable = sorted(
            (e for e in entries if unreplayable(e, sinks) is None), key=_destination_then_position
        )
        replayed: list[str] = []
        failed: list[DeadLetterEvent] = []
        for name, group in itertools.groupby(replayable, key=lambda e: e.destination):
            assert name is not None
            done, again = await self._replay(sinks[name], list(group))
            replayed.extend(done)
            failed.extend(again)
        if failed:
            await self._dlq.write(failed)
        if replayed:
            await self._dlq.mark_replayed(replayed)
        return ReplayReport(len(replayed), tuple(failed), tuple(skipped), tuple(sinks))

    async def _replay(
        self, sink: Sink, entries: list[DeadLetterEvent]
    ) -> tuple[list[str], list[DeadLetterEvent]]:
        """The ids written, and the entries that failed again with their new error."""
        now = self._clock.now()
        by_event: dict[str, list[DeadLetterEvent]] = {}
        for entry in entries:
            assert entry.event is not None
            by_event.setdefault(entry.event.event_id, []).append(entry)
        failed: dict[str, DeadLetterEvent] = {}

        def fail(event_id: str, error: str) -> None:
            for entry in by_event[event_id]:
                failed[entry.dlq_id] = attrs.evolve(
                    entry, error=error, retry_count=entry.retry_count + 1, failed_at=now
                )

        events = [group[0].event for group in by_event.values() if group[0].event is not None]
        schemas: dict[str, TableSchema] = {}
        for name in dict.fromkeys(e.qualified_table for e in events):
            keyspace, _, table = name.partition(".")
            schema = await self._schemas.table(keyspace, table)
            if schema is not None:
                schemas[name] = schema
        try:
            _, blocked = await self._evolution.prepare(sink, schemas, now)
            ready = []
            for event in events:
                schema = schemas.get(event.qualified_table)
                if schema is None:
                    fail(event.event_id, f"no schema is known for {event.qualified_table}")
                elif event.qualified_table in blocked:
                    fail(event.event_id, blocked[event.qualified_table].advice)
                elif not (result := self._validator.validate(event, schema, sink.kind)).valid:
                    fail(event.event_id, result.message)
                else:
                    ready.append(event)

            async def again(letters: list[DeadLetterEvent], _: SinkError) -> None:
                for letter in letters:
                    assert letter.event is not None
                    fail(letter.event.event_id, letter.error)

            await write_splitting_poison(sink, tuple(ready), schemas, None, again, self._clock)
        except Exception as exc:
            # An operator's command: whatever stops this destination's replay is reported
            # on every entry it leaves pending, and the other destinations go on.
            for event_id, group in by_event.items():
                if group[0].dlq_id not in failed:
                    fail(event_id, describe_error(exc))
        done = [entry.dlq_id for entry in entries if entry.dlq_id not in failed]
        return done, list(failed.values())

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


def _blocked_letters(
    events: Sequence[ChangeEvent], blocked: Mapping[str, BlockedTable], now: dt.datetime
) -> list[DeadLetterEvent]:
    letters = []
    for event in events:
        table = blocked.get(event.qualified_table)
        if table is not None:
            letters.append(
                DeadLetterEvent.for_event(
                    event,
                    reason=table.letters,
                    error=table.advice,
                    failed_at=now,
                    destination=table.destination,
                    schema_details={"table": table.table, **table.details},
                )
            )
    return letters


def _destination_then_position(entry: DeadLetterEvent) -> tuple[str, SourcePosition]:
    assert entry.event is not None
    assert entry.destination is not None
    return entry.destination, entry.event.position
