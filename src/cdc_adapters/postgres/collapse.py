"""A batch's events folded into at most one write per row, before any SQL runs.

PostgreSQL cannot touch one row twice in one ``INSERT ... ON CONFLICT``, and writing
each change separately would cost a round of index lookups per change. So changes to
the same row are merged here by the same rules the database applies across batches
(newest timestamp wins per column, a deletion wins a tie), which makes merging first
and writing once equal to writing one by one. Values are converted for the driver on
the way, so a value the column cannot hold rejects its own event and nothing else.

This runs for every event, so it works on a plan compiled once per table and schema
version (:class:`FoldPlan`: each column's position in the row and its value encoder)
and folds each row straight into the list of values the upsert sends (ADR 0004).
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from cdc_adapters.postgres.layout import RowTarget, TableLayout, ValueColumn
from cdc_adapters.postgres.values import UnwritableValueError, list_key_text
from cdc_domain.cql_bytes import serialize
from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    CollectionDelta,
    DeletionScope,
    Operation,
)
from cdc_domain.reconciliation import value_bytes
from cdc_domain.values import value_to_json

__all__ = [
    "DeltaWrite",
    "FoldPlan",
    "RowWrite",
    "TableWrites",
    "Tombstone",
    "collapse",
    "delta_fields",
]


Convert = Callable[[Any], Any]


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


@attrs.frozen(slots=True)
class ColumnSlot:
    """Where a value column sits in a folded row: its value at ``index``, its write time
    (for a collection: the time it was last cleared) at ``index + 1``, a list's cell
    keys at ``index + 2``, its serialized bytes at ``tie`` (see ``ValueColumn.tie``);
    ``encode`` converts a non-null value for the driver."""

    column: ValueColumn
    index: int
    encode: Convert
    collection: bool
    tie: int | None = None

    def beats(self, value: Any, raw: Any, slots: list[Any]) -> bool:
        """Whether a write with the stored value's timestamp replaces it, as Cassandra
        settles a tie: a deletion first, then the greater serialized value."""
        stored = slots[self.index]
        if value is None or stored is None:
            return value is None and stored is not None
        cql_type = self.column.codec.cql_type
        if self.tie is not None:
            return bool(serialize(cql_type, raw) > slots[self.tie])
        return value_bytes(cql_type, value) > value_bytes(cql_type, stored)

    def tie_bytes(self, raw: Any) -> bytes | None:
        return None if raw is None else serialize(self.column.codec.cql_type, raw)


@attrs.frozen(slots=True)
class TargetPlan:
    """A row target's columns by name, and the width of its row type."""

    target: RowTarget
    columns: dict[str, ColumnSlot]
    width: int

    @classmethod
    def of(cls, target: RowTarget) -> TargetPlan:
        columns: dict[str, ColumnSlot] = {}
        index = len(target.keys)
        for column in target.values:
            width = 2 + (column.keys is not None)
            tie = index + width if column.tie is not None else None
            slot = ColumnSlot(column, index, column.codec.encoder(), column.is_collection, tie)
            columns[column.name] = slot
            index += width + (tie is not None)
        width = index + 3  # live, rowdel, writetime
        assert width == len(target.row_attributes())
        return cls(target, columns, width)


@attrs.frozen(slots=True)
class FoldPlan:
    """What folding needs of a table layout, compiled once per schema version."""

    layout: TableLayout
    partition: tuple[tuple[str, Convert], ...]
    clustering: tuple[tuple[str, Convert], ...]
    main: TargetPlan
    static: TargetPlan | None

    @classmethod
    def of(cls, layout: TableLayout) -> FoldPlan:
        return cls(
            layout,
            tuple((k.name, k.codec.encoder()) for k in layout.partition),
            tuple((k.name, k.codec.encoder()) for k in layout.clustering),
            TargetPlan.of(layout.main),
            TargetPlan.of(layout.static) if layout.static is not None else None,
        )


class RowWrite:
    """A row's changes folded into ``slots``, the row as the upsert's row type holds it
    (``RowTarget.row_attributes``: the key, per value column its value, write time and a
    list's cell keys, then the INSERT marker time, the row deletion time and the newest
    write time), so it goes to the driver as it is. ``deltas`` holds element changes
    of non-frozen collections, by column name."""

    __slots__ = ("deltas", "key", "slots")

    def __init__(self, key: tuple[Any, ...], slots: list[Any]) -> None:
        self.key = key
        self.slots = slots
        self.deltas: dict[str, DeltaWrite] = {}

    @property
    def live(self) -> int | None:
        return self.slots[-3]  # type: ignore[no-any-return]

    @property
    def rowdel(self) -> int | None:
        return self.slots[-2]  # type: ignore[no-any-return]

    @property
    def writetime(self) -> int:
        return self.slots[-1]  # type: ignore[no-any-return]


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
        """Rows in one global order, so concurrent writers lock them in the same order:
        the keys' own order, or their text where values do not compare (jsonb keys)."""
        rows = self.static_rows if static else self.rows
        try:
            keys = sorted(rows)
        except TypeError:
            keys = sorted(rows, key=repr)
        return [rows[k] for k in keys]


def _encode_key(columns: tuple[tuple[str, Convert], ...], values: Mapping[str, Any]) -> list[Any]:
    key = []
    for name, encode in columns:
        value = values.get(name)
        if value is None:
            missing = [n for n, _ in columns if values.get(n) is None]
            raise UnwritableValueError(f"key column(s) {missing} missing")
        key.append(encode(value))
    return key


def _identity(*parts: Any) -> str:
    text = json.dumps([value_to_json(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _set_cell(
    slots: list[Any], slot: ColumnSlot, ts: int, value: Any, keys: list[str] | None = None
) -> None:
    """Keep the newer of the row's and this write of a whole value: the newest time
    wins; on a tie a deletion wins a plain column, and an overwrite's elements win a
    bare clear of a collection (equal clearing times)."""
    i = slot.index
    old = slots[i + 1]
    if old is not None and ts <= old:
        if ts < old:
            return
        if slot.collection:
            if value is None or slots[i] is not None:
                return
        elif value is not None or slots[i] is None:
            return
    slots[i] = value
    slots[i + 1] = ts
    if slot.column.keys is not None:
        slots[i + 2] = keys
    if slot.tie is not None:
        slots[slot.tie] = None


class _Collapser:
    def __init__(self, plan: FoldPlan) -> None:
        self.plan = plan
        self.layout = plan.layout
        self.writes = TableWrites(plan.layout)
        self.main_blank = [None] * (plan.main.width - len(plan.main.target.keys) - 1)
        self.static_blank = (
            [None] * (plan.static.width - len(plan.static.target.keys) - 1) if plan.static else []
        )

    def add(self, event: ChangeEvent) -> None:
        plan = self.plan
        ts = event.timestamp_micros
        scope = event.scope
        pk = _encode_key(plan.partition, event.partition_key)
        if scope is DeletionScope.PARTITION or scope is DeletionScope.RANGE:
            self._tombstone(event, tuple(pk))
            return
        if event.static and plan.static is not None:
            target, rows, blank = plan.static, self.writes.static_rows, self.static_blank
            key = tuple(pk)
        else:
            target, rows, blank = plan.main, self.writes.rows, self.main_blank
            if plan.clustering:
                pk += _encode_key(plan.clustering, event.clustering_key)
            key = tuple(pk)
        row = rows.get(key)
        if row is None:
            row = rows[key] = RowWrite(key, [*key, *blank, ts])
        slots = row.slots
        if ts > slots[-1]:
            slots[-1] = ts
        if scope is DeletionScope.ROW:
            if slots[-2] is None or ts > slots[-2]:
                slots[-2] = ts
            return
        if event.operation is Operation.INSERT and (slots[-3] is None or ts > slots[-3]):
            slots[-3] = ts
        if event.counters or event.counter_totals:
            counters = [*event.counters, *event.counter_totals]
            raise UnwritableValueError(
                f"counter column(s) {sorted(set(counters))}: "
                + self.layout.unsupported.get(counters[0], "a mirror cannot apply counters")
            )
        columns = target.columns
        collections = event.collections
        for name, value in event.columns.items():
            if collections and name in collections:
                continue
            slot = columns.get(name)
            if slot is None:
                raise self._unknown(name)
            if slot.collection:
                _set_cell(slots, slot, *self._whole(slot, value, ts))
                continue
            raw = value
            if value is not None:
                value = slot.encode(value)
            # _set_cell inlined: this is the path of nearly every value.
            i = slot.index
            old = slots[i + 1]
            if old is None or ts > old or (ts == old and slot.beats(value, raw, slots)):
                slots[i] = value
                slots[i + 1] = ts
                if slot.tie is not None:
                    slots[slot.tie] = slot.tie_bytes(raw)
        for name in event.deleted_columns:
            _set_cell(slots, self._column(target, name), ts, None)
        for name, delta in collections.items():
            slot = self._column(target, name)
            if not slot.collection:
                raise UnwritableValueError(f"column {name} is not a non-frozen collection")
            if delta.overwritten:
                _set_cell(slots, slot, *self._overwrite(slot.column, delta, ts))
            else:
                self._delta(row, slot.column, delta, ts)

    def _tombstone(self, event: ChangeEvent, pk: tuple[Any, ...]) -> None:
        ts = event.timestamp_micros
        if event.scope is DeletionScope.PARTITION:
            tombstone = Tombstone(_identity("p", pk, ts), pk, ts, partition=True)
        else:
            assert event.clustering_range is not None
            start = self._bound(event.clustering_range.start)
            end = self._bound(event.clustering_range.end)
            identity = _identity(
                "r", pk, ts, start, event.clustering_range.start.inclusive,
                end, event.clustering_range.end.inclusive,
            )  # fmt: skip
            tombstone = Tombstone(
                identity,
                pk,
                ts,
                partition=False,
                start=start,
                start_inclusive=event.clustering_range.start.inclusive,
                end=end,
                end_inclusive=event.clustering_range.end.inclusive,
            )
        self.writes.tombstones[tombstone.identity] = tombstone

    def _bound(self, bound: ClusteringBound) -> tuple[Any, ...]:
        prefix = []
        for column in self.layout.clustering:
            if column.name not in bound.values:
                break
            prefix.append(column.codec.to_db(bound.values[column.name]))
        return tuple(prefix)

    def _unknown(self, name: str) -> UnwritableValueError:
        reason = self.layout.unsupported.get(name, "not a column of the table's schema")
        return UnwritableValueError(f"column {name}: {reason}")

    def _column(self, target: TargetPlan, name: str) -> ColumnSlot:
        slot = target.columns.get(name)
        if slot is None:
            raise self._unknown(name)
        return slot

    def _whole(self, slot: ColumnSlot, value: Any, ts: int) -> tuple[int, Any, list[str] | None]:
        """A collection given whole in ``columns``: an overwrite without element keys."""
        if not value:
            return ts, None, None
        keys = None
        if slot.column.shape == "list":
            keys = [f"{0:016x}{i:032x}" for i in range(len(value))]
        return ts - 1, slot.encode(value), keys

    def _overwrite(
        self, column: ValueColumn, delta: CollectionDelta, ts: int
    ) -> tuple[int, Any, list[str] | None]:
        delta_writes = DeltaWrite()
        self._delta_into(delta_writes, column, delta.elements, (), ts)
        adds = _adds(column, delta_writes)
        if adds is None:
            return ts - 1, None, None
        value, keys = adds
        return ts - 1, value, keys

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
        """Drop element changes that the row's own whole-value writes have cleared."""
        for rows, target in (
            (self.writes.rows, self.plan.main),
            (self.writes.static_rows, self.plan.static),
        ):
            for row in rows.values():
                if not row.deltas:
                    continue
                assert target is not None
                for name in list(row.deltas):
                    cleared = row.slots[target.columns[name].index + 1]
                    kept = (
                        row.deltas[name].after(cleared) if cleared is not None else row.deltas[name]
                    )
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
    events: Iterable[ChangeEvent], plans: Mapping[str, FoldPlan]
) -> tuple[dict[str, TableWrites], dict[str, str]]:
    """Fold events per table (``plans`` by ``keyspace.table``); returns the writes and
    ``{event id: why it was rejected}``."""
    # The fold allocates a few objects per event and makes no reference cycles, so the
    # cyclic collector has nothing to find here; pausing it saves 10-20% at 10k events.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _collapse(events, plans)
    finally:
        if paused:
            gc.enable()


def _collapse(
    events: Iterable[ChangeEvent], plans: Mapping[str, FoldPlan]
) -> tuple[dict[str, TableWrites], dict[str, str]]:
    collapsers: dict[str, _Collapser] = {}
    rejected: dict[str, str] = {}
    keyspace = table = None
    collapser: _Collapser | None = None
    for event in events:
        if collapser is None or event.table != table or event.keyspace != keyspace:
            keyspace, table = event.keyspace, event.table
            name = event.qualified_table
            collapser = collapsers.get(name)
            if collapser is None:
                collapser = collapsers[name] = _Collapser(plans[name])
        try:
            collapser.add(event)
        except UnwritableValueError as exc:
            rejected[event.event_id] = f"{event.qualified_table}: {exc}"
    if rejected:
        return {}, rejected
    return {name: c.result() for name, c in collapsers.items()}, rejected
