"""Change events as lines of the ingest table: one small TabSeparated row per event.

Nothing is read back and nothing is remembered between batches: each event says what
it wrote, as cell strings (:mod:`cells`), and the aggregating tables keep the greatest
of each. So the sink's work per event is the text of the cells it touches, and its
memory is one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdc_adapters.clickhouse.cells import TS_OFFSET, ElementCodec, expiry_text, stamp
from cdc_adapters.clickhouse.column_types import quoted, split_type_args
from cdc_adapters.clickhouse.tables import TableLayout
from cdc_domain.events import ChangeEvent, DeletionScope, Operation

__all__ = ["LineEncoder", "default_text"]

_PARTITION, _ROW, _CELL = DeletionScope.PARTITION, DeletionScope.ROW, DeletionScope.CELL
_INSERT = Operation.INSERT

Slot = tuple[int, Callable[[Any], str], ElementCodec | None]


class LineEncoder:
    """The ingest lines of one table's events (:meth:`line`); raises ``KeyError`` for
    an event without its key columns and ``RejectedValueError`` for a value the
    column cannot hold."""

    def __init__(self, layout: TableLayout) -> None:
        pk = [(name, codec.encode) for name, codec in layout.partition_key]
        self._key = _key_encoder(pk)
        self._ck = [(name, codec.encode) for name, codec in layout.clustering_key]
        self._ck_literals = [(name, codec.literal) for name, codec in layout.clustering_key]
        self._ck_defaults = [
            default_text(codec.sql, nested=True) for _, codec in layout.clustering_key
        ]
        self._clustering = layout.has_clustering
        self._width = len(layout.columns)
        self._regular: dict[str, Slot] = {}
        self._static: dict[str, Slot] = {}
        for index, column in enumerate(layout.columns):
            slots = self._static if column.static else self._regular
            slots[column.name] = (index, column.cells.suffix, column.elements)
        self._blank = [""] * self._width
        self._separator = "\t" if self._width else ""
        self._no_elements = "\t[]\t[]\t[]" if layout.has_elements else ""
        self._no_range = ""
        self._default_ck = ""
        if self._clustering:
            self._no_range = "\t" + self._range_literal(None, None, "")
            self._default_ck = "\t".join(default_text(c.sql) for _, c in layout.clustering_key)
        self._tail = self._no_range + self._no_elements + "\n"

    def line(self, event: ChangeEvent) -> str | None:
        """The event's line; None for an event that changes nothing Cassandra shows (a
        row deletion of a static row). Written for speed: it runs once per event."""
        scope = event.scope
        if event.static or (scope is not None and scope is not _CELL):
            return self._wide(event)
        ts = event.timestamp_micros
        if not -TS_OFFSET <= ts < TS_OFFSET:
            stamp(ts)  # raises the rejection
        stamped = f"{ts + TS_OFFSET:016x}"
        expires = event.expires_at
        head = stamped + "0" if expires is None else stamped + "1" + expiry_text(expires)
        key = self._key(event.partition_key)
        if self._clustering:
            clustering = event.clustering_key
            key += "\t" + "\t".join([encode(clustering[n]) for n, encode in self._ck]) + "\t0"
        marker = head if event.operation is _INSERT else ""
        fields = self._blank.copy()
        slots = self._regular
        deltas = event.collections
        for name, value in event.columns.items():
            slot = slots.get(name)
            if slot is None or (deltas and name in deltas):
                continue  # a delta, not this value, says what a collection column got
            fields[slot[0]] = stamped + "2" if value is None else head + slot[1](value)
        prefix = f"{key}\t{marker}\t"
        if event.deleted_columns or deltas:
            return self._finish(event, prefix, stamped, head, fields, slots)
        return prefix + self._separator + "\t".join(fields) + self._tail

    def _wide(self, event: ChangeEvent) -> str | None:
        """Deletions of a partition, range or row, and static cells."""
        key = self._key(event.partition_key)
        ts = stamp(event.timestamp_micros)
        scope = event.scope
        if scope is not None and scope is not _CELL:
            return self._deletion(event, key, ts, scope)
        expires = event.expires_at
        head = ts + "0" if expires is None else ts + "1" + expiry_text(expires)
        fields = self._blank.copy()
        slots = self._static
        deltas = event.collections
        for name, value in event.columns.items():
            slot = slots.get(name)
            if slot is not None and not (deltas and name in deltas):
                fields[slot[0]] = ts + "2" if value is None else head + slot[1](value)
        prefix = f"{key}\t{self._default_ck}\t1\t\t"
        return self._finish(event, prefix, ts, head, fields, slots)

    def _deletion(self, event: ChangeEvent, key: str, ts: str, scope: DeletionScope) -> str | None:
        blank = self._separator + "\t".join(self._blank)
        if not self._clustering:  # a partition is its one row
            return f"{key}\t\t{ts}{blank}{self._tail}"
        if scope is _ROW:
            if event.static:
                return None
            clustering = event.clustering_key
            ck = "\t".join([encode(clustering[name]) for name, encode in self._ck])
            return f"{key}\t{ck}\t0\t\t{ts}{blank}{self._tail}"
        head = f"{key}\t{self._default_ck}\t1\t\t"
        if scope is _PARTITION:
            return f"{head}{ts}{blank}{self._tail}"
        rng = event.clustering_range
        assert rng is not None
        literal = self._range_literal(rng.start, rng.end, ts)
        return f"{head}{blank}\t{literal}{self._no_elements}\n"

    def _finish(
        self,
        event: ChangeEvent,
        prefix: str,
        ts: str,
        head: str,
        fields: list[str],
        slots: dict[str, Slot],
    ) -> str:
        """The line of an event that deletes cells or writes collection elements."""
        tomb = ts + "2"
        elements: list[tuple[str, str, str]] = []
        for name in event.deleted_columns:
            slot = slots.get(name)
            if slot is None:
                continue
            fields[slot[0]] = tomb
            if slot[2] is not None:
                elements.append((name, "", tomb))  # the column's deletion, for its elements
        if event.collections:
            self._elements(event, slots, head[16:], elements)
        line = prefix + self._separator + "\t".join(fields) + self._no_range
        if not elements:
            return line + self._no_elements + "\n"
        columns = ",".join([quoted(c) for c, _, _ in elements])
        keys = ",".join([quoted(k) for _, k, _ in elements])
        cells = ",".join([quoted(x) for _, _, x in elements])
        return f"{line}\t[{columns}]\t[{keys}]\t[{cells}]\n"

    def _elements(
        self,
        event: ChangeEvent,
        slots: dict[str, Slot],
        kind: str,
        out: list[tuple[str, str, str]],
    ) -> None:
        """Each element written or removed, and the deletion an overwrite implies."""
        ts = event.timestamp_micros
        for name, delta in event.collections.items():
            slot = slots.get(name)
            if slot is None or slot[2] is None:
                continue
            codec = slot[2]
            if delta.overwritten:
                # Cassandra marks an overwrite as a deletion just before the new elements.
                out.append((name, "", stamp(ts - 1) + "2"))
            for element in delta.elements:
                cell = (
                    stamp(element.timestamp_micros) + kind + codec.cell(element.key, element.value)
                )
                out.append((name, codec.key(element.key), cell))
            removed = stamp(delta.removed_timestamp_micros or ts) + "2"
            for key in delta.removed:
                out.append((name, codec.key(key), removed))

    def _range_literal(self, start: Any, end: Any, ts: str) -> str:
        return f"({self._bound(start)},{self._bound(end)},'{ts}')"

    def _bound(self, bound: Any) -> str:
        values = bound.values if bound is not None else {}
        literals = []
        for (name, literal), default in zip(self._ck_literals, self._ck_defaults, strict=True):
            literals.append(literal(values[name]) if name in values else default)
        inclusive = 1 if bound is None or bound.inclusive else 0
        prefix = _prefix_length(values, [n for n, _ in self._ck_literals])
        return f"{prefix},{inclusive},({','.join(literals)})"


def _prefix_length(values: Any, names: list[str]) -> int:
    """How many leading clustering columns a bound fixes (they must be a prefix)."""
    length = 0
    for name in names:
        if name not in values:
            break
        length += 1
    if length != len(values):
        raise KeyError(f"range bound {list(values)} is not a prefix of {names}")
    return length


def default_text(sql: str, *, nested: bool = False) -> str:
    """The text of a column type's default value (a key column's filler where an event
    has no value for it), as a TabSeparated field or, ``nested``, as a literal."""
    if sql.startswith("Nullable("):
        return "NULL" if nested else "\\N"
    if sql.startswith("Array("):
        return "[]"
    if sql.startswith("Map("):
        return "{}"
    if sql.startswith("Tuple("):
        inner = split_type_args(sql[len("Tuple(") : -1])
        return "(" + ",".join(default_text(t, nested=True) for t in inner) + ")"
    text = _DEFAULTS.get(sql)
    if text is None and sql.startswith("DateTime64"):
        text = "1970-01-01 00:00:00.000"
    if text is None:
        return "0"
    return quoted(text) if nested else text


_DEFAULTS = {
    "String": "",
    "UUID": "00000000-0000-0000-0000-000000000000",
    "Date": "1970-01-01",
    "Date32": "1970-01-01",
}


def _key_encoder(columns: list[tuple[str, Callable[[Any], str]]]) -> Callable[[Any], str]:
    """The TabSeparated fields of a partition key, from the event's key values."""
    if len(columns) == 1:
        ((name, encode),) = columns
        return lambda values: encode(values[name])
    return lambda values: "\t".join([encode(values[name]) for name, encode in columns])
