"""A batch's events grouped by row, and each row folded into one write just before the
statement that sends it.

PostgreSQL cannot touch one row twice in one ``INSERT ... ON CONFLICT``, and writing
each change separately would cost a round of index lookups per change. So a batch is
first grouped by row (:func:`collapse`: only the row's key is read), and each row is
built when its chunk is about to be sent (:meth:`TableWrites.chunks`), which lets the
sink build chunk N+1 while the server applies chunk N.

A row touched by one event of the batch is built straight from it: there is nothing
to compare. A row touched by several is folded by Cassandra's own rule for two
versions of one cell (:func:`cdc_domain.reconciliation.cell_rank`, the rule the SQL
applies between batches), cell by cell and, in a non-frozen collection, element by
element; folding first and writing once is therefore the same as writing one by one.
Values are converted for the driver on the way, so a value the column cannot hold
rejects its own event (:class:`RowsRejected`) and nothing else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs

from cdc_adapters.postgres.layout import RowTarget, TableLayout, ValueColumn
from cdc_adapters.postgres.values import (
    UnwritableValueError,
    canonical_json,
    canonical_text,
    list_key_text,
    to_json,
)
from cdc_domain.cql_bytes import serialize
from cdc_domain.cql_types import CqlType
from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    CollectionDelta,
    DeletionScope,
    Operation,
)
from cdc_domain.reconciliation import CellRank, cell_rank, element_type, value_bytes
from cdc_domain.values import UdtValue, value_to_json

__all__ = [
    "FoldPlan",
    "RowsRejected",
    "TableWrites",
    "Tombstone",
    "collapse",
]

Convert = Callable[[Any], Any]
Element = tuple[str, int, int, int | None, bytes, Any]
"""An element version as the element type holds it (layout.ELEMENT_FIELDS)."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_LIVE, _EXPIRING, _TOMBSTONE = 0, 1, 2
_ORDERED_KEYS = frozenset(
    {
        "ascii", "text", "varchar", "tinyint", "smallint", "int", "bigint", "varint",
        "decimal", "float", "double", "boolean", "uuid", "timeuuid", "timestamp", "date",
        "time", "blob",
    }
)  # fmt: skip
"""Key types whose Python values sort among themselves: rows of such tables are locked
in their keys' order, those of others in the order of the keys' text."""


class RowsRejected(Exception):
    """Events whose values their columns cannot hold, by id, with the reason."""

    def __init__(self, rejected: Mapping[str, str]) -> None:
        super().__init__("; ".join(sorted(set(rejected.values()))[:5]))
        self.rejected = dict(rejected)


def _micros(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


@attrs.frozen(slots=True)
class ColumnSlot:
    """Where a value column sits in a folded row. A cell: its value at ``index``, then
    its timestamp, its expiry and, with ``tie``, its serialized bytes. A collection: its
    own tombstone's time at ``index``, then its element versions. ``encode`` converts
    a non-null value for the driver."""

    column: ValueColumn
    index: int
    encode: Convert
    collection: bool
    tie: bool
    cql_type: CqlType


Cell = tuple[int, Convert, bool, CqlType]
"""A plain (not collection) column's slot unpacked for the per-event path: its index,
encoder, whether it has a tie column, and its type."""


@attrs.frozen(slots=True)
class TargetPlan:
    """A row target's columns by name, and a row's fields after its key. ``cells``
    repeats the plain columns' slots as tuples: the one-event path unpacks one tuple
    per value instead of reading four attributes."""

    target: RowTarget
    columns: dict[str, ColumnSlot]
    blank: tuple[None, ...]
    cells: dict[str, Cell]

    @classmethod
    def of(cls, target: RowTarget) -> TargetPlan:
        columns: dict[str, ColumnSlot] = {}
        index = len(target.keys)
        for column in target.values:
            tie = column.tie is not None
            columns[column.name] = ColumnSlot(
                column,
                index,
                column.codec.encoder(),
                column.is_collection,
                tie,
                column.codec.cql_type,
            )
            index += 2 if column.is_collection else 3 + tie
        width = index + 4  # marker time and expiry, row deletion, newest write
        assert width == len(target.row_attributes())
        cells = {
            name: (slot.index, slot.encode, slot.tie, slot.cql_type)
            for name, slot in columns.items()
            if not slot.collection
        }
        return cls(target, columns, (None,) * (width - len(target.keys)), cells)


KeyOf = Callable[[Mapping[str, Any]], tuple[Any, ...]]


def _getter(names: tuple[str, ...]) -> KeyOf:
    """The values of ``names`` in a key mapping, as a tuple (KeyError if one is absent)."""
    if len(names) == 1:
        name = names[0]
        return lambda values: (values[name],)
    get = operator.itemgetter(*names)
    return lambda values: tuple(get(values))


@attrs.frozen(slots=True)
class FoldPlan:
    """What folding needs of a table layout, compiled once per schema version: how to
    read a row's key from an event and encode it, and each target's columns."""

    layout: TableLayout
    partition: tuple[tuple[str, Convert], ...]
    clustering: tuple[tuple[str, Convert], ...]
    main: TargetPlan
    static: TargetPlan | None
    ordered: bool
    partition_of: KeyOf
    clustering_of: KeyOf | None
    encode_key: Callable[[tuple[Any, ...]], list[Any]]

    @classmethod
    def of(cls, layout: TableLayout) -> FoldPlan:
        keys = (*layout.partition, *layout.clustering)
        clustering = tuple(k.name for k in layout.clustering)
        return cls(
            layout,
            tuple((k.name, k.codec.encoder()) for k in layout.partition),
            tuple((k.name, k.codec.encoder()) for k in layout.clustering),
            TargetPlan.of(layout.main),
            TargetPlan.of(layout.static) if layout.static is not None else None,
            all(k.codec.cql_type.name in _ORDERED_KEYS for k in keys),
            _getter(tuple(k.name for k in layout.partition)),
            _getter(clustering) if clustering else None,
            _key_encoder(tuple(k.codec.encoder() for k in keys)),
        )


def _key_encoder(encoders: tuple[Convert, ...]) -> Callable[[tuple[Any, ...]], list[Any]]:
    """A row key's values encoded for the driver, as the list its row starts with; a
    static row's key is the partition's, shorter than ``encoders``."""
    if len(encoders) == 1:
        (encode,) = encoders
        return lambda key: [encode(key[0])]
    return lambda key: [encode(value) for encode, value in zip(encoders, key, strict=False)]


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


Group = ChangeEvent | list[ChangeEvent]
"""The events of one row: one (the common case), or a list."""


@attrs.define
class TableWrites:
    """One table's share of a batch: its partition and range deletions, and its row
    events grouped by row (``rows`` for the table, ``static_rows`` for the static
    companion), keyed by the rows' key values."""

    plan: FoldPlan
    rows: dict[Any, Group] = attrs.field(factory=dict)
    static_rows: dict[Any, Group] = attrs.field(factory=dict)
    tombstones: dict[str, Tombstone] = attrs.field(factory=dict)

    def has_rows(self, static: bool) -> bool:
        return bool(self.static_rows if static else self.rows)

    def chunks(
        self, static: bool, size: int, first: int | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows as the upsert's row type holds them, ``size`` at a time (the first
        chunk ``first`` rows, when given), in one order every writer shares (so
        concurrent writers lock rows in the same order), each chunk built when it is
        asked for. Raises :class:`RowsRejected`."""
        groups = self.static_rows if static else self.rows
        target = self.plan.static if static else self.plan.main
        assert target is not None
        keys = sorted(groups) if self.plan.ordered else sorted(groups, key=repr)
        build = self._build
        start, end = 0, min(size, first or size)
        while start < len(keys):
            yield [build(target, key, groups[key]) for key in keys[start:end]]
            start, end = end, end + size

    def rejections(self) -> dict[str, str]:
        """Every event of the table whose values cannot be written, with the reason."""
        rejected: dict[str, str] = {}
        for target, groups in ((self.plan.main, self.rows), (self.plan.static, self.static_rows)):
            for key, group in groups.items():
                assert target is not None
                try:
                    self._build(target, key, group)
                except RowsRejected as exc:
                    rejected.update(exc.rejected)
        return rejected

    def _build(self, target: TargetPlan, key: Any, group: Group) -> tuple[Any, ...]:
        """A row's fields (a tuple: asyncpg would read a list in a list as a second
        dimension of the array)."""
        try:
            row = self._encoded_key(target, key, group)
        except UnwritableValueError as exc:
            events = [group] if isinstance(group, ChangeEvent) else group
            raise RowsRejected({e.event_id: f"{e.qualified_table}: {exc}" for e in events}) from exc
        if isinstance(group, ChangeEvent):
            try:
                return tuple(_single(self.plan, target, row, group))
            except UnwritableValueError as exc:
                raise RowsRejected({group.event_id: f"{group.qualified_table}: {exc}"}) from exc
        fold = _RowFold(self.plan, target, row)
        rejected: dict[str, str] = {}
        for event in group:
            try:
                fold.add(event)
            except UnwritableValueError as exc:
                rejected[event.event_id] = f"{event.qualified_table}: {exc}"
        if rejected:
            raise RowsRejected(rejected)
        return tuple(fold.slots())

    def _encoded_key(self, target: TargetPlan, key: Any, group: Group) -> list[Any]:
        if not isinstance(key, tuple):  # the text of a key Python cannot hash
            event = group if isinstance(group, ChangeEvent) else group[0]
            key = self.plan.partition_of(event.partition_key)
            if not target.target.static and self.plan.clustering_of is not None:
                key += self.plan.clustering_of(event.clustering_key)
        return self.plan.encode_key(key)


def _unknown(plan: FoldPlan, name: str) -> UnwritableValueError:
    reason = plan.layout.unsupported.get(name, "not a column of the table's schema")
    return UnwritableValueError(f"column {name}: {reason}")


def _no_counters(plan: FoldPlan, event: ChangeEvent) -> None:
    if event.counters or event.counter_totals:
        counters = [*event.counters, *event.counter_totals]
        raise UnwritableValueError(
            f"counter column(s) {sorted(set(counters))}: "
            + plan.layout.unsupported.get(counters[0], "a mirror cannot apply counters")
        )


def _single(plan: FoldPlan, target: TargetPlan, key: list[Any], event: ChangeEvent) -> list[Any]:
    """The row one event makes on its own (``key``: the row's encoded key, extended in
    place): its fields, with nothing to compare. This runs for nearly every event, so
    plain cells take the unpacked ``cells`` and collections are looked at only when the
    event has any."""
    slots = key
    slots += target.blank
    ts = event.timestamp_micros
    slots[-1] = ts
    if event.scope is DeletionScope.ROW:
        slots[-2] = ts
        return slots
    expires = event.expires_at
    exp = None if expires is None else _micros(expires)
    if event.operation is Operation.INSERT:
        slots[-4] = ts
        slots[-3] = exp
    if event.counters or event.counter_totals:
        _no_counters(plan, event)
    cells = target.cells
    collections = event.collections
    folds: dict[str, _CollectionFold] | None = None
    for name, value in event.columns.items():
        cell = cells.get(name)
        if cell is None:
            slot = _slot(plan, target, name)
            if name not in collections:
                folds = folds or {}
                _whole(slot, folds.setdefault(name, _CollectionFold()), value, ts, expires, exp)
            continue
        i, encode, tie, cql_type = cell
        slots[i + 1] = ts
        if value is not None:
            slots[i] = encode(value)
            slots[i + 2] = exp
            if tie:
                slots[i + 3] = serialize(cql_type, value)
    for name in event.deleted_columns:
        cell = cells.get(name)
        if cell is None:
            _slot(plan, target, name)
            folds = folds or {}
            folds.setdefault(name, _CollectionFold()).clear(ts)
            continue
        i, _, tie, _ = cell
        slots[i : i + 3 + tie] = (None, ts, None, None)[: 3 + tie]
    if collections:
        folds = folds or {}
        for name, delta in collections.items():
            slot = _slot(plan, target, name)
            _delta(slot, folds.setdefault(name, _CollectionFold()), delta, ts, expires, exp)
    if folds:
        columns = target.columns
        for name, fold in folds.items():
            i = columns[name].index
            slots[i], slots[i + 1] = fold.cleared, fold.elements()
    return slots


def _slot(plan: FoldPlan, target: TargetPlan, name: str) -> ColumnSlot:
    slot = target.columns.get(name)
    if slot is None:
        raise _unknown(plan, name)
    return slot


class _Version:
    """One version of a cell: enough to rank it (lazily: only a tie needs the bytes)
    and to write it."""

    __slots__ = ("deleted", "encoded", "exp", "expires", "raw", "tie", "ts")

    def __init__(
        self,
        ts: int,
        raw: Any,
        encoded: Any,
        expires: dt.datetime | None,
        exp: int | None,
        tie: bytes | None,
    ) -> None:
        self.ts = ts
        self.raw = raw
        self.deleted = raw is None
        self.encoded = encoded
        self.expires = None if raw is None else expires
        self.exp = None if raw is None else exp
        self.tie = tie

    def rank(self, cql_type: CqlType | None) -> CellRank:
        value = b"" if self.deleted else value_bytes(cql_type, self.raw)
        return cell_rank(self.ts, deleted=self.deleted, expires_at=self.expires, value=value)


def _replaces(new: _Version, current: _Version | None, cql_type: CqlType | None) -> bool:
    """Whether Cassandra keeps ``new`` over ``current``: the greater timestamp, and at
    equal timestamps the greater rank (comparing timestamps first is the rank's own
    first step, and spares serializing the values)."""
    if current is None or new.ts != current.ts:
        return current is None or new.ts > current.ts
    return new.rank(cql_type) > current.rank(cql_type)


class _CollectionFold:
    """A non-frozen collection's share of a batch: its own tombstone's time and each
    element's greatest version."""

    __slots__ = ("_elements", "cleared")

    def __init__(self) -> None:
        self.cleared: int | None = None
        self._elements: dict[str, tuple[CellRank, Element]] = {}

    def clear(self, ts: int) -> None:
        if self.cleared is None or ts > self.cleared:
            self.cleared = ts

    def put(self, rank: CellRank, element: Element) -> None:
        current = self._elements.get(element[0])
        if current is None or rank > current[0]:
            self._elements[element[0]] = (rank, element)

    def elements(self) -> list[Element] | None:
        if not self._elements:
            return None
        return [self._elements[k][1] for k in sorted(self._elements)]


def _element_key(column: ValueColumn, key: Any) -> str:
    """An element's key as the text that identifies it in the collection."""
    codec = column.codec
    if column.shape == "set":
        return canonical_text(to_json(codec.element_type, key))
    if column.shape == "map":
        return codec.map_key(key)
    if column.shape == "udt":
        if not isinstance(key, str):
            raise UnwritableValueError(f"UDT field {key!r} is not a name")
        return key
    return list_key_text(key)


def _element_value(column: ValueColumn, key: Any, value: Any) -> Any:
    codec = column.codec
    if column.shape == "set":
        return codec.element_to_db(key)
    if column.shape == "map":
        return None if value is None else codec.map_value(value)
    if column.shape == "udt":
        return None if value is None else codec.udt_field(key, value)
    return None if value is None else codec.element_to_db(value)


def _put_elements(
    slot: ColumnSlot,
    fold: _CollectionFold,
    kind: str,
    pairs: Iterable[tuple[Any, Any, int]],
    expires: dt.datetime | None,
    exp: int | None,
) -> None:
    """Live element versions (key, value, timestamp) written with the event's expiry."""
    column = slot.column
    type_of = element_type(slot.cql_type, kind)
    flag = _LIVE if expires is None else _EXPIRING
    for key, value, stamp in pairs:
        text = _element_key(column, key)
        payload = _element_value(column, key, value)
        raw = value_bytes(type_of(key), value)
        rank = cell_rank(stamp, deleted=False, expires_at=expires, value=raw)
        fold.put(rank, (text, stamp, flag, exp, raw, payload))


def _delta(
    slot: ColumnSlot,
    fold: _CollectionFold,
    delta: CollectionDelta,
    ts: int,
    expires: dt.datetime | None,
    exp: int | None,
) -> None:
    """Element changes: an overwrite is a collection tombstone just before its elements
    (Cassandra writes it at ``ts - 1``), removed elements are element tombstones."""
    if not slot.collection:
        raise UnwritableValueError(f"column {slot.column.name} is not a non-frozen collection")
    if delta.overwritten:
        fold.clear(ts - 1)
    pairs = ((e.key, e.value, e.timestamp_micros) for e in delta.elements)
    _put_elements(slot, fold, delta.kind, pairs, expires, exp)
    removed_ts = delta.removed_timestamp_micros or ts
    tombstone = cell_rank(removed_ts, deleted=True, expires_at=None, value=b"")
    for key in delta.removed:
        fold.put(
            tombstone, (_element_key(slot.column, key), removed_ts, _TOMBSTONE, None, b"", None)
        )


def _whole(
    slot: ColumnSlot,
    fold: _CollectionFold,
    value: Any,
    ts: int,
    expires: dt.datetime | None,
    exp: int | None,
) -> None:
    """A non-frozen collection given whole in ``columns``: null or empty deletes it at
    ``ts``, anything else overwrites it as ``SET c = ...`` does (list cells get keys in
    the value's order)."""
    if not value:
        fold.clear(ts)
        return
    fold.clear(ts - 1)
    shape = slot.column.shape
    if shape == "set":
        pairs: Iterable[tuple[Any, Any]] = ((k, None) for k in value)
    elif shape == "list":
        pairs = enumerate(value)
    elif isinstance(value, UdtValue):
        pairs = value.as_dict().items()
    elif isinstance(value, Mapping):
        pairs = value.items()
    else:
        raise UnwritableValueError(f"{type(value).__name__} is not a {slot.cql_type.cql()}")
    _put_elements(slot, fold, shape, ((k, v, ts) for k, v in pairs), expires, exp)


class _RowFold:
    """Several events of one row folded into the greatest version of each cell."""

    def __init__(self, plan: FoldPlan, target: TargetPlan, key: list[Any]) -> None:
        self.plan = plan
        self.target = target
        self.key = key
        self.cells: dict[str, _Version] = {}
        self.marker: _Version | None = None
        self.rowdel: int | None = None
        self.newest: int | None = None
        self.collections: dict[str, _CollectionFold] = {}

    def add(self, event: ChangeEvent) -> None:
        plan = self.plan
        ts = event.timestamp_micros
        if self.newest is None or ts > self.newest:
            self.newest = ts
        if event.scope is DeletionScope.ROW:
            if self.rowdel is None or ts > self.rowdel:
                self.rowdel = ts
            return
        expires = event.expires_at
        exp = None if expires is None else _micros(expires)
        if event.operation is Operation.INSERT:
            marker = _Version(ts, b"", None, expires, exp, None)
            if _replaces(marker, self.marker, None):
                self.marker = marker
        _no_counters(plan, event)
        collections = event.collections
        for name, value in event.columns.items():
            slot = self._slot(name)
            if slot.collection:
                if name not in collections:
                    _whole(slot, self._collection(name), value, ts, expires, exp)
                continue
            if value is None:
                self._put(slot, _Version(ts, None, None, None, None, None))
                continue
            tie = serialize(slot.cql_type, value) if slot.tie else None
            self._put(slot, _Version(ts, value, slot.encode(value), expires, exp, tie))
        for name in event.deleted_columns:
            slot = self._slot(name)
            if slot.collection:
                self._collection(name).clear(ts)
            else:
                self._put(slot, _Version(ts, None, None, None, None, None))
        for name, delta in collections.items():
            _delta(self._slot(name), self._collection(name), delta, ts, expires, exp)

    def _slot(self, name: str) -> ColumnSlot:
        slot = self.target.columns.get(name)
        if slot is None:
            raise _unknown(self.plan, name)
        return slot

    def _collection(self, name: str) -> _CollectionFold:
        return self.collections.setdefault(name, _CollectionFold())

    def _put(self, slot: ColumnSlot, version: _Version) -> None:
        name = slot.column.name
        if _replaces(version, self.cells.get(name), slot.cql_type):
            self.cells[name] = version

    def slots(self) -> list[Any]:
        assert self.newest is not None
        slots = [*self.key, *self.target.blank]
        columns = self.target.columns
        for name, version in self.cells.items():
            i = columns[name].index
            slots[i : i + 3] = (version.encoded, version.ts, version.exp)
            if columns[name].tie:
                slots[i + 3] = version.tie
        for name, fold in self.collections.items():
            i = columns[name].index
            slots[i], slots[i + 1] = fold.cleared, fold.elements()
        if self.marker is not None:
            slots[-4], slots[-3] = self.marker.ts, self.marker.exp
        slots[-2] = self.rowdel
        slots[-1] = self.newest
        return slots


def _identity(*parts: Any) -> str:
    text = json.dumps([value_to_json(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _bound(layout: TableLayout, bound: ClusteringBound) -> tuple[Any, ...]:
    prefix = []
    for column in layout.clustering:
        if column.name not in bound.values:
            break
        prefix.append(column.codec.to_db(bound.values[column.name]))
    return tuple(prefix)


def _tombstone(plan: FoldPlan, event: ChangeEvent) -> Tombstone:
    pk = tuple(encode(event.partition_key[name]) for name, encode in plan.partition)
    ts = event.timestamp_micros
    if event.scope is DeletionScope.PARTITION:
        return Tombstone(_identity("p", pk, ts), pk, ts, partition=True)
    bounds = event.clustering_range
    assert bounds is not None
    start, end = _bound(plan.layout, bounds.start), _bound(plan.layout, bounds.end)
    identity = _identity("r", pk, ts, start, bounds.start.inclusive, end, bounds.end.inclusive)
    return Tombstone(
        identity,
        pk,
        ts,
        partition=False,
        start=start,
        start_inclusive=bounds.start.inclusive,
        end=end,
        end_inclusive=bounds.end.inclusive,
    )


def collapse(
    events: Iterable[ChangeEvent], plans: Mapping[str, FoldPlan]
) -> tuple[dict[str, TableWrites], dict[str, str]]:
    """Group events per table (``plans`` by ``keyspace.table``) and row; returns the
    writes and ``{event id: why it was rejected}`` for what grouping already refuses
    (a missing key, a deletion bound the column cannot hold)."""
    tables: dict[str, TableWrites] = {}
    rejected: dict[str, str] = {}
    keyspace = table = None
    writes: TableWrites | None = None
    for event in events:
        if writes is None or event.table != table or event.keyspace != keyspace:
            keyspace, table = event.keyspace, event.table
            name = event.qualified_table
            writes = tables.get(name)
            if writes is None:
                writes = tables[name] = TableWrites(plans[name])
        plan = writes.plan
        scope = event.scope
        try:
            if scope is DeletionScope.PARTITION or scope is DeletionScope.RANGE:
                tombstone = _tombstone(plan, event)
                writes.tombstones[tombstone.identity] = tombstone
                continue
            key = plan.partition_of(event.partition_key)
            if event.static and plan.static is not None:
                groups = writes.static_rows
            else:
                groups = writes.rows
                if plan.clustering_of is not None:
                    key += plan.clustering_of(event.clustering_key)
            if None in key:
                raise KeyError
        except KeyError:
            missing = [n for n, _ in (*plan.partition, *plan.clustering) if _absent(event, n)]
            rejected[event.event_id] = f"{event.qualified_table}: key column(s) {missing} missing"
            continue
        except UnwritableValueError as exc:
            rejected[event.event_id] = f"{event.qualified_table}: {exc}"
            continue
        grouped: Any = key
        try:
            group = groups.get(grouped)
        except TypeError:  # a key Python cannot hash (a frozen collection): its text
            grouped = canonical_json([value_to_json(v) for v in key])
            group = groups.get(grouped)
        if group is None:
            groups[grouped] = event
        elif isinstance(group, list):
            group.append(event)
        else:
            groups[grouped] = [group, event]
    return tables, rejected


def _absent(event: ChangeEvent, name: str) -> bool:
    if name in event.partition_key:
        return event.partition_key[name] is None
    return event.clustering_key.get(name) is None
