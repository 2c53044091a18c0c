"""Change events: what one Cassandra mutation did to one row (or partition, or range).

Cassandra has no before-image and no total order across replicas, so an event carries
exactly what the mutation wrote plus the write timestamp that decides last-write-wins.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "ChangeEvent",
    "ClusteringBound",
    "ClusteringRange",
    "CollectionDelta",
    "CollectionElement",
    "DeletionScope",
    "EventValidationError",
    "Operation",
    "SourcePosition",
]


class EventValidationError(ValueError):
    """An event whose fields contradict each other."""


class Operation(enum.Enum):
    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


class DeletionScope(enum.Enum):
    """What a DELETE removed: the whole partition, one row, a clustering range, or cells."""

    PARTITION = "PARTITION"
    ROW = "ROW"
    RANGE = "RANGE"
    CELL = "CELL"


@attrs.frozen(slots=True)
class SourcePosition:
    """Where an event came from, totally ordered within one source partition (node).

    ``offset`` is the byte offset of the commit log entry in segment ``segment_id``, and
    ``index`` the event's rank among those one entry produced; index -1 marks a section
    boundary, "everything before ``offset``", which a reader reports as how far it got.
    Snapshot rows use ``segment_id`` -1 and name their snapshot, so they sort before any
    commit log event.
    """

    segment_id: int
    offset: int
    index: int = 0
    snapshot: str | None = None

    # The order is (segment_id, offset, index); the snapshot name takes no part in it.
    # Written by hand: a reader compares positions for every event of every batch, and
    # attrs' generated comparisons build their tuples through a generator, 10x slower.
    def __lt__(self, other: SourcePosition) -> bool:
        if other.__class__ is not SourcePosition:
            return NotImplemented
        return _order(self) < _order(other)

    def __le__(self, other: SourcePosition) -> bool:
        if other.__class__ is not SourcePosition:
            return NotImplemented
        return _order(self) <= _order(other)

    def __gt__(self, other: SourcePosition) -> bool:
        if other.__class__ is not SourcePosition:
            return NotImplemented
        return _order(self) > _order(other)

    def __ge__(self, other: SourcePosition) -> bool:
        if other.__class__ is not SourcePosition:
            return NotImplemented
        return _order(self) >= _order(other)

    def __str__(self) -> str:
        base = f"{self.segment_id}:{self.offset}:{self.index}"
        return f"snapshot {self.snapshot} {base}" if self.snapshot else base


def _order(position: SourcePosition) -> tuple[int, int, int]:
    return position.segment_id, position.offset, position.index


@attrs.frozen(slots=True)
class ClusteringBound:
    """One end of a clustering range: a prefix of clustering values, inclusive or not.

    An empty prefix means the range is open on that side.
    """

    values: Mapping[str, Any] = attrs.field(factory=dict)
    inclusive: bool = True


@attrs.frozen(slots=True)
class ClusteringRange:
    """Rows from ``start`` to ``end`` in the table's clustering order.

    ``descending`` names the clustering columns declared ``DESC``: along those, ``start``
    holds the larger value, as Cassandra orders them. :meth:`contains` applies it.
    """

    start: ClusteringBound = attrs.field(factory=ClusteringBound)
    end: ClusteringBound = attrs.field(factory=ClusteringBound)
    descending: tuple[str, ...] = ()

    def contains(self, clustering: Mapping[str, Any]) -> bool:
        """Whether a row with these clustering values lies inside the range."""
        return self._after_start(clustering) and self._before_end(clustering)

    def _compare(self, bound: Mapping[str, Any], row: Mapping[str, Any]) -> int:
        """Where the row sits relative to a bound prefix, in clustering order."""
        for name, value in bound.items():
            mine = row.get(name)
            if mine != value:
                after = mine > value
                return (-1 if after else 1) if name in self.descending else (1 if after else -1)
        return 0

    def _after_start(self, row: Mapping[str, Any]) -> bool:
        if not self.start.values:
            return True
        order = self._compare(self.start.values, row)
        return order > 0 or (order == 0 and self.start.inclusive)

    def _before_end(self, row: Mapping[str, Any]) -> bool:
        if not self.end.values:
            return True
        order = self._compare(self.end.values, row)
        return order < 0 or (order == 0 and self.end.inclusive)


@attrs.frozen(slots=True)
class CollectionElement:
    """One element a mutation wrote into a non-frozen collection or UDT.

    ``key`` is what identifies the element: a list's cell timeuuid, a set's element, a
    map's key or a UDT's field name. ``value`` is None for set elements.
    """

    key: Any
    value: Any
    timestamp_micros: int
    ttl_seconds: int | None = None


@attrs.frozen(slots=True)
class CollectionDelta:
    """What a mutation did to a non-frozen collection, with its meaning kept.

    ``overwritten`` means the whole previous value was replaced (``SET c = [...]``): the
    new value is exactly ``elements``. Otherwise elements were added/set and ``removed``
    lists the keys of elements deleted (``c = c - {...}``, ``DELETE c[k]``).
    """

    kind: str
    overwritten: bool = False
    elements: tuple[CollectionElement, ...] = ()
    removed: tuple[Any, ...] = ()
    removed_timestamp_micros: int | None = None

    def value(self) -> Any:
        """The value of the elements this delta wrote, as the collection's own shape."""
        if self.kind == "list":
            return [e.value for e in sorted(self.elements, key=_list_order)]
        if self.kind == "set":
            return frozenset(e.key for e in self.elements)
        return {e.key: e.value for e in self.elements}


def _list_order(element: CollectionElement) -> tuple[int, int]:
    key = element.key
    if isinstance(key, uuid.UUID) and key.version == 1:
        return (key.time, key.int)
    return (0, key.int if isinstance(key, uuid.UUID) else 0)


@attrs.frozen(slots=True)
class ChangeEvent:
    """One change to one Cassandra row, partition, static row or clustering range.

    ``columns`` holds the simple (and frozen) columns the mutation set, None meaning
    "set to null"; ``deleted_columns`` those it removed by a cell tombstone;
    ``collections`` the element-level effect on non-frozen collections; ``counters``
    the increments of counter columns, when known, and ``counter_totals`` this node's
    shard total after the write (what the commit log holds: an increment is the
    difference from the shard's previous total, unknown to a reader that resumed past
    it). Build events with :meth:`create`, which checks that these agree with each other.
    """

    event_id: str
    operation: Operation
    keyspace: str
    table: str
    partition_key: dict[str, Any]
    clustering_key: dict[str, Any]
    columns: dict[str, Any]
    deleted_columns: tuple[str, ...]
    collections: dict[str, CollectionDelta]
    counters: dict[str, int]
    counter_totals: dict[str, int]
    scope: DeletionScope | None
    clustering_range: ClusteringRange | None
    static: bool
    timestamp_micros: int
    ttl_seconds: int | None
    expires_at: dt.datetime | None
    captured_at: dt.datetime
    position: SourcePosition

    @property
    def qualified_table(self) -> str:
        return f"{self.keyspace}.{self.table}"

    @property
    def is_snapshot(self) -> bool:
        """Read by a snapshot (what a row held, with its real write times), not captured
        from the commit log as it happened."""
        return self.position.snapshot is not None

    @property
    def key(self) -> tuple[str, str, tuple[Any, ...], tuple[Any, ...], bool]:
        """Identity of the row this event touches (a static row is keyed by partition)."""
        clustering = () if self.static else tuple(self.clustering_key.values())
        return (
            self.keyspace,
            self.table,
            tuple(self.partition_key.values()),
            clustering,
            self.static,
        )

    @property
    def touched_columns(self) -> tuple[str, ...]:
        """Every non-key column this event writes, deletes or increments."""
        seen = dict.fromkeys(
            [
                *self.columns,
                *self.deleted_columns,
                *self.collections,
                *self.counters,
                *self.counter_totals,
            ]
        )
        return tuple(seen)

    @classmethod
    def create(
        cls,
        *,
        operation: Operation,
        keyspace: str,
        table: str,
        partition_key: Mapping[str, Any],
        timestamp_micros: int,
        captured_at: dt.datetime,
        position: SourcePosition,
        clustering_key: Mapping[str, Any] | None = None,
        columns: Mapping[str, Any] | None = None,
        deleted_columns: tuple[str, ...] = (),
        collections: Mapping[str, CollectionDelta] | None = None,
        counters: Mapping[str, int] | None = None,
        counter_totals: Mapping[str, int] | None = None,
        scope: DeletionScope | None = None,
        clustering_range: ClusteringRange | None = None,
        static: bool = False,
        ttl_seconds: int | None = None,
        local_expiry: dt.datetime | None = None,
        event_id: str | None = None,
    ) -> ChangeEvent:
        """Validate and build an event.

        The expiry is computed from ``timestamp_micros`` + ``ttl_seconds`` unless the
        source knows Cassandra's own local expiry time, which wins when given.
        """
        if not keyspace or not table or not partition_key:
            _check_names(keyspace, table, partition_key)
        if captured_at.tzinfo is None:
            raise EventValidationError("captured_at must be timezone-aware")
        if (operation is Operation.DELETE) != (scope is not None):
            raise EventValidationError(
                "a DELETE needs a deletion scope"
                if scope is None
                else f"{operation.value} cannot have a deletion scope"
            )
        expires_at = local_expiry
        if ttl_seconds is not None:
            if ttl_seconds <= 0:
                raise EventValidationError(f"ttl_seconds must be positive, got {ttl_seconds}")
            if expires_at is None:
                expires_at = _expiry(timestamp_micros, ttl_seconds)
        if scope is DeletionScope.RANGE and clustering_range is None:
            raise EventValidationError("a RANGE delete needs its clustering range")
        if scope is DeletionScope.CELL and not deleted_columns and not collections:
            raise EventValidationError("a CELL delete needs the columns it deleted")
        return cls(
            event_id or str(uuid.uuid4()),
            operation,
            keyspace,
            table,
            dict(partition_key),
            dict(clustering_key) if clustering_key else {},
            dict(columns) if columns else {},
            tuple(deleted_columns),
            dict(collections) if collections else {},
            dict(counters) if counters else {},
            dict(counter_totals) if counter_totals else {},
            scope,
            clustering_range,
            static,
            timestamp_micros,
            ttl_seconds,
            expires_at,
            captured_at,
            position,
        )


def _check_names(keyspace: str, table: str, partition_key: Mapping[str, Any]) -> None:
    if not keyspace or not table:
        raise EventValidationError("keyspace and table are required")
    if not partition_key:
        raise EventValidationError(f"{keyspace}.{table}: an event needs its partition key")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _expiry(micros: int, ttl_seconds: int) -> dt.datetime | None:
    """Write time + TTL; None when outside what a datetime holds (``USING TIMESTAMP``
    accepts any 64-bit value, so a client can write one centuries away)."""
    try:
        return _EPOCH + dt.timedelta(microseconds=micros, seconds=ttl_seconds)
    except OverflowError:
        return None
