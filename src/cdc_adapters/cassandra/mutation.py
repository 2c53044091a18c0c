"""Mutations from commit log entries, decoded into partition updates with typed values.

A mutation is a list of partition updates, one per table, with no lengths between them:
reading past an update needs its table's columns. So the reader asks ``lookup(table_id)``
for each update's :class:`TableSchema` and compiles, once per schema version, a plan
holding a ready decoder per column; decoding a cell is then a few byte reads and one call.

The output stays close to Cassandra's model (rows with liveness, deletion and cells, range
tombstone markers); :mod:`cdc_adapters.cassandra.event_mapper` gives it change-event
meaning. Cells are plain tuples rather than objects because a mutation has many of them
and each object costs more than the decoding itself.

Messaging versions 12 (4.x, 5.0 by default) and 13 (5.0 without 4.x compatibility) lay the
bytes out identically; only the 32-bit local deletion times read differently (signed with
``0x7FFFFFFF`` as "none" in 12, unsigned with ``0xFFFFFFFF`` in 13).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from cdc_adapters.cassandra.codec import ValueDecoder, key_decoder, value_decoder
from cdc_adapters.cassandra.vint import read_unsigned_vint
from cdc_domain.cql_types import CqlType
from cdc_domain.schema import ColumnDefinition, ColumnKind, TableSchema

__all__ = [
    "ComplexCell",
    "ComplexColumn",
    "DeletionTime",
    "Liveness",
    "MutationDecodeError",
    "MutationDecoder",
    "PartitionUpdate",
    "RangeTombstoneMarker",
    "Row",
    "SimpleCell",
    "TableLookup",
    "UnknownColumnError",
    "UnknownTableError",
]

TableLookup = Callable[[uuid.UUID], TableSchema | None]
CapturePredicate = Callable[[TableSchema], bool]

# Partition flags.
_IS_EMPTY = 0x01
_HAS_PARTITION_DELETION = 0x04
_HAS_STATIC_ROW = 0x08
_HAS_ROW_ESTIMATE = 0x10
# Unfiltered (row / marker) flags.
_END_OF_PARTITION = 0x01
_IS_MARKER = 0x02
_HAS_TIMESTAMP = 0x04
_HAS_TTL = 0x08
_HAS_DELETION = 0x10
_HAS_ALL_COLUMNS = 0x20
_HAS_COMPLEX_DELETION = 0x40
_EXTENSION_FLAG = 0x80
_IS_STATIC = 0x01
# Cell flags.
_CELL_DELETED = 0x01
_CELL_EXPIRING = 0x02
_CELL_EMPTY = 0x04
_CELL_ROW_TIMESTAMP = 0x08
_CELL_ROW_TTL = 0x10

_TIMESTAMP_EPOCH = 1442880000000000  # EncodingStats' base: 2015-09-22T00:00Z in micros
_DELETION_TIME_EPOCH = 1442880000
_MASK64 = (1 << 64) - 1
_SIGN64 = 1 << 63
_MASK32 = 0xFFFFFFFF
_LONG_MIN = -(1 << 63)
_LIVE_LDT = {12: 0x7FFFFFFF, 13: 0xFFFFFFFF, 14: 0xFFFFFFFF}
_NONE_DROPPED: frozenset[str] = frozenset()

# Range tombstone bound kinds (ClusteringPrefix.Kind ordinals).
EXCL_END_BOUND = 0
INCL_START_BOUND = 1
EXCL_END_INCL_START_BOUNDARY = 2
INCL_END_EXCL_START_BOUNDARY = 5
INCL_END_BOUND = 6
EXCL_START_BOUND = 7
_BOUNDARIES = frozenset({EXCL_END_INCL_START_BOUNDARY, INCL_END_EXCL_START_BOUNDARY})
_START_BOUNDS = frozenset({INCL_START_BOUND, EXCL_START_BOUND})


class MutationDecodeError(ValueError):
    """An entry that does not decode against the schema; ``raw`` is the whole entry."""

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw


class UnknownTableError(MutationDecodeError):
    """An update of a table the schema lookup does not know; the entry cannot be read on."""

    def __init__(self, table_id: uuid.UUID, raw: bytes = b"") -> None:
        super().__init__(f"unknown table id {table_id}", raw)
        self.table_id = table_id


class UnknownColumnError(MutationDecodeError):
    """A column the table's schema does not have: the schema is older than the mutation
    (an ``ALTER TABLE ... ADD`` the reader has not seen yet)."""

    def __init__(self, table: TableSchema, column: str, raw: bytes = b"") -> None:
        super().__init__(
            f"{table.qualified_name} has no column {column!r} (schema older than the mutation?)",
            raw,
        )
        self.table_id = table.table_id
        self.column = column


class DeletionTime(NamedTuple):
    """``local_deletion_time`` is seconds since the epoch on the writing node."""

    timestamp: int
    local_deletion_time: int | None


class Liveness(NamedTuple):
    """A row's primary-key liveness: present only for rows written by INSERT."""

    timestamp: int
    ttl: int | None
    local_expiration_time: int | None


# (column name, value, timestamp, ttl, local deletion/expiration time, is tombstone).
# ttl is None unless the cell expires; value is None for tombstones.
SimpleCell = tuple[str, Any, int, int | None, int | None, bool]
# (element key, value, timestamp, ttl, local deletion/expiration time, is tombstone): the
# key is a list cell's timeuuid, a set element, a map key or a UDT field name.
ComplexCell = tuple[Any, Any, int, int | None, int | None, bool]


class ComplexColumn(NamedTuple):
    """A non-frozen collection/UDT column in a row: its deletion (overwrite) and cells."""

    name: str
    kind: str
    deletion: DeletionTime | None
    cells: list[ComplexCell]


class Row:
    """One row (or the static row) of a partition update."""

    __slots__ = ("cells", "clustering", "complex", "deletion", "is_static", "liveness")

    def __init__(
        self,
        clustering: tuple[Any, ...],
        liveness: Liveness | None,
        deletion: DeletionTime | None,
        cells: list[SimpleCell],
        complex_columns: list[ComplexColumn],
        is_static: bool,
    ) -> None:
        self.clustering = clustering
        self.liveness = liveness
        self.deletion = deletion
        self.cells = cells
        self.complex = complex_columns
        self.is_static = is_static

    def __repr__(self) -> str:
        return (
            f"Row(clustering={self.clustering!r}, liveness={self.liveness!r}, "
            f"deletion={self.deletion!r}, cells={self.cells!r}, complex={self.complex!r}, "
            f"is_static={self.is_static!r})"
        )


class RangeTombstoneMarker(NamedTuple):
    """One end (bound) or a meeting point (boundary) of range tombstones.

    ``values`` is the clustering prefix; a boundary closes the range before it with
    ``end_deletion`` and opens the next with ``start_deletion``.
    """

    kind: int
    values: tuple[Any, ...]
    end_deletion: DeletionTime | None
    start_deletion: DeletionTime | None

    @property
    def opens(self) -> bool:
        return self.start_deletion is not None

    @property
    def closes(self) -> bool:
        return self.end_deletion is not None

    @property
    def start_inclusive(self) -> bool:
        return self.kind in (INCL_START_BOUND, EXCL_END_INCL_START_BOUNDARY)

    @property
    def end_inclusive(self) -> bool:
        return self.kind in (INCL_END_BOUND, INCL_END_EXCL_START_BOUNDARY)


class PartitionUpdate:
    """What one mutation did to one partition of one table.

    ``dropped_columns`` names the columns with cells here that ``table`` lists as dropped:
    the mutation was written before the drop, under an older version of the table.
    """

    __slots__ = (
        "dropped_columns",
        "markers",
        "partition_deletion",
        "partition_key",
        "rows",
        "static_row",
        "table",
    )

    def __init__(
        self,
        table: TableSchema,
        partition_key: dict[str, Any],
        partition_deletion: DeletionTime | None,
        static_row: Row | None,
        rows: list[Row],
        markers: list[RangeTombstoneMarker],
        dropped_columns: frozenset[str] = frozenset(),
    ) -> None:
        self.table = table
        self.partition_key = partition_key
        self.partition_deletion = partition_deletion
        self.static_row = static_row
        self.rows = rows
        self.markers = markers
        self.dropped_columns = dropped_columns

    def __repr__(self) -> str:
        return (
            f"PartitionUpdate(table={self.table.qualified_name}, "
            f"partition_key={self.partition_key!r}, "
            f"partition_deletion={self.partition_deletion!r}, static_row={self.static_row!r}, "
            f"rows={self.rows!r}, markers={self.markers!r},"
            f" dropped_columns={sorted(self.dropped_columns)!r})"
        )


class _ColumnPlan:
    """How to read one column's cells; built once per schema version."""

    __slots__ = (
        "decode",
        "dropped",
        "field_decoders",
        "fixed",
        "is_complex",
        "key_decode",
        "kind",
        "name",
    )

    def __init__(self, column: ColumnDefinition, dropped: bool) -> None:
        cql_type = column.type
        self.name = column.name
        self.dropped = dropped
        self.is_complex = cql_type.is_multicell
        self.kind = cql_type.name
        self.key_decode: Callable[[bytes], Any] | None = None
        self.field_decoders: tuple[ValueDecoder, ...] = ()
        if not self.is_complex:
            fixed = cql_type.fixed_length
            self.fixed = -1 if fixed is None else fixed
            # Counter cells keep their raw context: its shards hold running totals that
            # only the event mapper, with its state, can turn into increments.
            self.decode: ValueDecoder = (
                bytes if cql_type.name == "counter" else value_decoder(cql_type)
            )
            return
        # Cells of a complex column carry their values with a length, whatever the type.
        self.fixed = -1
        params = cql_type.params
        if cql_type.name == "list":
            self.key_decode = _timeuuid
            self.decode = value_decoder(params[0])
        elif cql_type.name == "set":
            self.key_decode = key_decoder(params[0])
            self.decode = _no_value
        elif cql_type.name == "map":
            self.key_decode = key_decoder(params[0])
            self.decode = value_decoder(params[1])
        else:
            # A UDT field's type depends on the field index in the cell's path.
            self.key_decode = _udt_field_names(cql_type)
            self.field_decoders = tuple(value_decoder(p) for p in params)
            self.decode = _no_value


def _timeuuid(raw: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=bytes(raw))


def _no_value(raw: bytes) -> None:
    return None


def _udt_field_names(cql_type: CqlType) -> Callable[[bytes], str]:
    names = cql_type.field_names

    def field_name(raw: bytes) -> str:
        return names[int.from_bytes(raw, "big")]

    return field_name


class _TablePlan:
    __slots__ = ("clustering", "columns", "header_cache", "partition_key", "schema")

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.columns: dict[bytes, _ColumnPlan] = {
            c.name.encode(): _ColumnPlan(c, dropped=False)
            for c in schema.columns
            if c.kind in (ColumnKind.REGULAR, ColumnKind.STATIC)
        }
        for column in schema.dropped_columns:
            self.columns.setdefault(column.name.encode(), _ColumnPlan(column, dropped=True))
        self.clustering = tuple(
            (-1 if c.type.fixed_length is None else c.type.fixed_length, value_decoder(c.type))
            for c in schema.clustering
        )
        self.partition_key = _partition_key_decoder(schema)
        self.header_cache: dict[bytes, tuple[_ColumnPlan, ...]] = {}


def _partition_key_decoder(schema: TableSchema) -> Callable[[bytes], dict[str, Any]]:
    columns = schema.partition_key
    if len(columns) == 1:
        name = columns[0].name
        decode = value_decoder(columns[0].type)
        return lambda raw: {name: decode(raw)}
    named = [(c.name, value_decoder(c.type)) for c in columns]

    def decode_composite(raw: bytes) -> dict[str, Any]:
        # CompositeType: per component an unsigned short length, the bytes, an end byte.
        result = {}
        pos = 0
        for name, decode in named:
            size = int.from_bytes(raw[pos : pos + 2], "big")
            result[name] = decode(raw[pos + 2 : pos + 2 + size])
            pos += 3 + size
        return result

    return decode_composite


def _is_cdc(schema: TableSchema) -> bool:
    return schema.cdc


class MutationDecoder:
    """Decodes commit log mutations, caching a plan per table and schema version.

    ``lookup`` should know every table whose mutations can appear in the commit log,
    system and non-CDC ones included: an update of an unknown table cannot be skipped
    (there are no lengths to skip by), so the whole entry fails with
    :class:`UnknownTableError`, while a table ``capture`` rejects (by default, those
    without ``cdc = true``) costs almost nothing.
    """

    def __init__(self, lookup: TableLookup, *, capture: CapturePredicate = _is_cdc) -> None:
        self._lookup = lookup
        self._capture = capture
        self._plans: dict[uuid.UUID, _TablePlan] = {}
        # Raw id bytes -> UUID: building a UUID costs more than decoding a small cell.
        self._ids: dict[bytes, uuid.UUID] = {}

    def _table(self, data: bytes, pos: int) -> tuple[uuid.UUID, TableSchema | None]:
        raw = data[pos : pos + 16]
        table_id = self._ids.get(raw)
        if table_id is None:
            if len(raw) != 16:
                raise MutationDecodeError("mutation ends inside a table id", data)
            table_id = uuid.UUID(bytes=raw)
            if len(self._ids) > 100_000:
                self._ids.clear()
            self._ids[raw] = table_id
        return table_id, self._lookup(table_id)

    def _plan(self, table_id: uuid.UUID, schema: TableSchema) -> _TablePlan:
        plan = self._plans.get(table_id)
        if plan is None or (plan.schema is not schema and plan.schema.version != schema.version):
            plan = self._plans[table_id] = _TablePlan(schema)
        return plan

    def decode(self, data: bytes, messaging_version: int) -> list[PartitionUpdate]:
        """The partition updates of one mutation, of the tables ``capture`` accepts."""
        live_ldt = _LIVE_LDT.get(messaging_version)
        if live_ldt is None:
            raise MutationDecodeError(f"messaging version {messaging_version}", data)
        count, pos = read_unsigned_vint(data, 0)
        updates = []
        try:
            for _ in range(count):
                table_id, schema = self._table(data, pos)
                if schema is None:
                    raise UnknownTableError(table_id, data)
                captured = self._capture(schema)
                if count == 1 and not captured:
                    return []  # the common uncaptured case: no need to read it through
                plan = self._plan(table_id, schema)
                update, pos = _Reader(data, pos + 16, plan, live_ldt).partition()
                if captured:
                    updates.append(update)
        except MutationDecodeError:
            raise
        except (IndexError, ValueError, KeyError, UnicodeDecodeError) as exc:
            raise MutationDecodeError(f"mutation does not decode: {exc!r}", data) from exc
        if pos != len(data):
            raise MutationDecodeError(f"{len(data) - pos} bytes left after the mutation", data)
        return updates


class _Reader:
    """Reads one partition update; a cursor over the mutation with the encoding stats."""

    __slots__ = ("data", "dropped", "live_ldt", "min_ldt", "min_ts", "min_ttl", "plan", "pos")

    def __init__(self, data: bytes, pos: int, plan: _TablePlan, live_ldt: int) -> None:
        self.data = data
        self.pos = pos
        self.plan = plan
        self.live_ldt = live_ldt
        self.min_ts = 0
        self.min_ldt = 0
        self.min_ttl = 0
        self.dropped = _NONE_DROPPED

    def vint(self) -> int:
        value, self.pos = read_unsigned_vint(self.data, self.pos)
        return value

    def timestamp(self) -> int:
        value = (self.vint() + self.min_ts) & _MASK64
        return value - (1 << 64) if value & _SIGN64 else value

    def ldt(self) -> int | None:
        value = (self.vint() + self.min_ldt) & _MASK32
        if value == self.live_ldt:
            return None
        if self.live_ldt == 0x7FFFFFFF and value > 0x7FFFFFFF:
            return value - (1 << 32)
        return value

    def deletion_time(self) -> DeletionTime | None:
        timestamp = self.timestamp()
        ldt = self.ldt()
        return None if timestamp == _LONG_MIN else DeletionTime(timestamp, ldt)

    def bytes_with_length(self) -> bytes:
        size = self.vint()
        start = self.pos
        self.pos = start + size
        if self.pos > len(self.data):
            raise IndexError(f"value of {size} bytes at {start} runs past the mutation")
        return self.data[start : self.pos]

    def columns(self) -> tuple[_ColumnPlan, ...]:
        start = self.pos
        data = self.data
        # Most mutations of a table list the same columns: match the bytes, skip parsing.
        for key, known in self.plan.header_cache.items():
            if data.startswith(key, start):
                self.pos = start + len(key)
                return known
        count = self.vint()
        names = [self.bytes_with_length() for _ in range(count)]
        key = self.data[start : self.pos]
        plans = []
        for name in names:
            plan = self.plan.columns.get(name)
            if plan is None:
                raise UnknownColumnError(self.plan.schema, name.decode(), self.data)
            plans.append(plan)
        result = tuple(plans)
        if len(self.plan.header_cache) < 16:
            self.plan.header_cache[key] = result
        return result

    def partition(self) -> tuple[PartitionUpdate, int]:
        plan = self.plan
        data = self.data
        size, pos = read_unsigned_vint(data, self.pos)
        key = plan.partition_key(data[pos : pos + size])
        flags = data[pos + size]
        self.pos = pos + size + 1
        if flags & _IS_EMPTY:
            return PartitionUpdate(plan.schema, key, None, None, [], []), self.pos
        min_ts, pos = read_unsigned_vint(data, self.pos)
        min_ts = (min_ts + _TIMESTAMP_EPOCH) & _MASK64
        self.min_ts = min_ts - (1 << 64) if min_ts & _SIGN64 else min_ts
        min_ldt, pos = read_unsigned_vint(data, pos)
        self.min_ldt = (min_ldt + _DELETION_TIME_EPOCH) & _MASK32
        self.min_ttl, self.pos = read_unsigned_vint(data, pos)
        statics = self.columns() if flags & _HAS_STATIC_ROW else ()
        regulars = self.columns()
        partition_deletion = None
        if flags & _HAS_PARTITION_DELETION:
            partition_deletion = self.deletion_time()
        static_row = None
        if flags & _HAS_STATIC_ROW:
            row_flags = data[self.pos]
            self.pos += 1
            static_row = self.row(row_flags, statics)
        if flags & _HAS_ROW_ESTIMATE:
            self.vint()
        rows = []
        markers = []
        while True:
            row_flags = data[self.pos]
            self.pos += 1
            if row_flags & _END_OF_PARTITION:
                break
            if row_flags & _IS_MARKER:
                markers.append(self.marker())
            else:
                rows.append(self.row(row_flags, regulars))
        update = PartitionUpdate(
            plan.schema,
            key,
            partition_deletion,
            static_row,
            rows,
            markers,
            self.dropped,
        )
        return update, self.pos

    def clustering_values(self, count: int) -> tuple[Any, ...]:
        data = self.data
        specs = self.plan.clustering
        values: list[Any] = []
        header = 0
        for index in range(count):
            if index % 32 == 0:
                header = self.vint()
            bits = (header >> (2 * (index % 32))) & 3
            fixed, decode = specs[index]
            if bits & 2:
                values.append(None)
            elif bits & 1:
                values.append(decode(b""))
            elif fixed >= 0:
                start = self.pos
                self.pos = start + fixed
                values.append(decode(data[start : self.pos]))
            else:
                values.append(decode(self.bytes_with_length()))
        return tuple(values)

    def marker(self) -> RangeTombstoneMarker:
        data = self.data
        kind = data[self.pos]
        size = int.from_bytes(data[self.pos + 1 : self.pos + 3], "big")
        self.pos += 3
        values = self.clustering_values(size)
        if kind in _BOUNDARIES:
            end = self.deletion_time()
            return RangeTombstoneMarker(kind, values, end, self.deletion_time())
        deletion = self.deletion_time()
        if kind in _START_BOUNDS:
            return RangeTombstoneMarker(kind, values, None, deletion)
        return RangeTombstoneMarker(kind, values, deletion, None)

    def row(self, flags: int, header_columns: tuple[_ColumnPlan, ...]) -> Row:
        data = self.data
        is_static = False
        if flags & _EXTENSION_FLAG:
            is_static = bool(data[self.pos] & _IS_STATIC)
            self.pos += 1
        count = len(self.plan.clustering)
        clustering = () if is_static or not count else self.clustering_values(count)
        liveness = None
        row_ts = _LONG_MIN
        row_ttl: int | None = None
        row_ldt: int | None = None
        if flags & _HAS_TIMESTAMP:
            first = data[self.pos]
            if first < 0x80:
                row_ts = first + self.min_ts
                self.pos += 1
            else:
                row_ts = self.timestamp()
            if flags & _HAS_TTL:
                row_ttl = (self.vint() + self.min_ttl) & _MASK32
                row_ldt = self.ldt()
            liveness = Liveness(row_ts, row_ttl, row_ldt)
        deletion = self.deletion_time() if flags & _HAS_DELETION else None
        present = header_columns if flags & _HAS_ALL_COLUMNS else self.subset(header_columns)
        has_complex_deletion = flags & _HAS_COMPLEX_DELETION
        cells: list[SimpleCell] = []
        complex_columns: list[ComplexColumn] = []
        min_ts = self.min_ts
        for column in present:
            if column.is_complex:
                complex_deletion = self.deletion_time() if has_complex_deletion else None
                cell_count = self.vint()
                column_cells = [
                    self.complex_cell(column, row_ts, row_ttl, row_ldt) for _ in range(cell_count)
                ]
                if column.dropped:
                    self.dropped |= {column.name}
                complex_columns.append(
                    ComplexColumn(column.name, column.kind, complex_deletion, column_cells)
                )
                continue
            # Simple cell, inlined: this loop is the decoder's hot path.
            cell_flags = data[self.pos]
            pos = self.pos + 1
            if cell_flags & _CELL_ROW_TIMESTAMP:
                timestamp = row_ts
            else:
                first = data[pos]
                if first < 0x80:
                    timestamp = first + min_ts
                    pos += 1
                else:
                    delta, pos = read_unsigned_vint(data, pos)
                    timestamp = (delta + min_ts) & _MASK64
                    if timestamp & _SIGN64:
                        timestamp -= 1 << 64
            ttl: int | None = None
            ldt: int | None = None
            if cell_flags & (_CELL_DELETED | _CELL_EXPIRING):
                self.pos = pos
                if cell_flags & _CELL_ROW_TTL:
                    ttl, ldt = row_ttl, row_ldt
                else:
                    ldt = self.ldt()
                    if cell_flags & _CELL_EXPIRING:
                        ttl = (self.vint() + self.min_ttl) & _MASK32
                pos = self.pos
            if cell_flags & _CELL_EMPTY:
                raw = b""
            elif column.fixed >= 0:
                raw = data[pos : pos + column.fixed]
                pos += column.fixed
            else:
                size = data[pos]
                if size < 0x80:
                    pos += 1
                else:
                    size, pos = read_unsigned_vint(data, pos)
                raw = data[pos : pos + size]
                pos += size
            self.pos = pos
            if column.dropped:
                self.dropped |= {column.name}
            if cell_flags & _CELL_DELETED:
                cells.append((column.name, None, timestamp, None, ldt, True))
            else:
                cells.append((column.name, column.decode(raw), timestamp, ttl, ldt, False))
        return Row(clustering, liveness, deletion, cells, complex_columns, is_static)

    def complex_cell(
        self, column: _ColumnPlan, row_ts: int, row_ttl: int | None, row_ldt: int | None
    ) -> ComplexCell:
        flags = self.data[self.pos]
        self.pos += 1
        timestamp = row_ts if flags & _CELL_ROW_TIMESTAMP else self.timestamp()
        ttl: int | None = None
        ldt: int | None = None
        if flags & (_CELL_DELETED | _CELL_EXPIRING):
            if flags & _CELL_ROW_TTL:
                ttl, ldt = row_ttl, row_ldt
            else:
                ldt = self.ldt()
                if flags & _CELL_EXPIRING:
                    ttl = (self.vint() + self.min_ttl) & _MASK32
        path = self.bytes_with_length()
        raw = b"" if flags & _CELL_EMPTY else self.bytes_with_length()
        assert column.key_decode is not None
        key = column.key_decode(path)
        deleted = bool(flags & _CELL_DELETED)
        if deleted:
            value = None
        elif column.field_decoders:
            value = column.field_decoders[int.from_bytes(path, "big")](raw)
        else:
            value = column.decode(raw)
        return (key, value, timestamp, ttl, ldt, deleted)

    def subset(self, superset: tuple[_ColumnPlan, ...]) -> tuple[_ColumnPlan, ...]:
        encoded = self.vint()
        if encoded == 0:
            return superset
        total = len(superset)
        if total < 64:
            return tuple(c for i, c in enumerate(superset) if not (encoded >> i) & 1)
        present_count = total - encoded
        if present_count < total // 2:
            return tuple(superset[self.vint()] for _ in range(present_count))
        missing = {self.vint() for _ in range(encoded)}
        return tuple(c for i, c in enumerate(superset) if i not in missing)
