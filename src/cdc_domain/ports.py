"""The ports: what the core needs from the outside world, as small async protocols.

Adapters implement them; the use case depends on nothing else. Every port has an
``aclose`` so the composition root can release connections in one place.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from cdc_domain.dead_letters import DeadLetterEvent, FailureReason
from cdc_domain.destinations import DestinationKind
from cdc_domain.events import ChangeEvent, SourcePosition
from cdc_domain.health import HealthReport
from cdc_domain.offsets import Checkpoint, OffsetRecord
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import AppliedChange, SchemaChange
from cdc_domain.snapshot_rows import SnapshotRow
from cdc_domain.tokens import RingRange, TokenRange

__all__ = [
    "ChangeBatch",
    "ChangeSource",
    "Clock",
    "CopiesReporting",
    "DeadLetterQueue",
    "HealthChecked",
    "OffsetCommittingSink",
    "OffsetStore",
    "ReadinessChecked",
    "SchemaHistory",
    "SchemaSource",
    "Sink",
    "SinkBatch",
    "SnapshotSource",
    "SourceStorage",
    "StorageReporting",
]


@attrs.frozen(slots=True)
class ChangeBatch:
    """Events read after some position, and how far the source got.

    ``end`` may lie past the last event (filtered or undecodable entries still move the
    reader on); it is None when nothing new was durable. ``failures`` are entries that
    could not become events, already shaped as dead letters. ``schemas`` holds, per
    ``keyspace.table``, the schema the events were decoded with: a source ends a batch
    where a table's schema changes, so one batch never mixes two versions of a table.
    """

    events: tuple[ChangeEvent, ...] = ()
    failures: tuple[DeadLetterEvent, ...] = ()
    end: SourcePosition | None = None
    schemas: Mapping[str, TableSchema] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class SinkBatch:
    """What a sink writes at once: events, the schemas they were decoded with, and the
    checkpoint to record with them where the sink can do so atomically.

    ``checkpoint`` is None when the events do not move the destination's position (a
    dead letter replay re-drives old events); the sink then writes no offset.
    """

    events: tuple[ChangeEvent, ...]
    schemas: Mapping[str, TableSchema]
    checkpoint: Checkpoint | None


@runtime_checkable
class ChangeSource(Protocol):
    """A stream of changes from one source partition (one Cassandra node).

    ``read`` is positional: each destination reads from its own committed position,
    so a lagging destination re-reads what the others are done with.
    """

    @property
    def partition_id(self) -> str: ...

    async def read(self, after: SourcePosition | None, max_events: int) -> ChangeBatch: ...

    async def acknowledge(self, position: SourcePosition) -> None:
        """Every destination has committed up to ``position``; the source may free it."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SnapshotSource(Protocol):
    """Tables as they are now, read by token range with every cell's write time and TTL
    (the initial snapshot and re-syncs; see :mod:`cdc_domain.snapshot`)."""

    async def ring(self, keyspace: str) -> builtins.list[RingRange]:
        """The ring's ranges, covering every token once, each marked with whether this
        agent's node is its primary replica (for ``keyspace``'s replication)."""
        ...

    async def estimate(self, keyspace: str, table: str) -> int | None:
        """How many partitions the table holds, as the node estimates them (None:
        unknown); for progress and for how finely to split the ring."""
        ...

    def read(
        self, schema: TableSchema, token_range: TokenRange
    ) -> AsyncIterator[list[SnapshotRow]]:
        """The range's rows, a page at a time; a static row once per partition, before
        its partition's rows. Raises :class:`~cdc_domain.errors.TransientError` when the
        cluster does not answer."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SchemaSource(Protocol):
    async def table(self, keyspace: str, table: str) -> TableSchema | None: ...

    async def tables(self) -> Mapping[tuple[str, str], TableSchema]: ...

    async def refresh(self) -> builtins.list[SchemaChange]:
        """Reload the schemas and return what changed since the previous load."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """A destination. ``write`` must be idempotent: the same batch twice changes nothing.

    When ``commits_offsets`` is true the sink records ``batch.checkpoint`` in the same
    transaction as the data; otherwise the caller commits it after ``write`` returns.
    """

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> DestinationKind: ...

    @property
    def commits_offsets(self) -> bool: ...

    async def write(self, batch: SinkBatch) -> None: ...

    async def apply_schema_change(self, change: SchemaChange) -> None: ...

    async def health(self) -> HealthReport: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class OffsetCommittingSink(Sink, Protocol):
    """A sink whose ``commits_offsets`` is true: it records each batch's checkpoint in
    the batch's own transaction, so its offsets are read back from its own database."""

    def offset_store(self, clock: Clock) -> OffsetStore: ...


@runtime_checkable
class CopiesReporting(Protocol):
    """A sink that keeps one record per write (:func:`~cdc_domain.identity.write_id`)
    and so recognises a write it already holds: another node's copy of it, or the same
    copy delivered again. It writes such a copy nowhere and counts it, so the copies
    the replicas of a cluster produce can be seen being absorbed."""

    def take_absorbed_copies(self) -> Mapping[str, int]:
        """Copies absorbed per ``keyspace.table`` by the writes committed since the
        previous call (which this one resets)."""
        ...


@runtime_checkable
class ReadinessChecked(Protocol):
    """An adapter with a start-up check: a misconfigured destination (TimescaleDB
    without its extension, say) stops start-up with its reason instead of failing every
    batch. Raises a permanent :class:`~cdc_domain.errors.CdcError` saying what to fix,
    or :class:`~cdc_domain.errors.TransientError` when the database cannot be reached."""

    async def check_ready(self) -> None: ...


@runtime_checkable
class HealthChecked(Protocol):
    """An adapter that can say how its database is: every sink, and sources that can."""

    async def health(self) -> HealthReport: ...


@attrs.frozen(slots=True)
class SourceStorage:
    """Space the source keeps for changes no destination has freed yet (Cassandra:
    ``cdc_raw``), against the limit past which the database refuses writes."""

    location: str
    files: int
    used_bytes: int
    total_bytes: int

    @property
    def ratio(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes else 0.0


@runtime_checkable
class StorageReporting(Protocol):
    """A source that holds changes in limited space until they are acknowledged."""

    async def storage(self) -> SourceStorage:
        """Blocking I/O is the adapter's business; raises OSError when unreadable."""
        ...


@runtime_checkable
class OffsetStore(Protocol):
    async def load(self, destination: str, partition_id: str) -> OffsetRecord | None: ...

    async def commit(self, destination: str, checkpoint: Checkpoint) -> None:
        """Move the destination to the checkpoint, adding its events to the running total."""
        ...

    async def list(self) -> builtins.list[OffsetRecord]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class DeadLetterQueue(Protocol):
    async def write(self, entries: Sequence[DeadLetterEvent]) -> None:
        """Store entries; an entry whose ``dlq_id`` is already stored replaces it."""
        ...

    async def list(
        self,
        *,
        destination: str | None = None,
        reason: FailureReason | None = None,
        include_replayed: bool = False,
        limit: int | None = None,
    ) -> builtins.list[DeadLetterEvent]: ...

    async def take_for_replay(
        self,
        *,
        destination: str | None = None,
        reason: FailureReason | None = None,
        limit: int | None = None,
    ) -> builtins.list[DeadLetterEvent]:
        """Pending entries to re-drive; they stay pending until ``mark_replayed``."""
        ...

    async def mark_replayed(self, dlq_ids: Sequence[str]) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SchemaHistory(Protocol):
    """The schema each destination holds per table, and every change applied to it.

    What a destination holds is what decides the next change to apply; keeping it
    outside the destination makes that decision the same for every kind of sink.
    """

    async def applied(self, destination: str) -> dict[str, TableSchema]:
        """The latest schema applied to ``destination``, per ``keyspace.table``."""
        ...

    async def record(
        self, destination: str, change: SchemaChange, applied_at: dt.datetime
    ) -> None: ...

    async def changes(self, destination: str | None = None) -> builtins.list[AppliedChange]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""
        ...
