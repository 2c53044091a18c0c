"""Mutations from commit log entries, decoded into partition updates with typed values.

A mutation is a list of partition updates, one per table, with no lengths between them:
reading past an update needs its table's columns. So the reader asks ``lookup(table_id)``
for each update's :class:`TableSchema` and compiles, once per schema version, a plan
holding a ready decoder per column; decoding a cell is then a few byte reads and one call.

The output stays close to Cassandra's model (rows with liveness, deletion and cells, range
tombstone markers); :mod:`cdc_adapters.cassandra.event_mapper` gives it change-event
meaning. Cells are plain tuples rather than objects because a mutation has many of them
and each object costs more than the decoding itself, and the cells an INSERT writes
(live, at the row's timestamp) are only a ``{column: value}`` dict, the one the event
will carry.

Most updates are INSERTs into a table whose column header was seen before. Those are
read by :func:`_plain_partition`, a straight-line reader kept in local variables; it
gives up at the first byte that does not fit that shape, and :class:`_Reader`, which
reads everything, starts the update over. Throughput figures: docs/benchmarks.md.

Messaging versions 12 (4.x, 5.0 by default) and 13 (5.0 without 4.x compatibility) lay the
bytes out identically; only the 32-bit local deletion times read differently (signed with
``0x7FFFFFFF`` as "none" in 12, unsigned with ``0xFFFFFFFF`` in 13).
"""

from __future__ import annotations

import struct
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
_LONG_MAX = (1 << 63) - 1
_LIVE_LDT = {12: 0x7FFFFFFF, 13: 0xFFFFFFFF, 14: 0xFFFFFFFF}
_NONE_DROPPED: frozenset[str] = frozenset()
# Liveness(...) minus the Python-level __new__ a NamedTuple adds, for the fast path.
_new_tuple = tuple.__new__
# Partition flags the fast path does not read: all but a row estimate.
_NOT_PLAIN_PARTITION = ~_HAS_ROW_ESTIMATE
# Row flags the fast path reads: liveness (and a TTL), every column of the header.
_PLAIN_ROW_FLAGS = frozenset(
    {_HAS_TIMESTAMP | _HAS_ALL_COLUMNS, _HAS_TIMESTAMP | _HAS_TTL | _HAS_ALL_COLUMNS}
)
# Flags of a live cell written with its row's timestamp (and, if the row expires, TTL).
_PLAIN_CELL = _CELL_ROW_TIMESTAMP
_PLAIN_EXPIRING_CELL = _CELL_EXPIRING | _CELL_ROW_TIMESTAMP | _CELL_ROW_TTL

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
    """One row (or the static row) of a partition update.

    ``values`` holds the simple cells that say nothing beyond their value: live, written
    at the row's own timestamp and TTL, as an INSERT writes them. That is most cells, and
    keeping them as a plain ``{column: value}`` dict lets the event mapper hand the dict
    on as is. Every other simple cell (own timestamp or TTL, tombstone, counter) is a
    :data:`SimpleCell` in ``cells``. Values only exist in rows with a ``liveness``.
    """

    __slots__ = ("cells", "clustering", "complex", "deletion", "is_static", "liveness", "values")

    def __init__(
        self,
        clustering: tuple[Any, ...],
        liveness: Liveness | None,
        deletion: DeletionTime | None,
        values: dict[str, Any],
        cells: list[SimpleCell],
        complex_columns: list[ComplexColumn],
        is_static: bool,
    ) -> None:
        self.clustering = clustering
        self.liveness = liveness
        self.deletion = deletion
        self.values = values
        self.cells = cells
        self.complex = complex_columns
        self.is_static = is_static

    def __repr__(self) -> str:
        return (
            f"Row(clustering={self.clustering!r}, liveness={self.liveness!r}, "
            f"deletion={self.deletion!r}, values={self.values!r}, cells={self.cells!r}, "
            f"complex={self.complex!r}, is_static={self.is_static!r})"
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
    ``plain`` says the update is only rows of plain values with liveness, as INSERTs
    write them (see :class:`Row`): no deletion, static row, marker or other cell.
    """

    __slots__ = (
        "dropped_columns",
        "markers",
        "partition_deletion",
        "partition_key",
        "plain",
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
        plain: bool = False,
    ) -> None:
        self.table = table
        self.partition_key = partition_key
        self.partition_deletion = partition_deletion
        self.static_row = static_row
        self.rows = rows
        self.markers = markers
        self.dropped_columns = dropped_columns
        self.plain = plain

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
        "plain",
    )

    def __init__(self, column: ColumnDefinition, dropped: bool) -> None:
        cql_type = column.type
        self.name = column.name
        self.dropped = dropped
        self.is_complex = cql_type.is_multicell
        self.kind = cql_type.name
        self.key_decode: Callable[[bytes], Any] | None = None
        self.field_decoders: tuple[ValueDecoder, ...] = ()
        # Whether a live cell at the row's timestamp goes to Row.values; counters never
        # do: the mapper needs their shards, not a value.
        self.plain = not self.is_complex and cql_type.name != "counter"
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


# (column name, fixed length or -1, decoder): what the fast row path needs of a column.
_PlainSpec = tuple[str, int, ValueDecoder]


class _Header:
    """The columns an update's header lists for its rows, parsed once per distinct header.

    ``plain`` is set when every column can be read by the fast path
    (:func:`_plain_partition`): none complex, dropped or counter.
    """

    __slots__ = ("columns", "plain", "size")

    def __init__(self, columns: tuple[_ColumnPlan, ...], size: int) -> None:
        self.columns = columns
        self.size = size  # of the serialized header
        self.plain: tuple[_PlainSpec, ...] | None = None
        if all(c.plain and not c.dropped for c in columns):
            self.plain = tuple((c.name, c.fixed, c.decode) for c in columns)


_NO_COLUMNS = _Header((), 0)


class _TablePlan:
    __slots__ = ("clustering", "columns", "headers", "partition_key", "schema")

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
        # Serialized column header -> parsed: most updates of a table repeat a few headers.
        self.headers: dict[bytes, _Header] = {}


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


class _KnownTable:
    """What a table id in the log resolves to, kept until ``lookup`` returns a new schema."""

    __slots__ = ("captured", "plan", "schema", "table_id")

    def __init__(
        self, table_id: uuid.UUID, schema: TableSchema, plan: _TablePlan, captured: bool
    ) -> None:
        self.table_id = table_id
        self.schema = schema
        self.plan = plan
        self.captured = captured


class MutationDecoder:
    """Decodes commit log mutations, caching a plan per table and schema version.

    ``lookup`` should know every table whose mutations can appear in the commit log,
    system and non-CDC ones included: an update of an unknown table cannot be skipped
    (there are no lengths to skip by), so the whole entry fails with
    :class:`UnknownTableError`, while a table ``capture`` rejects (by default, those
    without ``cdc = true``) costs almost nothing. ``capture`` is asked once per schema
    object, so its answer must depend on the schema alone.
    """

    def __init__(self, lookup: TableLookup, *, capture: CapturePredicate = _is_cdc) -> None:
        self._lookup = lookup
        self._capture = capture
        # Raw id bytes -> table: building a UUID costs more than decoding a small cell.
        self._tables: dict[bytes, _KnownTable] = {}

    def _resolve(self, data: bytes, pos: int) -> _KnownTable:
        """Look a table id up for the first time, or again since its schema changed."""
        raw = data[pos : pos + 16]
        if len(raw) != 16:
            raise MutationDecodeError("mutation ends inside a table id", data)
        known = self._tables.get(raw)
        table_id = known.table_id if known is not None else uuid.UUID(bytes=raw)
        schema = self._lookup(table_id)
        if schema is None:
            raise UnknownTableError(table_id, data)
        if schema.table_id == table_id:
            # The schema's own id object is likely the one ``lookup`` is keyed by: a dict
            # then matches it by identity, skipping UUID.__eq__ on every later update.
            table_id = schema.table_id
        plan = known.plan if known is not None else None
        if plan is None or plan.schema.version != schema.version:
            plan = _TablePlan(schema)
        if len(self._tables) > 100_000:
            self._tables.clear()
        table = self._tables[raw] = _KnownTable(table_id, schema, plan, self._capture(schema))
        return table

    def decode(self, data: bytes, messaging_version: int) -> list[PartitionUpdate]:
        """The partition updates of one mutation, of the tables ``capture`` accepts."""
        live_ldt = _LIVE_LDT.get(messaging_version)
        if live_ldt is None:
            raise MutationDecodeError(f"messaging version {messaging_version}", data)
        updates = []
        tables = self._tables
        lookup = self._lookup
        try:
            count = data[0]
            pos = 1
            if count >= 0x80:
                count, pos = read_unsigned_vint(data, 0)
            for _ in range(count):
                # The table and its plan, current with ``lookup``; inline: once per update.
                table = tables.get(data[pos : pos + 16])
                if table is None or lookup(table.table_id) is not table.schema:
                    table = self._resolve(data, pos)
                if count == 1 and not table.captured:
                    return []  # the common uncaptured case: no need to read it through
                read = _plain_partition(data, pos + 16, table.plan, live_ldt)
                if read is None:
                    reader = _Reader(data, pos + 16, table.plan, live_ldt)
                    update = reader.partition()
                    pos = reader.pos
                else:
                    update, pos = read
                if table.captured:
                    updates.append(update)
        except MutationDecodeError:
            raise
        except (IndexError, ValueError, KeyError, UnicodeDecodeError, struct.error) as exc:
            raise MutationDecodeError(f"mutation does not decode: {exc!r}", data) from exc
        if pos != len(data):
            raise MutationDecodeError(f"{len(data) - pos} bytes left after the mutation", data)
        return updates


def _plain_partition(
    data: bytes, pos: int, plan: _TablePlan, live_ldt: int
) -> tuple[PartitionUpdate, int] | None:
    """The update at ``pos`` and its end, if all its rows are plain (an INSERT's shape).

    The same reading as :meth:`_Reader.partition`, cut down to that shape and kept in
    local variables: no reader object, no method calls per field. Anything else (a
    deletion, a static row, a marker, a cell that is not plain, a header not seen yet)
    gives None, and the caller reads the update again from its start with a
    :class:`_Reader`.
    """
    size = data[pos]
    if size >= 0x80:
        return None
    key_start = pos + 1
    key_end = key_start + size
    flags = data[key_end]
    if flags & _NOT_PLAIN_PARTITION:
        return None
    # Encoding stats; the TTL and deletion time bases are one byte unless rows expire.
    min_ts, pos = read_unsigned_vint(data, key_end + 1)
    min_ts += _TIMESTAMP_EPOCH
    if min_ts > _LONG_MAX:
        min_ts = _signed64(min_ts)
    min_ldt = data[pos]
    min_ttl = data[pos + 1]
    if min_ldt < 0x80 and min_ttl < 0x80:
        pos += 2
    else:
        min_ldt, pos = read_unsigned_vint(data, pos)
        min_ttl, pos = read_unsigned_vint(data, pos)
    min_ldt += _DELETION_TIME_EPOCH
    for serialized, header in plan.headers.items():
        if header.plain is not None and data.startswith(serialized, pos):
            break
    else:
        return None  # a header seen for the first time is parsed by the reader
    columns = header.plain
    pos += header.size
    if flags & _HAS_ROW_ESTIMATE:
        pos = pos + 1 if data[pos] < 0x80 else read_unsigned_vint(data, pos)[1]
    clustering_specs = plan.clustering
    clustering: tuple[Any, ...] = ()
    rows = []
    while True:
        row_flags = data[pos]
        pos += 1
        if row_flags & _END_OF_PARTITION:
            break
        if row_flags not in _PLAIN_ROW_FLAGS:
            return None
        if clustering_specs:
            clustering, pos = _clustering_values(data, pos, clustering_specs, len(clustering_specs))
        timestamp = data[pos]
        if timestamp < 0x80:
            pos += 1
        else:
            timestamp, pos = read_unsigned_vint(data, pos)
        timestamp += min_ts
        if timestamp > _LONG_MAX:
            timestamp = _signed64(timestamp)
        ttl = expiration = None
        cell_flags = _PLAIN_CELL
        if row_flags & _HAS_TTL:
            ttl, pos = read_unsigned_vint(data, pos)
            ttl = (ttl + min_ttl) & _MASK32
            expiration, pos = read_unsigned_vint(data, pos)
            expiration = _local_time(expiration + min_ldt, live_ldt)
            cell_flags = _PLAIN_EXPIRING_CELL
        # The cells, inline: a call per row costs as much as a cell. Those flags leave a
        # cell with nothing but its value: a fixed-size one, or a length under 128 and the
        # bytes; any other cell (a tombstone, its own timestamp, an empty or a long value)
        # sends the update to the reader.
        values = {}
        for name, fixed, decode in columns:
            if data[pos] != cell_flags:
                return None
            if fixed >= 0:
                pos += 1
                end = pos + fixed
            else:
                size = data[pos + 1]
                if size >= 0x80:
                    return None
                pos += 2
                end = pos + size
            values[name] = decode(data[pos:end])
            pos = end
        liveness = _new_tuple(Liveness, (timestamp, ttl, expiration))
        rows.append(Row(clustering, liveness, None, values, [], [], False))
    key = plan.partition_key(data[key_start:key_end])
    return PartitionUpdate(plan.schema, key, None, None, rows, [], _NONE_DROPPED, True), pos


class _Reader:
    """Reads one partition update; a cursor over the mutation with the encoding stats."""

    __slots__ = ("data", "dropped", "live_ldt", "min_ldt", "min_ts", "min_ttl", "plan", "pos")

    def __init__(self, data: bytes, pos: int, plan: _TablePlan, live_ldt: int) -> None:
        self.data = data
        self.pos = pos
        self.plan = plan
        self.live_ldt = live_ldt
        self.dropped = _NONE_DROPPED

    def vint(self) -> int:
        value, self.pos = read_unsigned_vint(self.data, self.pos)
        return value

    def timestamp(self) -> int:
        return _signed64(self.vint() + self.min_ts)

    def ldt(self) -> int | None:
        return _local_time(self.vint() + self.min_ldt, self.live_ldt)

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

    def header(self) -> _Header:
        start = self.pos
        data = self.data
        # Most updates of a table repeat a few headers: match the bytes, skip parsing.
        for serialized, known in self.plan.headers.items():
            if data.startswith(serialized, start):
                self.pos = start + known.size
                return known
        count = self.vint()
        names = [self.bytes_with_length() for _ in range(count)]
        plans = []
        for name in names:
            plan = self.plan.columns.get(name)
            if plan is None:
                raise UnknownColumnError(self.plan.schema, name.decode(), self.data)
            plans.append(plan)
        header = _Header(tuple(plans), self.pos - start)
        if len(self.plan.headers) < 16:
            self.plan.headers[self.data[start : self.pos]] = header
        return header

    def stats(self) -> None:
        """The update's encoding stats: the bases that timestamps, TTLs and local deletion
        times in it are written as deltas from."""
        data = self.data
        min_ts, pos = read_unsigned_vint(data, self.pos)
        self.min_ts = _signed64(min_ts + _TIMESTAMP_EPOCH)
        min_ldt, pos = read_unsigned_vint(data, pos)
        self.min_ldt = (min_ldt + _DELETION_TIME_EPOCH) & _MASK32
        self.min_ttl, self.pos = read_unsigned_vint(data, pos)

    def partition(self) -> PartitionUpdate:
        plan = self.plan
        data = self.data
        pos = self.pos
        size = data[pos]
        if size < 0x80:
            pos += 1
        else:
            size, pos = read_unsigned_vint(data, pos)
        end = pos + size
        key = plan.partition_key(data[pos:end])
        flags = data[end]
        self.pos = end + 1
        if flags & _IS_EMPTY:
            return PartitionUpdate(plan.schema, key, None, None, [], [])
        self.stats()
        statics = self.header() if flags & _HAS_STATIC_ROW else _NO_COLUMNS
        regulars = self.header()
        partition_deletion = None
        if flags & _HAS_PARTITION_DELETION:
            partition_deletion = self.deletion_time()
        static_row = None
        if flags & _HAS_STATIC_ROW:
            row_flags = data[self.pos]
            self.pos += 1
            static_row = self.row(row_flags, statics.columns)
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
                rows.append(self.row(row_flags, regulars.columns))
        return PartitionUpdate(
            plan.schema, key, partition_deletion, static_row, rows, markers, self.dropped
        )

    def clustering_values(self, count: int) -> tuple[Any, ...]:
        values, self.pos = _clustering_values(self.data, self.pos, self.plan.clustering, count)
        return values

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
        """Any row: cells of every kind, complex columns, deletions, a column subset."""
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
        plain_flags = -1  # matches no cell: without liveness, no cell is plain
        if flags & _HAS_TIMESTAMP:
            row_ts = self.timestamp()
            plain_flags = _PLAIN_CELL
            if flags & _HAS_TTL:
                row_ttl = (self.vint() + self.min_ttl) & _MASK32
                row_ldt = self.ldt()
                plain_flags = _PLAIN_EXPIRING_CELL
            liveness = Liveness(row_ts, row_ttl, row_ldt)
        deletion = self.deletion_time() if flags & _HAS_DELETION else None
        present = header_columns if flags & _HAS_ALL_COLUMNS else self.subset(header_columns)
        has_complex_deletion = flags & _HAS_COMPLEX_DELETION
        values: dict[str, Any] = {}
        cells: list[SimpleCell] = []
        complex_columns: list[ComplexColumn] = []
        for column in present:
            if column.dropped:
                self.dropped |= {column.name}
            if column.is_complex:
                complex_deletion = self.deletion_time() if has_complex_deletion else None
                cell_count = self.vint()
                column_cells = [
                    self.complex_cell(column, row_ts, row_ttl, row_ldt) for _ in range(cell_count)
                ]
                complex_columns.append(
                    ComplexColumn(column.name, column.kind, complex_deletion, column_cells)
                )
                continue
            cell_flags = data[self.pos]
            self.pos += 1
            timestamp = row_ts if cell_flags & _CELL_ROW_TIMESTAMP else self.timestamp()
            ttl: int | None = None
            ldt: int | None = None
            if cell_flags & (_CELL_DELETED | _CELL_EXPIRING):
                if cell_flags & _CELL_ROW_TTL:
                    ttl, ldt = row_ttl, row_ldt
                else:
                    ldt = self.ldt()
                    if cell_flags & _CELL_EXPIRING:
                        ttl = (self.vint() + self.min_ttl) & _MASK32
            if cell_flags & _CELL_EMPTY:
                raw = b""
            elif column.fixed >= 0:
                start = self.pos
                self.pos = start + column.fixed
                if self.pos > len(data):
                    raise IndexError(f"value at {start} runs past the mutation")
                raw = data[start : self.pos]
            else:
                raw = self.bytes_with_length()
            if cell_flags & _CELL_DELETED:
                cells.append((column.name, None, timestamp, None, ldt, True))
            elif cell_flags == plain_flags and column.plain:
                values[column.name] = column.decode(raw)
            else:
                cells.append((column.name, column.decode(raw), timestamp, ttl, ldt, False))
        return Row(clustering, liveness, deletion, values, cells, complex_columns, is_static)

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


def _clustering_values(
    data: bytes, pos: int, specs: tuple[tuple[int, ValueDecoder], ...], count: int
) -> tuple[tuple[Any, ...], int]:
    """The first ``count`` clustering values at ``pos``, and the position after them.

    Each group of 32 values is preceded by a vint of 2 bits per value: null, empty, or
    present (then fixed-size, or a vint length and the bytes).
    """
    values: list[Any] = []
    header = 0
    for index in range(count):
        if index % 32 == 0:
            header, pos = read_unsigned_vint(data, pos)
        bits = (header >> (2 * (index % 32))) & 3
        fixed, decode = specs[index]
        if bits & 2:
            values.append(None)
        elif bits & 1:
            values.append(decode(b""))
        else:
            if fixed < 0:
                fixed, pos = read_unsigned_vint(data, pos)
            end = pos + fixed
            if end > len(data):
                raise IndexError(f"clustering value at {pos} runs past the mutation")
            values.append(decode(data[pos:end]))
            pos = end
    return tuple(values), pos


def _local_time(value: int, live: int) -> int | None:
    """A local deletion or expiration time from its wire value (delta + base), None for
    "live". Messaging version 12 writes them signed, 13 and later unsigned (``live``
    is what each writes for "none")."""
    value &= _MASK32
    if value == live:
        return None
    if live == 0x7FFFFFFF and value > 0x7FFFFFFF:
        return value - (1 << 32)
    return value


def _signed64(value: int) -> int:
    """``value`` wrapped to a signed 64-bit long, as Java's addition of deltas does."""
    value &= _MASK64
    return value - (1 << 64) if value & _SIGN64 else value
