"""Cell-level last-write-wins state of one row, kept in the row itself as ``_cdc_state``.

ClickHouse's ReplacingMergeTree keeps the newest version of a whole row, so a partial
update, a late older write or a delete arriving before the write it hides must be
resolved before the row is inserted. Each row carries what :class:`MirrorState` keeps
for it (per-cell write timestamps, cell and row tombstones, the row's liveness, each
collection element with its timestamp) as compact JSON; merging events into it is the
same rule set as ``cdc_domain.mirror``, and the typed columns are derived from it.

Partition-wide state (partition and range tombstones, static cells) lives in
:class:`PartitionState`, kept per partition beside the table. Anything a floor (the
newest tombstone covering a cell) hides is dropped from the state: floors only grow,
so it can never become visible again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    ClusteringRange,
    DeletionScope,
    Operation,
)
from cdc_domain.values import value_from_json, value_to_json

__all__ = ["NEVER", "PartitionState", "RowState", "dumps"]

NEVER = -(2**63)


@attrs.define
class _Cell:
    value: Any
    timestamp: int
    deleted: bool = False

    def loses_to(self, timestamp: int, deleted: bool) -> bool:
        if timestamp != self.timestamp:
            return timestamp > self.timestamp
        return deleted and not self.deleted


def _set_cell(cells: dict[Any, _Cell], key: Any, value: Any, ts: int, deleted: bool) -> bool:
    current = cells.get(key)
    if current is None or current.loses_to(ts, deleted):
        cells[key] = _Cell(value, ts, deleted)
        return True
    return False


@attrs.define
class _Collection:
    kind: str
    cleared_at: int = NEVER
    elements: dict[Any, _Cell] = attrs.field(factory=dict)

    def value(self, floor: int) -> Any:
        cutoff = max(floor, self.cleared_at)
        live = {k: c for k, c in self.elements.items() if not c.deleted and c.timestamp > cutoff}
        if not live:
            return None
        if self.kind == "list":
            return [live[k].value for k in sorted(live, key=_list_key)]
        if self.kind == "set":
            return frozenset(live)
        return {k: c.value for k, c in live.items()}

    def compact(self, floor: int) -> None:
        cutoff = max(floor, self.cleared_at)
        self.elements = {k: c for k, c in self.elements.items() if c.timestamp > cutoff}


def _list_key(key: Any) -> Any:
    return (getattr(key, "time", 0), getattr(key, "int", 0)) if hasattr(key, "int") else key


@attrs.define
class RowState:
    """One row's (or one partition's static row's) cells with their write timestamps."""

    liveness: int = NEVER
    deleted_at: int = NEVER
    op: tuple[int, str] = (NEVER, Operation.UPDATE.value)
    cells: dict[str, _Cell] = attrs.field(factory=dict)
    collections: dict[str, _Collection] = attrs.field(factory=dict)

    def apply(self, event: ChangeEvent) -> None:
        """Merge one event's effect on this row (row deletes and cell changes)."""
        ts = event.timestamp_micros
        if ts >= self.op[0]:
            self.op = (ts, event.operation.value)
        if event.scope in (DeletionScope.ROW, DeletionScope.PARTITION):
            self.deleted_at = max(self.deleted_at, ts)
            return
        if event.operation is Operation.INSERT:
            self.liveness = max(self.liveness, ts)
        for name, value in event.columns.items():
            if name not in event.collections:
                _set_cell(self.cells, name, value, ts, deleted=value is None)
        for name in event.deleted_columns:
            _set_cell(self.cells, name, None, ts, deleted=True)
            collection = self.collections.get(name)
            if collection is not None:
                collection.cleared_at = max(collection.cleared_at, ts)
        for name, delta in event.collections.items():
            collection = self.collections.setdefault(name, _Collection(delta.kind))
            if delta.overwritten:
                # Cassandra marks an overwrite as a deletion just before the new elements.
                collection.cleared_at = max(collection.cleared_at, ts - 1)
            for element in delta.elements:
                _set_cell(
                    collection.elements, element.key, element.value, element.timestamp_micros, False
                )
            removed_ts = delta.removed_timestamp_micros or ts
            for key in delta.removed:
                _set_cell(collection.elements, key, None, removed_ts, deleted=True)

    def visible(self, floor: int) -> dict[str, Any] | None:
        """Column values a reader sees under ``floor``; None when the row is gone."""
        floor = max(floor, self.deleted_at)
        values = {
            name: cell.value
            for name, cell in self.cells.items()
            if cell.timestamp > floor and not cell.deleted
        }
        for name, collection in self.collections.items():
            value = collection.value(floor)
            if value is not None:
                values[name] = value
        if not values and self.liveness <= floor:
            return None
        return values

    def compact(self, floor: int) -> None:
        """Forget what ``floor`` (or the row's own tombstone) hides for good."""
        floor = max(floor, self.deleted_at)
        self.cells = {n: c for n, c in self.cells.items() if c.timestamp > floor}
        for collection in self.collections.values():
            collection.compact(floor)
        self.collections = {
            n: c for n, c in self.collections.items() if c.elements or c.cleared_at > floor
        }
        if self.liveness <= floor:
            self.liveness = NEVER

    def version(self, floor: int) -> int:
        """The newest write timestamp this row reflects: ReplacingMergeTree's version."""
        stamps = [self.liveness, self.deleted_at, floor, self.op[0]]
        stamps += [c.timestamp for c in self.cells.values()]
        for collection in self.collections.values():
            stamps.append(collection.cleared_at)
            stamps += [e.timestamp for e in collection.elements.values()]
        return max(0, *stamps)

    def to_json(self) -> Any:
        return {
            "l": self.liveness,
            "d": self.deleted_at,
            "o": list(self.op),
            "s": {
                n: [c.timestamp, c.deleted, value_to_json(c.value)] for n, c in self.cells.items()
            },
            "x": {
                n: [
                    c.kind,
                    c.cleared_at,
                    [
                        [value_to_json(k), e.timestamp, e.deleted, value_to_json(e.value)]
                        for k, e in c.elements.items()
                    ],
                ]
                for n, c in self.collections.items()
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> RowState:
        return cls(
            liveness=data["l"],
            deleted_at=data["d"],
            op=(data["o"][0], data["o"][1]),
            cells={n: _Cell(value_from_json(v), ts, d) for n, (ts, d, v) in data["s"].items()},
            collections={
                n: _Collection(
                    kind,
                    cleared,
                    {
                        _hashable(value_from_json(k)): _Cell(value_from_json(v), ts, d)
                        for k, ts, d, v in els
                    },
                )
                for n, (kind, cleared, els) in data["x"].items()
            },
        )


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@attrs.define
class PartitionState:
    """Partition-wide tombstones and the static row of one partition."""

    deleted_at: int = NEVER
    ranges: list[tuple[ClusteringRange, int]] = attrs.field(factory=list)
    static: RowState = attrs.field(factory=RowState)

    def apply(self, event: ChangeEvent) -> None:
        ts = event.timestamp_micros
        if event.scope is DeletionScope.PARTITION:
            self.deleted_at = max(self.deleted_at, ts)
        elif event.scope is DeletionScope.RANGE:
            assert event.clustering_range is not None
            if (event.clustering_range, ts) not in self.ranges:
                self.ranges.append((event.clustering_range, ts))
        elif event.static:
            self.static.apply(event)

    def floor(self, clustering: Mapping[str, Any]) -> int:
        """The newest partition or range tombstone covering a row with these clustering values."""
        covering = (ts for rng, ts in self.ranges if _covers(rng, clustering))
        return max(self.deleted_at, *covering, NEVER)

    def to_json(self) -> Any:
        return {
            "d": self.deleted_at,
            "r": [[_range_to_json(rng), ts] for rng, ts in self.ranges],
            "st": self.static.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> PartitionState:
        return cls(
            deleted_at=data["d"],
            ranges=[(_range_from_json(rng), ts) for rng, ts in data["r"]],
            static=RowState.from_json(data["st"]),
        )


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _bound_to_json(bound: ClusteringBound) -> Any:
    return [{k: value_to_json(v) for k, v in bound.values.items()}, bound.inclusive]


def _range_to_json(rng: ClusteringRange) -> Any:
    return [_bound_to_json(rng.start), _bound_to_json(rng.end)]


def _range_from_json(data: Any) -> ClusteringRange:
    (start, start_inclusive), (end, end_inclusive) = data
    return ClusteringRange(
        ClusteringBound({k: value_from_json(v) for k, v in start.items()}, start_inclusive),
        ClusteringBound({k: value_from_json(v) for k, v in end.items()}, end_inclusive),
    )


def _compare_prefix(bound: Mapping[str, Any], row: Mapping[str, Any]) -> int:
    for name, value in bound.items():
        if row.get(name) != value:
            return -1 if row.get(name) < value else 1
    return 0


def _covers(rng: ClusteringRange, row: Mapping[str, Any]) -> bool:
    if rng.start.values:
        order = _compare_prefix(rng.start.values, row)
        if not (order > 0 or (order == 0 and rng.start.inclusive)):
            return False
    if rng.end.values:
        order = _compare_prefix(rng.end.values, row)
        if not (order < 0 or (order == 0 and rng.end.inclusive)):
            return False
    return True
