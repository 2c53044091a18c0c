"""The current state that a stream of change events implies, under Cassandra's rules.

This is the reference semantics every mirror destination must reproduce: last write
wins per column (Cassandra's rule, ties included: :mod:`cdc_domain.reconciliation`),
partial updates touch only their columns, a tombstone hides every older write to what it
covers whatever order events arrive in, and collections change element by element.
Applying the same events in any order, any number of times, gives the same state, and
the copies of one write read from several replicas count as that one write (a counter's
increment is added once per :func:`~cdc_domain.identity.write_id`).

Given the table's schema, a row shows only the columns it still has: a dropped column's
cells are not shown, and a row that only they (no row marker, no other cell) kept alive
is not shown either, as Cassandra stops returning it.

Expiring data: a cell (or an INSERT's row marker) written with a TTL is live until its
expiry; ``rows(table, now)`` shows the state as of ``now``, as Cassandra answers a read
then, and without ``now`` ignores expiry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cdc_domain.cql_types import CqlType
from cdc_domain.events import ChangeEvent, ClusteringRange, DeletionScope, Operation
from cdc_domain.identity import write_id
from cdc_domain.reconciliation import CellRank, cell_rank, element_type, value_bytes
from cdc_domain.schema import TableSchema

__all__ = ["MirrorState", "RowKey"]

RowKey = tuple[tuple[Any, ...], tuple[Any, ...]]
_NEVER = -(2**63)


@attrs.define
class _Cell:
    value: Any
    timestamp: int
    deleted: bool
    rank: CellRank
    expires_at: dt.datetime | None = None

    def live(self, floor: int, now: dt.datetime | None) -> bool:
        if self.deleted or self.timestamp <= floor:
            return False
        return now is None or self.expires_at is None or self.expires_at > now


@attrs.define
class _Collection:
    kind: str
    cleared_at: int = _NEVER
    elements: dict[Any, _Cell] = attrs.field(factory=dict)

    def value(self, floor: int, now: dt.datetime | None) -> Any:
        cutoff = max(floor, self.cleared_at)
        live = {k: c for k, c in self.elements.items() if c.live(cutoff, now)}
        if not live:
            return None
        if self.kind == "list":
            return [live[k].value for k in sorted(live, key=_list_key)]
        if self.kind == "set":
            return frozenset(live)
        return {k: c.value for k, c in live.items()}


def _list_key(key: Any) -> Any:
    return (getattr(key, "time", 0), getattr(key, "int", 0)) if hasattr(key, "int") else key


@attrs.define
class _Row:
    marker: dict[str, _Cell] = attrs.field(factory=dict)  # the INSERT's row marker, if any
    deleted_at: int = _NEVER
    cells: dict[str, _Cell] = attrs.field(factory=dict)
    collections: dict[str, _Collection] = attrs.field(factory=dict)
    counters: dict[str, int] = attrs.field(factory=dict)


@attrs.define
class _Partition:
    deleted_at: int = _NEVER
    ranges: list[tuple[ClusteringRange, int]] = attrs.field(factory=list)
    rows: dict[tuple[Any, ...], _Row] = attrs.field(factory=dict)
    static: _Row = attrs.field(factory=_Row)


class MirrorState:
    """State per table; ``rows`` gives what a current-state mirror should show."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[tuple[Any, ...], _Partition]] = {}
        self._counted: set[str] = set()
        self._clustering_names: dict[str, tuple[str, ...]] = {}
        self._schemas: dict[str, TableSchema] = {}

    def apply_all(
        self, events: Iterable[ChangeEvent], schemas: Mapping[str, TableSchema] | None = None
    ) -> None:
        """Apply ``events``; ``schemas`` (by ``keyspace.table``) give the columns' types,
        which settle equal timestamps by value, and which columns a row still has."""
        for event in events:
            self.apply(event, (schemas or {}).get(event.qualified_table))

    def define(self, schema: TableSchema) -> None:
        """Take ``schema`` as the table's current one (a column dropped since is hidden)."""
        self._schemas[schema.qualified_name] = schema

    def apply(self, event: ChangeEvent, schema: TableSchema | None = None) -> None:
        if schema is not None:
            self.define(schema)
        partitions = self._tables.setdefault(event.qualified_table, {})
        partition = partitions.setdefault(tuple(event.partition_key.values()), _Partition())
        if event.clustering_key:
            self._clustering_names[event.qualified_table] = tuple(event.clustering_key)
        ts = event.timestamp_micros
        if event.scope is DeletionScope.PARTITION:
            partition.deleted_at = max(partition.deleted_at, ts)
            return
        if event.scope is DeletionScope.RANGE:
            assert event.clustering_range is not None
            if (event.clustering_range, ts) not in partition.ranges:
                partition.ranges.append((event.clustering_range, ts))
            return
        row = (
            partition.static
            if event.static
            else partition.rows.setdefault(tuple(event.clustering_key.values()), _Row())
        )
        if event.scope is DeletionScope.ROW:
            row.deleted_at = max(row.deleted_at, ts)
            return
        self._apply_cells(row, event, self._schemas.get(event.qualified_table))

    def _apply_cells(self, row: _Row, event: ChangeEvent, schema: TableSchema | None) -> None:
        ts = event.timestamp_micros
        expires = event.expires_at
        if event.operation is Operation.INSERT:
            _set_cell(row.marker, "", None, ts, False, expires, None)
        for name, value in event.columns.items():
            if name in event.collections:
                continue
            cql_type = _type_of(schema, name)
            _set_cell(row.cells, name, value, ts, value is None, expires, cql_type)
            if value is None:
                _clear(row, name, ts)
        for name in event.deleted_columns:
            _set_cell(row.cells, name, None, ts, True, None, None)
            _clear(row, name, ts)
        for name, delta in event.collections.items():
            collection = row.collections.setdefault(name, _Collection(delta.kind))
            collection.kind = delta.kind
            if delta.overwritten:
                # Cassandra marks an overwrite as a deletion just before the new elements.
                collection.cleared_at = max(collection.cleared_at, ts - 1)
            type_of = element_type(_type_of(schema, name), delta.kind)
            for element in delta.elements:
                cql_type = type_of(element.key)
                stamp = element.timestamp_micros
                _set_cell(
                    collection.elements, element.key, element.value, stamp, False, expires, cql_type
                )
            removed_ts = delta.removed_timestamp_micros or ts
            for key in delta.removed:
                _set_cell(collection.elements, key, None, removed_ts, True, None, None)
        if event.counters:
            # Counted once per write, not per event: every replica's copy of a write has
            # its own event_id, and an increment added once per copy would be tripled.
            identity = write_id(event)
            if identity not in self._counted:
                self._counted.add(identity)
                for name, delta_value in event.counters.items():
                    row.counters[name] = row.counters.get(name, 0) + delta_value

    def rows(self, table: str, now: dt.datetime | None = None) -> dict[RowKey, dict[str, Any]]:
        """Visible rows: (partition key values, clustering values) -> column values, as
        of ``now`` when given (cells whose TTL ran out are hidden).

        A static row appears under an empty clustering tuple, as Cassandra shows a
        partition that has only static data.
        """
        result: dict[RowKey, dict[str, Any]] = {}
        names = self._clustering_names.get(table, ())
        schema = self._schemas.get(table)
        dropped = frozenset(c.name for c in schema.dropped_columns) if schema else frozenset()
        for pk, partition in self._tables.get(table, {}).items():
            static = _visible(partition.static, partition.deleted_at, dropped, now)
            for ck, row in partition.rows.items():
                floor = max(
                    partition.deleted_at,
                    row.deleted_at,
                    *(ts for rng, ts in partition.ranges if _covers(rng, names, ck)),
                )
                values = _visible(row, floor, dropped, now)
                if values is not None:
                    result[(pk, ck)] = {**(static or {}), **values}
            if static and not any(key[0] == pk for key in result):
                result[(pk, ())] = static
        return result


def _set_cell(
    cells: dict[Any, _Cell],
    key: Any,
    value: Any,
    ts: int,
    deleted: bool,
    expires_at: dt.datetime | None,
    cql_type: CqlType | None,
) -> None:
    rank = cell_rank(
        ts,
        deleted=deleted,
        expires_at=expires_at,
        value=b"" if deleted else value_bytes(cql_type, value),
    )
    current = cells.get(key)
    if current is None or rank > current.rank:
        cells[key] = _Cell(value, ts, deleted, rank, None if deleted else expires_at)


def _clear(row: _Row, name: str, ts: int) -> None:
    """A column deleted (or set to null) at ``ts``: if it is a non-frozen collection,
    that is a collection tombstone hiding its elements up to ``ts``. It is recorded
    whether or not an element arrived first, so the order of arrival cannot matter; for
    any other column the empty entry shows nothing."""
    collection = row.collections.setdefault(name, _Collection(""))
    collection.cleared_at = max(collection.cleared_at, ts)


def _type_of(schema: TableSchema | None, name: str) -> CqlType | None:
    if schema is None:
        return None
    column = schema.column_or_dropped(name)
    return column.type if column is not None else None


def _visible(
    row: _Row, floor: int, dropped: frozenset[str], now: dt.datetime | None
) -> dict[str, Any] | None:
    values = {
        name: cell.value
        for name, cell in row.cells.items()
        if cell.live(floor, now) and name not in dropped
    }
    for name, collection in row.collections.items():
        value = collection.value(floor, now)
        if value is not None and name not in dropped:
            values[name] = value
    values.update((name, total) for name, total in row.counters.items() if name not in dropped)
    if not values and not any(marker.live(floor, now) for marker in row.marker.values()):
        return None
    return values


def _covers(rng: ClusteringRange, names: tuple[str, ...], clustering: tuple[Any, ...]) -> bool:
    return rng.contains(dict(zip(names, clustering, strict=False)))
