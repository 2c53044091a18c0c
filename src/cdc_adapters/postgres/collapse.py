"""A batch's events folded into at most one write per row, before any SQL runs.

PostgreSQL cannot touch one row twice in one ``INSERT ... ON CONFLICT``, and writing
each change separately would cost a round of index lookups per change. So changes to
the same row are merged here by the same rules the database applies across batches
(newest timestamp wins per column, a deletion wins a tie), which makes merging first
and writing once equal to writing one by one. Values are converted for the driver on
the way, so a value the column cannot hold rejects its own event and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from cdc_adapters.postgres.layout import KeyColumn, RowTarget, TableLayout, ValueColumn
from cdc_adapters.postgres.values import UnwritableValueError, list_key_text
from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    CollectionDelta,
    DeletionScope,
    Operation,
)
from cdc_domain.values import value_to_json

__all__ = [
    "CellWrite",
    "DeltaWrite",
    "RowWrite",
    "TableWrites",
    "Tombstone",
    "collapse",
    "delta_fields",
]


@attrs.define
class CellWrite:
    """A whole-value write. For a collection ``ts`` is the time before which its
    elements are gone (an overwrite at t clears at t - 1, as Cassandra records it)."""

    ts: int
    value: Any
    keys: list[str] | None = None


@attrs.define
class _Element:
    ts: int
    removed: bool
    payload: Any = None
    sort_key: str | None = None


@attrs.define
class DeltaWrite:
    """Element changes to a non-frozen collection, newest per element."""

    elements: dict[Any, _Element] = attrs.field(factory=dict)

    def put(self, identity: Any, element: _Element) -> None:
        current = self.elements.get(identity)
        if (
            current is None
            or element.ts > current.ts
            or (element.ts == current.ts and element.removed and not current.removed)
        ):
            self.elements[identity] = element

    def after(self, cleared: int) -> DeltaWrite:
        return DeltaWrite({k: e for k, e in self.elements.items() if e.ts > cleared})

    @property
    def ts(self) -> int:
        return max(e.ts for e in self.elements.values())


@attrs.define
class RowWrite:
    key: tuple[Any, ...]
    writetime: int
    live: int | None = None
    rowdel: int | None = None
    cells: dict[str, CellWrite] = attrs.field(factory=dict)
    deltas: dict[str, DeltaWrite] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Tombstone:
    """A partition deletion, or a clustering range deletion given by bound prefixes."""

    identity: str
    partition_key: tuple[Any, ...]
    ts: int
    partition: bool
    start: tuple[Any, ...] = ()
    start_inclusive: bool = True
    end: tuple[Any, ...] = ()
    end_inclusive: bool = True


@attrs.define
class TableWrites:
    layout: TableLayout
    rows: dict[tuple[Any, ...], RowWrite] = attrs.field(factory=dict)
    static_rows: dict[tuple[Any, ...], RowWrite] = attrs.field(factory=dict)
    tombstones: dict[str, Tombstone] = attrs.field(factory=dict)

    def sorted_rows(self, static: bool) -> list[RowWrite]:
        """Rows in one global order, so concurrent writers lock them in the same order."""
        rows = self.static_rows if static else self.rows
        return [rows[k] for k in sorted(rows, key=repr)]


def _cell_wins(new: CellWrite, old: CellWrite, collection: bool) -> bool:
    if new.ts != old.ts:
        return new.ts > old.ts
    if collection:
        # Equal clearing times: an overwrite's elements are newer than a bare clear.
        return new.value is not None and old.value is None
    return new.value is None and old.value is not None


def _encode_key(columns: Sequence[KeyColumn], values: Mapping[str, Any]) -> tuple[Any, ...]:
    missing = [c.name for c in columns if c.name not in values or values[c.name] is None]
    if missing:
        raise UnwritableValueError(f"key column(s) {missing} missing")
    return tuple(c.codec.to_db(values[c.name]) for c in columns)


def _identity(*parts: Any) -> str:
    text = json.dumps([value_to_json(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Collapser:
    def __init__(self, layout: TableLayout) -> None:
        self.writes = TableWrites(layout)
        self.layout = layout

    def add(self, event: ChangeEvent) -> None:
        layout = self.layout
        ts = event.timestamp_micros
        pk = _encode_key(layout.partition, event.partition_key)
        if event.scope is DeletionScope.PARTITION:
            self._tombstone(Tombstone(_identity("p", pk, ts), pk, ts, partition=True))
            return
        if event.scope is DeletionScope.RANGE:
            assert event.clustering_range is not None
            start = self._bound(event.clustering_range.start)
            end = self._bound(event.clustering_range.end)
            identity = _identity(
                "r", pk, ts, start, event.clustering_range.start.inclusive,
                end, event.clustering_range.end.inclusive,
            )  # fmt: skip
            self._tombstone(
                Tombstone(
                    identity,
                    pk,
                    ts,
                    partition=False,
                    start=start,
                    start_inclusive=event.clustering_range.start.inclusive,
                    end=end,
                    end_inclusive=event.clustering_range.end.inclusive,
                )
            )
            return
        static = event.static and layout.static is not None
        target = layout.static if static and layout.static is not None else layout.main
        key = pk if target.static else pk + _encode_key(layout.clustering, event.clustering_key)
        rows = self.writes.static_rows if target.static else self.writes.rows
        row = rows.get(key)
        if row is None:
            row = rows[key] = RowWrite(key, ts)
        row.writetime = max(row.writetime, ts)
        if event.scope is DeletionScope.ROW:
            row.rowdel = ts if row.rowdel is None else max(row.rowdel, ts)
            return
        self._cells(target, row, event)

    def _bound(self, bound: ClusteringBound) -> tuple[Any, ...]:
        prefix = []
        for column in self.layout.clustering:
            if column.name not in bound.values:
                break
            prefix.append(column.codec.to_db(bound.values[column.name]))
        return tuple(prefix)

    def _tombstone(self, tombstone: Tombstone) -> None:
        self.writes.tombstones[tombstone.identity] = tombstone

    def _column(self, target: RowTarget, name: str) -> ValueColumn:
        column = target.value(name)
        if column is None:
            reason = self.layout.unsupported.get(name, "not a column of the table's schema")
            raise UnwritableValueError(f"column {name}: {reason}")
        return column

    def _cells(self, target: RowTarget, row: RowWrite, event: ChangeEvent) -> None:
        ts = event.timestamp_micros
        if event.operation is Operation.INSERT:
            row.live = ts if row.live is None else max(row.live, ts)
        counters = [*event.counters, *event.counter_totals]
        if counters:
            raise UnwritableValueError(
                f"counter column(s) {sorted(set(counters))}: "
                + self.layout.unsupported.get(counters[0], "a mirror cannot apply counters")
            )
        for name, value in event.columns.items():
            if name in event.collections:
                continue
            column = self._column(target, name)
            if column.is_collection:
                self._set_cell(row, column, self._whole(column, value, ts))
            else:
                self._set_cell(row, column, CellWrite(ts, column.codec.to_db(value)))
        for name in event.deleted_columns:
            column = self._column(target, name)
            self._set_cell(row, column, CellWrite(ts, None))
        for name, delta in event.collections.items():
            column = self._column(target, name)
            if not column.is_collection:
                raise UnwritableValueError(f"column {name} is not a non-frozen collection")
            if delta.overwritten:
                self._set_cell(row, column, self._overwrite(column, delta, ts))
            else:
                self._delta(row, column, delta, ts)

    def _set_cell(self, row: RowWrite, column: ValueColumn, cell: CellWrite) -> None:
        current = row.cells.get(column.name)
        if current is None or _cell_wins(cell, current, column.is_collection):
            row.cells[column.name] = cell

    def _whole(self, column: ValueColumn, value: Any, ts: int) -> CellWrite:
        """A collection given whole in ``columns``: an overwrite without element keys."""
        if not value:
            return CellWrite(ts, None)
        keys = None
        if column.shape == "list":
            keys = [f"{0:016x}{i:032x}" for i in range(len(value))]
        return CellWrite(ts - 1, column.codec.to_db(value), keys)

    def _overwrite(self, column: ValueColumn, delta: CollectionDelta, ts: int) -> CellWrite:
        delta_writes = DeltaWrite()
        self._delta_into(delta_writes, column, delta.elements, (), ts)
        adds = _adds(column, delta_writes)
        if adds is None:
            return CellWrite(ts - 1, None)
        value, keys = adds
        return CellWrite(ts - 1, value, keys)

    def _delta(self, row: RowWrite, column: ValueColumn, delta: CollectionDelta, ts: int) -> None:
        writes = row.deltas.setdefault(column.name, DeltaWrite())
        removed_ts = delta.removed_timestamp_micros or ts
        self._delta_into(writes, column, delta.elements, delta.removed, removed_ts)

    def _delta_into(
        self,
        writes: DeltaWrite,
        column: ValueColumn,
        elements: Iterable[Any],
        removed: Iterable[Any],
        removed_ts: int,
    ) -> None:
        for element in elements:
            identity, payload, sort_key = _element(column, element.key, element.value)
            writes.put(identity, _Element(element.timestamp_micros, False, payload, sort_key))
        for key in removed:
            identity, _, sort_key = _element(column, key, None)
            writes.put(identity, _Element(removed_ts, True, None, sort_key))

    def result(self) -> TableWrites:
        for rows in (self.writes.rows, self.writes.static_rows):
            for row in rows.values():
                for name in list(row.deltas):
                    cell = row.cells.get(name)
                    kept = row.deltas[name].after(cell.ts) if cell else row.deltas[name]
                    if kept.elements:
                        row.deltas[name] = kept
                    else:
                        del row.deltas[name]
        return self.writes


def _element(column: ValueColumn, key: Any, value: Any) -> tuple[Any, Any, str | None]:
    """(identity within the collection, the stored element, list sort key)."""
    codec = column.codec
    if column.shape == "set":
        encoded = codec.element_to_db(key)
        identity = json.dumps(encoded, sort_keys=True) if codec.is_json else encoded
        return identity, encoded, None
    if column.shape == "map":
        text = codec.map_key(key)
        return text, None if value is None else codec.map_value(value), None
    if column.shape == "udt":
        return key, None if value is None else codec.udt_field(key, value), None
    sort_key = list_key_text(key)
    return sort_key, None if value is None else codec.element_to_db(value), sort_key


def _adds(column: ValueColumn, writes: DeltaWrite) -> tuple[Any, list[str] | None] | None:
    """The value the live elements of ``writes`` make on their own, or None if empty."""
    live = {k: e for k, e in writes.elements.items() if not e.removed}
    if not live:
        return None
    if column.shape == "set":
        return [e.payload for e in live.values()], None
    if column.shape in ("map", "udt"):
        return {k: e.payload for k, e in live.items()}, None
    ordered = sorted(live.values(), key=lambda e: e.sort_key or "")
    return [e.payload for e in ordered], [e.sort_key or "" for e in ordered]


def delta_fields(column: ValueColumn, writes: DeltaWrite) -> tuple[Any, Any, Any, int]:
    """(added, removed, added list keys, newest timestamp) as the delta type holds them."""
    removed: list[Any] = [k for k, e in writes.elements.items() if e.removed]
    if column.shape == "set" and column.codec.is_json:
        removed = [json.loads(k) for k in removed]
    adds = _adds(column, writes)
    added, keys = adds if adds is not None else (None, None)
    return added, removed or None, keys, writes.ts


def collapse(
    events: Iterable[ChangeEvent], layouts: Mapping[str, TableLayout]
) -> tuple[dict[str, TableWrites], dict[str, str]]:
    """Fold events per table; returns the writes and ``{event id: why it was rejected}``."""
    collapsers: dict[str, _Collapser] = {}
    rejected: dict[str, str] = {}
    for event in events:
        layout = layouts[event.qualified_table]
        collapser = collapsers.get(event.qualified_table)
        if collapser is None:
            collapser = collapsers[event.qualified_table] = _Collapser(layout)
        try:
            collapser.add(event)
        except UnwritableValueError as exc:
            rejected[event.event_id] = f"{event.qualified_table}: {exc}"
    if rejected:
        return {}, rejected
    return {name: c.result() for name, c in collapsers.items()}, rejected
