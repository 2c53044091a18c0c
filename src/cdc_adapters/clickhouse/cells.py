"""One version of one Cassandra cell as one string whose order is Cassandra's own.

Every cell version (a column's value in one event, a collection element, a row marker,
a tombstone) is written as text that sorts, byte by byte, exactly as Cassandra's
``Cells.reconcile`` ranks versions (:func:`cdc_domain.reconciliation.cell_rank`), so
ClickHouse's ``max`` over strings *is* last-write-wins, commutative and idempotent:

========  =======================================================================
chars     meaning
========  =======================================================================
1-16      the write timestamp + 2^63, 16 lower-case hex digits (sorts as the number)
17        ``0`` a live cell, ``1`` an expiring cell (TTL), ``2`` a tombstone
18-29     only for ``1``: the expiry in seconds + 10^11, 12 decimal digits
then      the value (absent for a tombstone), so that among versions of equal
          timestamp, class and expiry the greater serialized value wins
========  =======================================================================

The value part takes one of three shapes, chosen per type so the common types cost
little to write and nothing to parse back:

- *raw*: text, ascii and blob are the value itself; their bytes are their serialized
  bytes, so ClickHouse's string order is Cassandra's.
- *fixed*: types whose serialized form has a fixed width (floats, booleans, uuids,
  timestamps, dates, times) are those bytes in hex; the view reinterprets them
  (exactly: a double is its IEEE bits, never a decimal the old server misreads).
  Integers of every width are the 64-bit form, which orders them the same.
- *tagged*: every other type is the hex of its serialized bytes, a space (which sorts
  below every hex digit, so a shorter byte string that is a prefix of a longer one
  sorts first, as in Cassandra), then the value's text, which the view casts back.

An absent cell is the empty string, below every version. A :class:`CellCodec` writes
a column's value part and gives the SQL that reads it back in the current-state view;
an :class:`ElementCodec` does the same for the elements of a non-frozen collection or
UDT, each its own cell.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from cdc_adapters.clickhouse.column_types import (
    RejectedValueError,
    ServerFeatures,
    column_sql,
    element_literal,
    empty_text,
    mapless_sql,
    tsv_escape,
    value_text,
)
from cdc_adapters.clickhouse.sql import quote_string
from cdc_domain.cql_types import CqlType
from cdc_domain.reconciliation import element_type, value_bytes
from cdc_domain.type_mapping import Unsupported
from cdc_domain.values import value_to_json

__all__ = [
    "NOW",
    "TS_OFFSET",
    "CellCodec",
    "ElementCodec",
    "cell_codec",
    "element_codec",
    "expiry_text",
    "live_sql",
    "null_sql",
    "rest_sql",
    "stamp",
]

TS_OFFSET = 1 << 63
_EXPIRY_OFFSET = 10**11
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DAY = dt.date(1970, 1, 1)
_MODERN_DATES = (dt.date(1900, 1, 1), dt.date(2299, 12, 31))
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")
_INT_BITS = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}
NOW = "toString(toUInt64(now()) + 100000000000)"

Suffix = Callable[[Any], str]


def stamp(timestamp: int) -> str:
    """A write timestamp as the first 16 characters of a cell (rejects what Cassandra's
    64-bit timestamps cannot hold)."""
    if not -TS_OFFSET <= timestamp < TS_OFFSET:
        raise RejectedValueError(f"timestamp {timestamp} is outside 64 bits")
    return f"{timestamp + TS_OFFSET:016x}"


def expiry_text(expires_at: dt.datetime) -> str:
    """An expiry as characters 18-29 of an expiring cell: whole seconds, as Cassandra's
    local deletion time and :func:`~cdc_domain.reconciliation.cell_rank` have it."""
    return f"{int(expires_at.timestamp()) + _EXPIRY_OFFSET:012d}"


def rest_sql(cell: str) -> str:
    """SQL of the value part of a cell."""
    return f"substring({cell}, if(substring({cell}, 17, 1) = '1', 30, 18))"


def live_sql(cell: str, floor: str, now: str = NOW) -> str:
    """SQL: the cell is a live (or not yet expired) value written after ``floor`` (the
    newest covering tombstone's 16-character stamp, or ''); ``now`` is the SQL of the
    current time as characters 18-29 of a cell."""
    kind = f"substring({cell}, 17, 1)"
    return (
        f"(({kind} = '0' OR ({kind} = '1' AND substring({cell}, 18, 12) > {now})) "
        f"AND substring({cell}, 1, 16) > {floor})"
    )


def null_sql(sql: str) -> str:
    """SQL of a null of type ``sql``; composites cannot be null, so their empty value."""
    if not sql.startswith(("Array(", "Map(", "Tuple(")):
        return f"CAST(NULL AS Nullable({sql}))"
    parse = mapless_sql(sql)
    cast = f"CAST({quote_string(empty_text(parse))} AS {parse})"
    return cast if parse == sql else f"CAST({cast} AS {sql})"


def _payload(rest: str) -> str:
    return f"substring({rest}, position({rest}, ' ') + 1)"


@attrs.frozen(slots=True)
class CellCodec:
    """A column's cells: ``suffix`` writes a value's part of a cell as a TabSeparated
    field fragment; ``decode`` is the SQL of the value, given the SQL of that part
    (``idle`` is a part that decodes without error, used for absent cells, since SQL
    evaluates both branches of an ``if``); ``sql`` is the type the view shows."""

    sql: str
    suffix: Suffix
    decode: Callable[[str], str]
    idle: str = "''"
    composite: bool = False

    def shown(self, rest: str, live: str) -> str:
        """SQL of the column in the view: its value while ``live``, else null (a
        composite's empty value). ``rest`` is the SQL of the value part of a live cell,
        else of :attr:`idle`."""
        if self.composite:
            return self.decode(rest)
        return f"if({live}, {self.decode(rest)}, NULL)"


def cell_codec(cql_type: CqlType, features: ServerFeatures) -> CellCodec | Unsupported:
    """How cells of a column of ``cql_type`` are written and read on this server."""
    sql = column_sql(cql_type, features)
    if isinstance(sql, Unsupported):
        return sql
    name = cql_type.name
    if name in ("text", "ascii"):
        return CellCodec("Nullable(String)", _text, _same)
    if name == "blob":
        return CellCodec("Nullable(String)", _blob, _same)
    if name in _INT_BITS:
        return CellCodec(f"Nullable({sql})", _int_hex(_INT_BITS[name]), _int_decode(sql))
    fixed = _fixed(name, sql, features)
    if fixed is not None:
        return fixed
    if name in ("varint", "decimal"):
        # Widened from an integer type (ALTER ... TYPE varint): older cells are fixed.
        return CellCodec("Nullable(String)", _tagged(cql_type, str), _number_text)
    if sql == "String":  # duration, inet, UDTs, and the JSON of the old servers' fallbacks
        return CellCodec(
            "Nullable(String)", _tagged(cql_type, value_text(cql_type, features)), _payload
        )
    parse = mapless_sql(sql)
    text = value_text(cql_type, features)
    empty = quote_string(empty_text(parse))

    def decode(rest: str) -> str:
        value = f"if({rest} = '', {empty}, {_payload(rest)})"
        cast = f"CAST({value} AS {parse})"
        return cast if parse == sql else f"CAST({cast} AS {sql})"

    return CellCodec(sql, _tagged(cql_type, text), decode, composite=True)


def _same(rest: str) -> str:
    return rest


def _text(value: Any) -> str:
    text = value if type(value) is str else str(value)
    if "\\" in text or "\t" in text or "\n" in text:
        return tsv_escape(text)
    return text


# Printable ASCII but the backslash and the quote: anything else travels as \xHH, so
# arbitrary bytes pass through text-only layers (and chdb's UTF-8 query strings) intact.
_BLOB_BYTES = [
    chr(b) if 0x20 <= b < 0x7F and b not in (0x5C, 0x27) else f"\\x{b:02x}" for b in range(256)
]


def _blob(value: Any) -> str:
    return "".join([_BLOB_BYTES[b] for b in bytes(value)])


def _int_hex(bits: int) -> Suffix:
    """Any integer type as the 16 hex digits of its 64-bit two's complement: sign
    extension keeps the unsigned order of the narrower serialized form (what Cassandra
    compares), and a column widened in place keeps one width for all its cells."""
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def suffix(value: Any) -> str:
        number = value if type(value) is int else int(value)
        if not low <= number <= high:
            raise RejectedValueError(f"{number} does not fit in Int{bits}")
        return format(number & 0xFFFFFFFFFFFFFFFF, "016x")

    return suffix


def _int_decode(sql: str) -> Callable[[str], str]:
    return lambda rest: f"CAST(reinterpretAsInt64(reverse(unhex({rest}))) AS {sql})"


def _number_text(rest: str) -> str:
    """A varint or decimal, or an integer cell written before the column was widened."""
    older = f"toString(reinterpretAsInt64(reverse(unhex({rest}))))"
    return f"if(position({rest}, ' ') > 0, {_payload(rest)}, {older})"


def _fixed(name: str, sql: str, features: ServerFeatures) -> CellCodec | None:
    if name == "float":
        return CellCodec(
            "Nullable(Float32)", _float, lambda r: f"reinterpretAsFloat32(reverse(unhex({r})))"
        )
    if name == "double":
        return CellCodec("Nullable(Float64)", _double, _double_decode)
    if name == "boolean":
        return CellCodec("Nullable(UInt8)", _boolean, lambda r: f"toUInt8({r} = '01')")
    if name in ("uuid", "timeuuid"):
        return CellCodec("Nullable(UUID)", _uuid, _uuid_decode, idle="'" + "0" * 32 + "'")
    if name == "time":
        return CellCodec("Nullable(Int64)", _time, _int64)
    if name == "timestamp":
        if features.datetime64:
            return CellCodec(f"Nullable({sql})", _timestamp(modern=True), _datetime64)
        return CellCodec("Nullable(Int64)", _timestamp(modern=False), _int64)
    if name == "date":
        if features.date32:
            return CellCodec(f"Nullable({sql})", _date(modern=True), _date32)
        return CellCodec("Nullable(Int32)", _date(modern=False), _days)
    return None


def _float(value: Any) -> str:
    try:
        return _FLOAT.pack(value).hex()
    except (OverflowError, struct.error) as exc:
        raise RejectedValueError(f"{value!r} is not a float: {exc}") from exc


def _double(value: Any) -> str:
    return _DOUBLE.pack(value).hex()


def _double_decode(rest: str) -> str:
    # A float column widened to double keeps its 4-byte cells.
    single = f"toFloat64(reinterpretAsFloat32(reverse(unhex({rest}))))"
    return f"if(length({rest}) = 8, {single}, reinterpretAsFloat64(reverse(unhex({rest}))))"


def _boolean(value: Any) -> str:
    return "01" if value else "00"


def _uuid(value: Any) -> str:
    return value.hex if type(value) is uuid.UUID else uuid.UUID(str(value)).hex


def _uuid_decode(rest: str) -> str:
    parts = ", '-', ".join(f"substring({rest}, {a}, {n})" for a, n in _UUID_PARTS)
    return f"toUUID(concat({parts}))"


_UUID_PARTS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _int64(rest: str) -> str:
    return f"reinterpretAsInt64(reverse(unhex({rest})))"


def _datetime64(rest: str) -> str:
    return f"fromUnixTimestamp64Milli({_int64(rest)}, 'UTC')"


def _days(rest: str) -> str:
    return f"toInt32(toInt64(reinterpretAsUInt32(reverse(unhex({rest})))) - 2147483648)"


def _date32(rest: str) -> str:
    days = f"toInt64(reinterpretAsUInt32(reverse(unhex({rest})))) - 2147483648"
    return f"addDays(toDate32('1970-01-01'), {days})"


def _timestamp(*, modern: bool) -> Suffix:
    def suffix(value: Any) -> str:
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise RejectedValueError(
                    "a naive timestamp is ambiguous; Cassandra timestamps are UTC"
                )
            delta = value - _EPOCH
            if (
                modern
                and not _MODERN_DATES[0] <= value.astimezone(dt.UTC).date() <= _MODERN_DATES[1]
            ):
                raise RejectedValueError(
                    f"{value.isoformat()} is outside ClickHouse's DateTime64 range"
                )
            millis = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
        else:
            millis = int(value)
        return format(millis & 0xFFFFFFFFFFFFFFFF, "016x")

    return suffix


def _date(*, modern: bool) -> Suffix:
    def suffix(value: Any) -> str:
        if isinstance(value, dt.date):
            if modern and not _MODERN_DATES[0] <= value <= _MODERN_DATES[1]:
                raise RejectedValueError(
                    f"{value.isoformat()} is outside ClickHouse's Date32 range"
                )
            days = (value - _EPOCH_DAY).days
        else:
            days = int(value)
        return format(days + (1 << 31), "08x")

    return suffix


def _time(value: Any) -> str:
    seconds = value.hour * 3600 + value.minute * 60 + value.second
    return format((seconds * 1_000_000 + value.microsecond) * 1000, "016x")


def _tagged(cql_type: CqlType, text: Callable[[Any], str]) -> Suffix:
    def suffix(value: Any) -> str:
        return value_bytes(cql_type, value).hex() + " " + tsv_escape(text(value))

    return suffix


@attrs.frozen(slots=True)
class ElementCodec:
    """The elements of a non-frozen collection or UDT column, each its own cell.

    ``key`` is an element's identity, ordered as the view lists them (a list's cell
    timeuuid by time, a set's or map's serialized key, a UDT's field name): prefixed
    with ``k``, since the empty key holds the column's deletion time (an overwrite or a
    column delete, below which no element is shown). ``cell`` is an element's value
    part: the hex of its serialized value, a space, and its fragment of the whole
    value's text. ``build`` is the SQL of the column's value from the SQL of the
    comma-joined fragments of its live elements, in key order."""

    kind: str
    key: Callable[[Any], str]
    cell: Callable[[Any, Any], str]
    build: Callable[[str], str]


def element_codec(cql_type: CqlType, kind: str, features: ServerFeatures) -> ElementCodec:
    sql = column_sql(cql_type, features)
    assert isinstance(sql, str)
    value_type = element_type(cql_type, kind)
    if kind == "udt":
        return ElementCodec(kind, _field_key, _udt_cell(value_type), _udt_build)
    params = cql_type.params
    json_target = sql == "String"
    if kind == "list":
        fragment = _json_text if json_target else element_literal(params[0], features)
        build = _json_build("[", "]") if json_target else _array_build(sql)
        return ElementCodec(kind, _list_key, _value_cell(value_type, fragment), build)
    key_type = params[0]
    serialize_key = _serialized(key_type)
    if kind == "set":
        fragment = _json_text if json_target else element_literal(key_type, features)
        build = _json_build('{"$set":[', "]}") if json_target else _array_build(sql)
        return ElementCodec(kind, serialize_key, _set_cell(fragment), build)
    if json_target:

        def pair(key: Any, value: Any) -> str:
            return f"[{_json_text(key)},{_json_text(value)}]"

        return ElementCodec(
            kind, serialize_key, _pair_cell(value_type, pair), _json_build('{"$map":[', "]}")
        )
    keys, values = element_literal(params[0], features), element_literal(params[1], features)
    entry = f"Tuple({_mapless_of(params[0], features)}, {_mapless_of(params[1], features)})"
    return ElementCodec(
        kind,
        serialize_key,
        _pair_cell(value_type, lambda k, v: f"({keys(k)},{values(v)})"),
        _map_build(sql, entry),
    )


def _mapless_of(cql_type: CqlType, features: ServerFeatures) -> str:
    sql = column_sql(cql_type, features)
    assert isinstance(sql, str)
    return mapless_sql(sql)


def _serialized(key_type: CqlType) -> Callable[[Any], str]:
    return lambda key: "k" + value_bytes(key_type, key).hex()


def _list_key(key: Any) -> str:
    if isinstance(key, uuid.UUID):
        return f"k{key.time:015x}{key.int:032x}"
    return "k" + str(key)


def _field_key(key: Any) -> str:
    return "k" + str(key)


def _json_text(value: Any) -> str:
    return json.dumps(value_to_json(value), ensure_ascii=False)


def _value_cell(
    value_type: Callable[[Any], CqlType | None], fragment: Callable[[Any], str]
) -> Callable[[Any, Any], str]:
    def cell(key: Any, value: Any) -> str:
        return value_bytes(value_type(key), value).hex() + " " + fragment(value)

    return cell


def _set_cell(fragment: Callable[[Any], str]) -> Callable[[Any, Any], str]:
    return lambda key, _: " " + fragment(key)


def _pair_cell(
    value_type: Callable[[Any], CqlType | None], pair: Callable[[Any, Any], str]
) -> Callable[[Any, Any], str]:
    def cell(key: Any, value: Any) -> str:
        return value_bytes(value_type(key), value).hex() + " " + pair(key, value)

    return cell


def _udt_cell(value_type: Callable[[Any], CqlType | None]) -> Callable[[Any, Any], str]:
    def cell(key: Any, value: Any) -> str:
        fragment = json.dumps(str(key)) + ":" + _json_text(value)
        return value_bytes(value_type(key), value).hex() + " " + fragment

    return cell


def _udt_build(fragments: str) -> str:
    return f"concat('{{', {fragments}, '}}')"


def _json_build(opening: str, closing: str) -> Callable[[str], str]:
    return lambda fragments: (
        f"concat({quote_string(opening)}, {fragments}, {quote_string(closing)})"
    )


def _array_build(sql: str) -> Callable[[str], str]:
    parse = mapless_sql(sql)

    def build(fragments: str) -> str:
        cast = f"CAST(concat('[', {fragments}, ']') AS {parse})"
        return cast if parse == sql else f"CAST({cast} AS {sql})"

    return build


def _map_build(sql: str, entry: str) -> Callable[[str], str]:
    def build(fragments: str) -> str:
        return f"CAST(CAST(concat('[', {fragments}, ']') AS Array({entry})) AS {sql})"

    return build
