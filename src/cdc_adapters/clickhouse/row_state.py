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

import datetime as dt
import json
import math
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

import attrs

from cdc_domain.cql_types import CqlType
from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    ClusteringRange,
    DeletionScope,
    Operation,
)
from cdc_domain.reconciliation import element_type, value_bytes
from cdc_domain.values import value_from_json, value_to_json

__all__ = ["NEVER", "Cell", "PartitionState", "RowState", "cell_json", "dumps", "value_json"]

NEVER = -(2**63)


class _Cell:
    """One collection element and its write timestamp."""

    __slots__ = ("deleted", "timestamp", "value")

    def __init__(self, value: Any, timestamp: int, deleted: bool = False) -> None:
        self.value = value
        self.timestamp = timestamp
        self.deleted = deleted

    def loses_to(self, timestamp: int, deleted: bool, value: Any, cql_type: CqlType | None) -> bool:
        return _wins(timestamp, deleted, value, self.timestamp, self.deleted, self.value, cql_type)


def _wins(
    ts: int,
    deleted: bool,
    value: Any,
    current_ts: int,
    current_deleted: bool,
    current_value: Any,
    cql_type: CqlType | None,
) -> bool:
    """Whether a version of a cell beats the stored one, by Cassandra's rule: the newer
    timestamp, then a deletion, then the greater serialized value."""
    if ts != current_ts:
        return ts > current_ts
    if deleted or current_deleted:
        return deleted and not current_deleted
    return value_bytes(cql_type, value) > value_bytes(cql_type, current_value)


# A simple cell is a plain tuple, (timestamp, deleted, value, state entry, TSV field): the
# last two memoise its ``_cdc_state`` entry and its column field, so a cell is encoded
# once however many versions of its row repeat it (once both are there, the value is
# dropped: the entry holds it). Tuples of plain values are untracked by the garbage
# collector, which a cache of a million cell objects is not.
Cell = tuple[int, bool, Any, str | None, str | None]
TS: Final = 0
DELETED: Final = 1
VALUE: Final = 2


def _set_cell(
    cells: dict[Any, _Cell],
    key: Any,
    value: Any,
    ts: int,
    deleted: bool,
    cql_type: CqlType | None = None,
) -> bool:
    current = cells.get(key)
    if current is None or current.loses_to(ts, deleted, value, cql_type):
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


@attrs.define(eq=False)
class RowState:
    """One row's (or one partition's static row's) cells with their write timestamps.

    ``changed`` says whether an applied event changed anything since the state was
    loaded or last written (a replayed or losing event does not); ``fresh`` marks a key
    with no row written yet (so the table's key filter must learn it); ``key_json`` and
    ``key_fields`` memoise the row's key as the state's ``"k"`` entry and as TSV fields.
    """

    liveness: int = NEVER
    deleted_at: int = NEVER
    op: tuple[int, str] = (NEVER, Operation.UPDATE.value)
    cells: dict[str, Cell] = attrs.field(factory=dict)
    collections: dict[str, _Collection] = attrs.field(factory=dict)
    changed: bool = False
    fresh: bool = False
    key_json: str | None = None
    key_fields: str | None = None

    def apply(self, event: ChangeEvent, types: Mapping[str, CqlType] | None = None) -> None:
        """Merge one event's effect on this row (row deletes and cell changes);
        ``types`` are the columns' types, which settle equal timestamps by value."""
        ts = event.timestamp_micros
        changed = False
        if ts >= self.op[0]:
            op = (ts, event.operation._value_)
            if op != self.op:
                self.op = op
                changed = True
        scope = event.scope
        if scope is _ROW or scope is _PARTITION:
            if ts > self.deleted_at:
                self.deleted_at = ts
                changed = True
            self.changed = self.changed or changed
            return
        if event.operation is _INSERT and ts > self.liveness:
            self.liveness = ts
            changed = True
        cells = self.cells
        deltas = event.collections
        for name, value in event.columns.items():
            if deltas and name in deltas:
                continue
            deleted = value is None
            current = cells.get(name)
            if (
                current is None
                or ts > current[0]
                or (
                    ts == current[0]
                    and _wins(
                        ts,
                        deleted,
                        value,
                        ts,
                        current[1],
                        _value(name, current),
                        (types or {}).get(name),
                    )
                )
            ):
                cells[name] = (ts, deleted, value, None, None)
                changed = True
        for name in event.deleted_columns:
            current = cells.get(name)
            if current is None or ts > current[0] or (ts == current[0] and not current[1]):
                cells[name] = (ts, True, None, None, None)
                changed = True
            collection = self.collections.get(name)
            if collection is not None and ts > collection.cleared_at:
                collection.cleared_at = ts
                changed = True
        if deltas:
            changed = self._apply_collections(event, ts, types or {}) or changed
        self.changed = self.changed or changed

    def _apply_collections(self, event: ChangeEvent, ts: int, types: Mapping[str, CqlType]) -> bool:
        changed = False
        for name, delta in event.collections.items():
            collection = self.collections.get(name)
            if collection is None:
                collection = self.collections[name] = _Collection(delta.kind)
                changed = True
            if delta.overwritten and ts - 1 > collection.cleared_at:
                # Cassandra marks an overwrite as a deletion just before the new elements.
                collection.cleared_at = ts - 1
                changed = True
            type_of = element_type(types.get(name), delta.kind)
            for element in delta.elements:
                changed = (
                    _set_cell(
                        collection.elements,
                        element.key,
                        element.value,
                        element.timestamp_micros,
                        False,
                        type_of(element.key),
                    )
                    or changed
                )
            removed_ts = delta.removed_timestamp_micros or ts
            for key in delta.removed:
                changed = (
                    _set_cell(collection.elements, key, None, removed_ts, deleted=True) or changed
                )
        return changed

    def visible(self, floor: int) -> dict[str, Any] | None:
        """Column values a reader sees under ``floor``; None when the row is gone."""
        floor = max(floor, self.deleted_at)
        values = {
            name: _value(name, cell)
            for name, cell in self.cells.items()
            if cell[TS] > floor and not cell[DELETED]
        }
        for name, collection in self.collections.items():
            value = collection.value(floor)
            if value is not None:
                values[name] = value
        if not values and self.liveness <= floor:
            return None
        return values

    def gone(self, floor: int, dropped: Collection[str] = ()) -> bool:
        """Whether the row is not there for a reader: no live row marker and no live
        cell, cells of ``dropped`` columns not counting (Cassandra no longer returns a
        row only they kept alive)."""
        floor = max(floor, self.deleted_at)
        if self.liveness > floor:
            return False
        for name, cell in self.cells.items():
            if cell[0] > floor and not cell[1] and name not in dropped:
                return False
        return all(c.value(floor) is None for n, c in self.collections.items() if n not in dropped)

    def compact(self, floor: int) -> None:
        """Forget what ``floor`` (or the row's own tombstone) hides for good."""
        floor = max(floor, self.deleted_at)
        if floor == NEVER:
            return
        cells = self.cells
        if any(c[TS] <= floor for c in cells.values()):
            self.cells = {n: c for n, c in cells.items() if c[TS] > floor}
        if self.collections:
            for collection in self.collections.values():
                collection.compact(floor)
            self.collections = {
                n: c for n, c in self.collections.items() if c.elements or c.cleared_at > floor
            }
        if self.liveness <= floor:
            self.liveness = NEVER

    def version(self, floor: int) -> int:
        """The newest write timestamp this row reflects: ReplacingMergeTree's version."""
        newest = max(0, self.liveness, self.deleted_at, floor, self.op[0])
        for cell in self.cells.values():
            if cell[0] > newest:
                newest = cell[0]
        for collection in self.collections.values():
            newest = max(newest, collection.cleared_at)
            for element in collection.elements.values():
                if element.timestamp > newest:
                    newest = element.timestamp
        return newest

    def state_json(self) -> str:
        """``to_json()`` as compact JSON text, built from each cell's memoised entry."""
        entries = []
        cells = self.cells
        for name, cell in cells.items():
            entry = cell[3]
            if entry is None:
                entry = cell_json(name, cell)
                cells[name] = (cell[0], cell[1], cell[2], entry, cell[4])
            entries.append(entry)
        collections = "{}"
        if self.collections:
            collections = dumps(self._collections_json())
        liveness, deleted_at, (op_ts, op) = self.liveness, self.deleted_at, self.op
        return (
            f'{{"l":{liveness},"d":{deleted_at},"o":[{op_ts},"{op}"],'
            f'"s":{{{",".join(entries)}}},"x":{collections}}}'
        )

    def to_json(self) -> Any:
        return {
            "l": self.liveness,
            "d": self.deleted_at,
            "o": list(self.op),
            "s": {
                n: [c[TS], c[DELETED], value_to_json(_value(n, c))] for n, c in self.cells.items()
            },
            "x": self._collections_json(),
        }

    def _collections_json(self) -> Any:
        return {
            n: [
                c.kind,
                c.cleared_at,
                [
                    [value_to_json(k), e.timestamp, e.deleted, value_to_json(e.value)]
                    for k, e in c.elements.items()
                ],
            ]
            for n, c in self.collections.items()
        }

    @classmethod
    def from_json(cls, data: Any) -> RowState:
        return cls(
            liveness=data["l"],
            deleted_at=data["d"],
            op=(data["o"][0], data["o"][1]),
            cells={
                n: (ts, d, value_from_json(v), None, None) for n, (ts, d, v) in data["s"].items()
            },
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


_ROW, _PARTITION, _INSERT = DeletionScope.ROW, DeletionScope.PARTITION, Operation.INSERT
_SAFE_INT = 2**53
_NAMES: dict[str, str] = {}
# json.dumps(text, ensure_ascii=False) without the call overhead
_quote: Callable[[str], str] = json.encoder.encode_basestring


def _value(name: str, cell: Cell) -> Any:
    """A cell's value; one whose encodings are both memoised keeps it in its entry only."""
    if cell[VALUE] is None and not cell[DELETED] and cell[3] is not None:
        return value_from_json(json.loads("{" + cell[3] + "}")[name][2])
    return cell[VALUE]


def cell_json(name: str, cell: Cell) -> str:
    """``"name":[timestamp,deleted,value]``, the value in the domain's lossless JSON."""
    quoted = _NAMES.get(name)
    if quoted is None:
        quoted = _NAMES[name] = _quote(name)
    deleted = "true" if cell[DELETED] else "false"
    return f"{quoted}:[{cell[TS]},{deleted},{value_json(cell[VALUE])}]"


def value_json(value: Any) -> str:
    """``dumps(value_to_json(value))``, with the common scalar types done directly."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if value is None:
        return "null"
    if kind is int and -_SAFE_INT <= value <= _SAFE_INT:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is uuid.UUID:
        return f'{{"$uuid":"{value}"}}'
    if kind is dt.datetime and value.tzinfo is not None:
        return f'{{"$timestamp":"{value.astimezone(dt.UTC).isoformat()}"}}'
    return dumps(value_to_json(value))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@attrs.define
class PartitionState:
    """Partition-wide tombstones and the static row of one partition."""

    deleted_at: int = NEVER
    ranges: list[tuple[ClusteringRange, int]] = attrs.field(factory=list)
    static: RowState = attrs.field(factory=RowState)

    def apply(self, event: ChangeEvent, types: Mapping[str, CqlType] | None = None) -> None:
        ts = event.timestamp_micros
        if event.scope is DeletionScope.PARTITION:
            self.deleted_at = max(self.deleted_at, ts)
        elif event.scope is DeletionScope.RANGE:
            assert event.clustering_range is not None
            # Stored without ``descending``: the direction is the table's (see floor), and
            # states written before events carried it must compare equal.
            rng = event.clustering_range
            if rng.descending:
                rng = ClusteringRange(rng.start, rng.end)
            if (rng, ts) not in self.ranges:
                self.ranges.append((rng, ts))
        elif event.static:
            self.static.apply(event, types)

    def floor(self, clustering: Mapping[str, Any], descending: Collection[str] = ()) -> int:
        """The newest partition or range tombstone covering a row with these clustering
        values; ``descending`` names the table's DESC clustering columns, along which a
        range's start holds the larger value."""
        covering = (ts for rng, ts in self.ranges if _covers(rng, clustering, descending))
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


def _compare_prefix(
    bound: Mapping[str, Any], row: Mapping[str, Any], descending: Collection[str]
) -> int:
    """Where the row sits relative to a bound prefix, in the table's clustering order."""
    for name, value in bound.items():
        mine = row.get(name)
        if mine != value:
            after = mine > value
            if name in descending:
                after = not after
            return 1 if after else -1
    return 0


def _covers(rng: ClusteringRange, row: Mapping[str, Any], descending: Collection[str]) -> bool:
    if rng.start.values:
        order = _compare_prefix(rng.start.values, row, descending)
        if not (order > 0 or (order == 0 and rng.start.inclusive)):
            return False
    if rng.end.values:
        order = _compare_prefix(rng.end.values, row, descending)
        if not (order < 0 or (order == 0 and rng.end.inclusive)):
            return False
    return True
