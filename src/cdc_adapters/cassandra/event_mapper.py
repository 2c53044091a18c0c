"""Change events from decoded partition updates, with Cassandra's write semantics.

The commit log records effects, not statements, so some statements that differ in CQL
look the same here. The mapping follows the effects:

* A row with primary-key liveness was written by INSERT; a row with live cells but no
  liveness by UPDATE, which carries only the columns the mutation touched.
* A row with no live data at all (only cell tombstones and/or whole-collection deletions)
  is a DELETE with scope CELL: ``DELETE a FROM t`` and ``UPDATE t SET a = null`` write
  the same tombstone. Next to live data, a tombstone means "set to null" (column present
  with None), e.g. ``INSERT ... VALUES (..., null)``.
* Partition deletion, row deletion and range tombstones are DELETEs of scope PARTITION,
  ROW and RANGE; a row deletion that comes with new cells (a batch deleting and rewriting
  a row) gives a DELETE followed by the write.
* Non-frozen collections and UDTs give a :class:`CollectionDelta`: ``overwritten`` when the
  column was deleted before its new cells were written (``SET c = ...``), in which case
  ``columns`` also holds the complete new value; element tombstones are ``removed``.
* The static row is its own event with ``static=True`` and no clustering key.
* Counter cells hold this node's running total, not the increment (checked on a live
  5.0 node), so :class:`CounterTracker` turns totals into the increments ``counters``
  carries; an increment it cannot know is left out (and counted in
  ``EventMapper.unknown_increments``) rather than guessed. See its docstring.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from cdc_adapters.cassandra.codec import counter_shards
from cdc_adapters.cassandra.mutation import (
    ComplexColumn,
    DeletionTime,
    PartitionUpdate,
    RangeTombstoneMarker,
    Row,
)
from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    ClusteringRange,
    CollectionDelta,
    CollectionElement,
    DeletionScope,
    EventValidationError,
    Operation,
    SourcePosition,
)
from cdc_domain.schema import ClusteringOrder, TableSchema
from cdc_domain.values import UdtValue

__all__ = ["CounterTracker", "EventMapper"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Read once: an enum member costs a class attribute lookup through EnumType per access.
_INSERT = Operation.INSERT
_UPDATE = Operation.UPDATE


def _expiry(local_expiration_time: int | None) -> dt.datetime | None:
    if local_expiration_time is None:
        return None
    try:
        return _EPOCH + dt.timedelta(0, local_expiration_time)
    except OverflowError:
        return None


def _expires_at(timestamp: int, ttl: int, local_expiration_time: int | None) -> dt.datetime | None:
    """When a write with a TTL expires: Cassandra's local expiration time if it is known
    (and a datetime can hold it), else write time + TTL, as ``ChangeEvent.create`` does."""
    expires = _expiry(local_expiration_time)
    if expires is not None:
        return expires
    try:
        return _EPOCH + dt.timedelta(0, ttl, timestamp)
    except OverflowError:
        return None


class CounterTracker:
    """Turns the running totals counter cells hold into increments, alike on every read.

    A counter cell in the commit log is the writing node's shard: a clock that grows with
    every update (it follows the write time in micros) and the shard's new total. The
    increment is that total minus the total at the shard's previous clock. The tracker
    keeps the last ``history`` readings of each shard, so an entry read again (by another
    destination, or a retry) gives the same increment.

    Without an earlier reading the previous total is unknown. When ``first_sight_is_new``
    the shard is taken as created since CDC started and its total is the increment (exact
    for such counters, too high for older ones: the behaviour of a pipeline reading the
    log from its start). Otherwise — a pipeline resuming from a committed position, whose
    memory of earlier totals is gone — the increment is None, never a guess. Memory is
    bounded by ``capacity`` shards, least recently used dropped first.
    """

    def __init__(self, capacity: int = 1_000_000, history: int = 64) -> None:
        self._capacity = capacity
        self._history = history
        self._shards: OrderedDict[tuple[Any, ...], tuple[list[int], list[int]]] = OrderedDict()

    def increment(
        self, cell_key: tuple[Any, ...], raw_totals: bytes, *, first_sight_is_new: bool = True
    ) -> int | None:
        delta: int | None = 0
        for counter_id, clock, total in counter_shards(raw_totals):
            previous = self._record((*cell_key, counter_id), clock, total)
            if previous is None:
                previous = 0 if first_sight_is_new else None
            if previous is None or delta is None:
                delta = None
            else:
                delta += total - previous
        return delta

    def _record(self, key: tuple[Any, ...], clock: int, total: int) -> int | None:
        """Store the reading; return the total at the clock before it, if known."""
        readings = self._shards.get(key)
        if readings is None:
            readings = self._shards[key] = ([], [])
            while len(self._shards) > self._capacity:
                self._shards.popitem(last=False)
        else:
            self._shards.move_to_end(key)
        clocks, totals = readings
        index = bisect.bisect_left(clocks, clock)
        previous = totals[index - 1] if index else None
        if index == len(clocks) or clocks[index] != clock:
            clocks.insert(index, clock)
            totals.insert(index, total)
            if len(clocks) > self._history:
                del clocks[0], totals[0]
        return previous


class _TableNames:
    """Names the mapper needs per table schema, worked out once: ``TableSchema`` computes
    its clustering columns anew on every access."""

    __slots__ = ("clustering", "counters", "schema")

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.clustering = tuple(c.name for c in schema.clustering)
        self.counters = frozenset(c.name for c in schema.columns if c.type.name == "counter")


class EventMapper:
    """Maps the partition updates of one commit log entry to change events.

    ``event_prefix`` makes event ids unique across nodes (segment ids are only unique
    per node); ids are derived from the position, so re-reading a segment yields the same
    ids and destinations can deduplicate.
    """

    def __init__(self, *, event_prefix: str = "", counters: CounterTracker | None = None):
        self._prefix = event_prefix
        self._counters = counters or CounterTracker()
        self._names: dict[int, _TableNames] = {}
        self.unknown_increments = 0

    def _table_names(self, table: TableSchema) -> _TableNames:
        names = self._names.get(id(table))
        if names is None or names.schema is not table:
            if len(self._names) > 10_000:
                self._names.clear()
            names = self._names[id(table)] = _TableNames(table)
        return names

    def map_entry(
        self,
        updates: Iterable[PartitionUpdate],
        segment_id: int,
        offset: int,
        captured_at: dt.datetime,
        *,
        first_sight_is_new: bool = True,
    ) -> list[ChangeEvent]:
        """The events of one entry; ``first_sight_is_new`` as for :class:`CounterTracker`.

        The updates are consumed: their rows' ``values`` dicts become the events' columns.
        """
        if captured_at.tzinfo is None:
            raise EventValidationError("captured_at must be timezone-aware")
        events: list[ChangeEvent] = []
        context: _EntryContext | None = None  # only needed past the INSERT fast path
        for update in updates:
            if not update.plain:
                if context is None:
                    context = _EntryContext(
                        self, segment_id, offset, captured_at, events, first_sight_is_new
                    )
                context.partition(update)
                continue
            # INSERTs only: one event per row, nothing to work out. Nearly every event is
            # one of these, so each is built right here, as _EntryContext.emit_write would
            # build it (see there why without ChangeEvent.create): that call and the
            # context object it needs add a tenth to the mapping's time.
            table = update.table
            for row in update.rows:
                assert row.liveness is not None  # plain rows have it
                timestamp, ttl, expiry = row.liveness
                index = len(events)
                ttl = ttl or None
                events.append(
                    ChangeEvent(
                        f"{self._prefix}{segment_id}:{offset}:{index}",
                        _INSERT,
                        table.keyspace,
                        table.table,
                        update.partition_key.copy(),
                        self._clustering(table, row) if row.clustering else {},
                        row.values,
                        (),
                        {},
                        {},
                        {},
                        None,
                        None,
                        row.is_static,
                        timestamp,
                        ttl,
                        None if ttl is None else _expires_at(timestamp, ttl, expiry),
                        captured_at,
                        SourcePosition(segment_id, offset, index),
                    )
                )
        return events

    def _clustering(self, table: TableSchema, row: Row) -> dict[str, Any]:
        """The row's clustering key by column name (a new dict)."""
        if not row.clustering:
            return {}
        return dict(zip(self._table_names(table).clustering, row.clustering, strict=True))


class _EntryContext:
    """The running state while mapping one entry: position index and output list."""

    __slots__ = ("captured_at", "events", "first_sight_is_new", "mapper", "offset", "segment_id")

    def __init__(
        self,
        mapper: EventMapper,
        segment_id: int,
        offset: int,
        captured_at: dt.datetime,
        events: list[ChangeEvent],
        first_sight_is_new: bool,
    ) -> None:
        self.first_sight_is_new = first_sight_is_new
        self.mapper = mapper
        self.segment_id = segment_id
        self.offset = offset
        self.captured_at = captured_at
        self.events = events

    def emit(self, table: TableSchema, partition_key: dict[str, Any], **fields: Any) -> None:
        """A validated event (``ChangeEvent.create``): for the deletes, which are rarer."""
        index = len(self.events)
        self.events.append(
            ChangeEvent.create(
                keyspace=table.keyspace,
                table=table.table,
                partition_key=partition_key,
                captured_at=self.captured_at,
                position=SourcePosition(self.segment_id, self.offset, index),
                event_id=f"{self.mapper._prefix}{self.segment_id}:{self.offset}:{index}",
                **fields,
            )
        )

    def emit_write(
        self,
        update: PartitionUpdate,
        row: Row,
        columns: dict[str, Any],
        timestamp: int,
        ttl: int | None,
        expiry: int | None,
        collections: dict[str, CollectionDelta] | None = None,
        counters: dict[str, int] | None = None,
        counter_totals: dict[str, int] | None = None,
    ) -> None:
        """The INSERT or UPDATE event of a row, built without ``ChangeEvent.create``.

        Writes are nearly every event, and ``create`` adds half to their cost. What it checks
        holds here by construction: names and key come from the schema (a key has at
        least one column), ``captured_at`` was checked by ``map_entry``, a write has no
        deletion scope, a TTL of 0 means none, and every dict is new and owned by the
        event (``columns`` is the row's, consumed).
        """
        table = update.table
        index = len(self.events)
        ttl = ttl or None
        self.events.append(
            ChangeEvent(
                f"{self.mapper._prefix}{self.segment_id}:{self.offset}:{index}",
                _INSERT if row.liveness is not None else _UPDATE,
                table.keyspace,
                table.table,
                update.partition_key.copy(),
                self.mapper._clustering(table, row) if row.clustering else {},  # saves a call
                columns,
                (),
                collections or {},
                counters or {},
                counter_totals or {},
                None,
                None,
                row.is_static,
                timestamp,
                ttl,
                None if ttl is None else _expires_at(timestamp, ttl, expiry),
                self.captured_at,
                SourcePosition(self.segment_id, self.offset, index),
            )
        )

    def partition(self, update: PartitionUpdate) -> None:
        table = update.table
        key = update.partition_key
        if update.partition_deletion is not None:
            self.emit(
                table,
                key,
                operation=Operation.DELETE,
                scope=DeletionScope.PARTITION,
                timestamp_micros=update.partition_deletion.timestamp,
            )
        if update.markers:
            self.ranges(update, update.markers)
        if update.static_row is not None:
            self.row(update, update.static_row)
        for row in update.rows:
            self.row(update, row)

    def ranges(self, update: PartitionUpdate, markers: list[RangeTombstoneMarker]) -> None:
        names = self.mapper._table_names(update.table).clustering
        descending = tuple(
            c.name for c in update.table.clustering if c.clustering_order is ClusteringOrder.DESC
        )
        start: ClusteringBound | None = None
        opened: DeletionTime | None = None
        for marker in markers:
            bound_values = dict(zip(names, marker.values, strict=False))
            if marker.end_deletion is not None and start is not None:
                end = ClusteringBound(bound_values, marker.end_inclusive)
                self.emit(
                    update.table,
                    update.partition_key,
                    operation=Operation.DELETE,
                    scope=DeletionScope.RANGE,
                    clustering_range=ClusteringRange(start, end, descending),
                    timestamp_micros=(opened or marker.end_deletion).timestamp,
                )
                start = None
            if marker.start_deletion is not None:
                start = ClusteringBound(bound_values, marker.start_inclusive)
                opened = marker.start_deletion

    def row(self, update: PartitionUpdate, row: Row) -> None:
        liveness = row.liveness
        if row.deletion is None and liveness is not None and not row.cells and not row.complex:
            # An INSERT of plain values: the common case, with nothing to work out.
            self.emit_write(
                update,
                row,
                row.values,
                liveness.timestamp,
                liveness.ttl,
                liveness.local_expiration_time,
            )
            return
        if row.deletion is not None:
            self.emit(
                update.table,
                update.partition_key,
                clustering_key=self.mapper._clustering(update.table, row),
                operation=Operation.DELETE,
                scope=DeletionScope.ROW,
                static=row.is_static,
                timestamp_micros=row.deletion.timestamp,
            )
            if not row.values and not row.cells and not row.complex and liveness is None:
                return
        self.mixed_row(update, row)

    def mixed_row(self, update: PartitionUpdate, row: Row) -> None:
        """A row with more than plain values: tombstones, own timestamps or TTLs,
        counters, collections."""
        table = update.table
        counter_columns = self.mapper._table_names(table).counters
        liveness = row.liveness
        timestamp = liveness.timestamp if liveness is not None else None
        ttl = liveness.ttl if liveness is not None else None
        expiry = liveness.local_expiration_time if liveness is not None else None
        max_timestamp = -(1 << 63)
        # Plain values exist only in rows with liveness, whose timestamp and TTL are theirs.
        live = liveness is not None
        columns = row.values
        deleted: list[str] = []
        counters: dict[str, int] = {}
        counter_totals: dict[str, int] = {}
        for name, value, cell_ts, cell_ttl, cell_ldt, tombstone in row.cells:
            if cell_ts > max_timestamp:
                max_timestamp = cell_ts
            if tombstone:
                deleted.append(name)
                continue
            live = True
            if cell_ttl is not None and ttl is None:
                ttl, expiry = cell_ttl, cell_ldt
            if name in counter_columns:
                counter_totals[name] = sum(total for _, _, total in counter_shards(value))
                increment = self.counter_increment(update, row, name, value)
                if increment is None:
                    self.mapper.unknown_increments += 1
                else:
                    counters[name] = increment
            else:
                columns[name] = value
        collections: dict[str, CollectionDelta] = {}
        for column in row.complex:
            delta, column_ts, column_live, column_ttl = _collection_delta(column)
            if column_ts > max_timestamp:
                max_timestamp = column_ts
            if column_ttl is not None and ttl is None:
                ttl, expiry = column_ttl
            if column_live:
                live = True
                collections[column.name] = delta
                if delta.overwritten:
                    columns[column.name] = _full_value(column, delta, table)
            elif delta.removed:
                collections[column.name] = delta
            else:
                deleted.append(column.name)
        if timestamp is None:
            timestamp = max_timestamp
        if live:
            for name in deleted:
                columns[name] = None
            self.emit_write(
                update, row, columns, timestamp, ttl, expiry, collections, counters, counter_totals
            )
        elif deleted or collections:
            self.emit(
                table,
                update.partition_key,
                clustering_key=self.mapper._clustering(table, row),
                operation=Operation.DELETE,
                scope=DeletionScope.CELL,
                deleted_columns=tuple(deleted),
                collections=collections,
                static=row.is_static,
                timestamp_micros=timestamp,
            )

    def counter_increment(
        self, update: PartitionUpdate, row: Row, name: str, raw: bytes
    ) -> int | None:
        key = (update.table.table_id, *update.partition_key.values(), *row.clustering, name)
        return self.mapper._counters.increment(key, raw, first_sight_is_new=self.first_sight_is_new)


def _collection_delta(
    column: ComplexColumn,
) -> tuple[CollectionDelta, int, bool, tuple[int, int | None] | None]:
    """The delta, its latest timestamp, whether it wrote anything, and a (ttl, expiry)."""
    elements = []
    removed = []
    removed_ts: int | None = None
    latest = column.deletion.timestamp if column.deletion is not None else -(1 << 63)
    ttl: tuple[int, int | None] | None = None
    for key, value, timestamp, cell_ttl, cell_ldt, tombstone in column.cells:
        latest = max(latest, timestamp)
        if tombstone:
            removed.append(key)
            removed_ts = timestamp if removed_ts is None else max(removed_ts, timestamp)
            continue
        elements.append(CollectionElement(key, value, timestamp, cell_ttl))
        if cell_ttl is not None and ttl is None:
            ttl = (cell_ttl, cell_ldt)
    if column.deletion is not None:
        removed_ts = column.deletion.timestamp
    delta = CollectionDelta(
        kind=column.kind,
        overwritten=column.deletion is not None,
        elements=tuple(elements),
        removed=tuple(removed),
        removed_timestamp_micros=removed_ts,
    )
    return delta, latest, bool(elements), ttl


def _full_value(column: ComplexColumn, delta: CollectionDelta, table: TableSchema) -> Any:
    if not delta.elements:
        return None
    if column.kind != "udt":
        return delta.value()
    definition = table.column_or_dropped(column.name)
    names = definition.type.field_names if definition is not None else ()
    written = {e.key: e.value for e in delta.elements}
    return UdtValue(tuple((name, written.get(name)) for name in names))
