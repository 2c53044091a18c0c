"""The current state that a stream of change events implies, under Cassandra's rules.

This is the reference semantics every mirror destination must reproduce: last write
wins per column (by write timestamp, a deletion winning a tie, as in Cassandra), partial
updates touch only their columns, a tombstone hides every older write to what it
covers whatever order events arrive in, and collections change element by element.
Applying the same events in any order, any number of times, gives the same state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from cdc_domain.events import ChangeEvent, ClusteringRange, DeletionScope, Operation

__all__ = ["MirrorState", "RowKey"]

RowKey = tuple[tuple[Any, ...], tuple[Any, ...]]
_NEVER = -(2**63)


@attrs.define
class _Cell:
    value: Any
    timestamp: int
    deleted: bool = False

    def loses_to(self, timestamp: int, deleted: bool) -> bool:
        if timestamp != self.timestamp:
            return timestamp > self.timestamp
        return deleted and not self.deleted


@attrs.define
class _Collection:
    kind: str
    cleared_at: int = _NEVER
    elements: dict[Any, _Cell] = attrs.field(factory=dict)

    def value(self, floor: int) -> Any:
        live = {
            k: c
            for k, c in self.elements.items()
            if not c.deleted and c.timestamp > max(floor, self.cleared_at)
        }
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
    liveness: int = _NEVER
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

    def apply_all(self, events: Iterable[ChangeEvent]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: ChangeEvent) -> None:
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
        self._apply_cells(row, event)

    def _apply_cells(self, row: _Row, event: ChangeEvent) -> None:
        ts = event.timestamp_micros
        if event.operation is Operation.INSERT:
            row.liveness = max(row.liveness, ts)
        for name, value in event.columns.items():
            if name in event.collections:
                continue
            _set_cell(row.cells, name, value, ts, deleted=value is None)
        for name in event.deleted_columns:
            _set_cell(row.cells, name, None, ts, deleted=True)
            collection = row.collections.get(name)
            if collection is not None:
                collection.cleared_at = max(collection.cleared_at, ts)
        for name, delta in event.collections.items():
            collection = row.collections.setdefault(name, _Collection(delta.kind))
            if delta.overwritten:
                # Cassandra marks an overwrite as a deletion just before the new elements.
                collection.cleared_at = max(collection.cleared_at, ts - 1)
            for element in delta.elements:
                _set_cell(collection.elements, element.key, element.value, element.timestamp_micros)
            removed_ts = delta.removed_timestamp_micros or ts
            for key in delta.removed:
                _set_cell(collection.elements, key, None, removed_ts, deleted=True)
        if event.event_id not in self._counted:
            for name, delta_value in event.counters.items():
                row.counters[name] = row.counters.get(name, 0) + delta_value
            if event.counters:
                self._counted.add(event.event_id)

    def rows(self, table: str) -> dict[RowKey, dict[str, Any]]:
        """Visible rows: (partition key values, clustering values) -> column values.

        A static row appears under an empty clustering tuple, as Cassandra shows a
        partition that has only static data.
        """
        result: dict[RowKey, dict[str, Any]] = {}
        names = self._clustering_names.get(table, ())
        for pk, partition in self._tables.get(table, {}).items():
            static = _visible(partition.static, partition.deleted_at)
            for ck, row in partition.rows.items():
                floor = max(
                    partition.deleted_at,
                    row.deleted_at,
                    *(ts for rng, ts in partition.ranges if _covers(rng, names, ck)),
                )
                values = _visible(row, floor)
                if values is not None:
                    result[(pk, ck)] = {**(static or {}), **values}
            if static and not any(key[0] == pk for key in result):
                result[(pk, ())] = static
        return result


def _set_cell(
    cells: dict[Any, _Cell], key: Any, value: Any, ts: int, deleted: bool = False
) -> None:
    current = cells.get(key)
    if current is None or current.loses_to(ts, deleted):
        cells[key] = _Cell(value, ts, deleted)


def _visible(row: _Row, floor: int) -> dict[str, Any] | None:
    values = {
        name: cell.value
        for name, cell in row.cells.items()
        if cell.timestamp > floor and not cell.deleted
    }
    for name, collection in row.collections.items():
        value = collection.value(floor)
        if value is not None:
            values[name] = value
    values.update(row.counters)
    if not values and row.liveness <= floor:
        return None
    return values


def _covers(rng: ClusteringRange, names: tuple[str, ...], clustering: tuple[Any, ...]) -> bool:
    return rng.contains(dict(zip(names, clustering, strict=False)))
