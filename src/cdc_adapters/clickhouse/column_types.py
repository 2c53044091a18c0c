"""CQL types as ClickHouse columns on a given server version, with their text forms.

The domain's :class:`SchemaMapper` names the modern ClickHouse types. Servers older than
those types get documented fallbacks (ADR 0006), chosen here once from the server
version: ``Map`` becomes a JSON ``String``, and so does an ``Array(Tuple(...))`` column
(stored as Nested sub-columns before 20.1), ``DateTime64(3, 'UTC')`` an ``Int64`` of
milliseconds since the epoch, ``Date32`` an ``Int32`` of days since the epoch. The SQL
type and the encoder of a column are built by the same function so they cannot disagree.

Key columns are written as TabSeparated text: a top-level field is TSV-escaped, a value
inside an Array/Tuple/Map is written as a quoted literal (ClickHouse's own text form).
Cell values travel inside strings that the current-state view casts back
(:mod:`cdc_adapters.clickhouse.cells`); current servers cannot cast text to a ``Map``,
so there a map's text is written *map-free*, as a tuple of its key and value arrays
(:func:`value_text`, :func:`mapless_sql`), which casts to the ``Map`` in a second step.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from cdc_domain.cql_types import CqlType
from cdc_domain.destinations import DestinationKind
from cdc_domain.type_mapping import MappedType, SchemaMapper, Unsupported
from cdc_domain.values import Duration, UdtValue, value_to_json

__all__ = [
    "ColumnCodec",
    "RejectedValueError",
    "ServerFeatures",
    "column_codec",
    "column_sql",
    "element_literal",
    "empty_text",
    "mapless_sql",
    "quoted",
    "tsv_escape",
    "value_text",
]

Encoder = Callable[[Any], str]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DAY = dt.date(1970, 1, 1)
_MILLI = dt.timedelta(milliseconds=1)
# The range ClickHouse's Date32 and DateTime64 hold; anything else it would clamp silently.
_MODERN_DATES = (dt.date(1900, 1, 1), dt.date(2299, 12, 31))
_INT_BITS = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}
_COMPOSITE = ("Array(", "Map(", "Tuple(")
_SMALLEST_NORMAL = 2.2250738585072014e-308


class RejectedValueError(ValueError):
    """A value the column cannot hold faithfully: the event is poison, not the batch."""


@attrs.frozen(slots=True)
class ServerFeatures:
    """What the connected server's types allow, decided once from ``SELECT version()``."""

    version: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> ServerFeatures:
        return cls(tuple(int(p) for p in re.findall(r"\d+", text)[:4]))

    @property
    def maps(self) -> bool:
        return self.version >= (21, 8)

    @property
    def arrays_of_tuples(self) -> bool:
        """Older servers store an ``Array(Tuple(...))`` column as Nested: one array per
        tuple element (``col.1``, ``col.2``), and ``col`` itself cannot be selected."""
        return self.version >= (20, 1)

    @property
    def datetime64(self) -> bool:
        return self.version >= (20, 1)

    @property
    def date32(self) -> bool:
        return self.version >= (21, 9)

    @property
    def subnormal_doubles(self) -> bool:
        """Older parsers read Float64 subnormals (< 2.2e-308) as 0 (seen on 18.16)."""
        return self.version >= (21, 6)


@attrs.frozen(slots=True)
class ColumnCodec:
    """A column's ClickHouse type, how a value becomes its TSV field (``encode``) and
    its SQL literal (``literal``, for key look-ups)."""

    sql: str
    encode: Encoder
    literal: Encoder


def column_codec(
    cql_type: CqlType, features: ServerFeatures, *, key: bool = False
) -> ColumnCodec | Unsupported:
    """The column for ``cql_type``; non-key scalars are Nullable (Cassandra cells may be
    null), composites are not (ClickHouse forbids it: an empty one stands for null)."""
    mapped = SchemaMapper().map(cql_type, DestinationKind.CLICKHOUSE)
    if isinstance(mapped, Unsupported):
        return mapped
    sql, nested = _typed(cql_type, mapped, features)
    if sql.startswith(_COMPOSITE):
        empty = {"A": "[]", "M": "{}"}.get(sql[0])
        tuple_nulls = _null_tuple(cql_type) if sql.startswith("Tuple(") else None
        null = empty or tuple_nulls or "\\N"
        return ColumnCodec(sql, _top_composite(nested, null), nested.literal)
    if not key:
        sql = f"Nullable({sql})"
    return ColumnCodec(sql, _top_scalar(nested), nested.literal)


def _null_tuple(cql_type: CqlType) -> str:
    return "(" + ",".join("NULL" for _ in cql_type.params) + ")"


def _typed(
    cql_type: CqlType, mapped: MappedType, f: ServerFeatures, *, mapless: bool = False
) -> tuple[str, _Nested]:
    if not f.maps and "Map(" in mapped.sql:
        return "String", _Nested(_json, quoted=True)
    if not f.arrays_of_tuples and mapped.sql.startswith("Array(Tuple("):
        return "String", _Nested(_json, quoted=True)
    return _fallback_sql(mapped.sql, f), _nested(cql_type, f, mapless=mapless)


def column_sql(cql_type: CqlType, features: ServerFeatures) -> str | Unsupported:
    """The ClickHouse type of a value of ``cql_type`` (no ``Nullable`` wrapper)."""
    mapped = SchemaMapper().map(cql_type, DestinationKind.CLICKHOUSE)
    if isinstance(mapped, Unsupported):
        return mapped
    return _typed(cql_type, mapped, features)[0]


def value_text(cql_type: CqlType, features: ServerFeatures) -> Encoder:
    """The text of a value of ``cql_type`` that ``CAST(text AS mapless_sql(type))``
    reads back: ClickHouse's literal form for composites (maps as a tuple of key and
    value arrays), the JSON of the fallbacks, the plain text of scalars. Unescaped."""
    mapped = SchemaMapper().map(cql_type, DestinationKind.CLICKHOUSE)
    assert isinstance(mapped, MappedType)
    return _typed(cql_type, mapped, features, mapless=True)[1].text


def element_literal(cql_type: CqlType, features: ServerFeatures) -> Encoder:
    """A value of ``cql_type`` as an element of a composite literal (quoted if text),
    maps written map-free as in :func:`value_text`."""
    return _nested(cql_type, features, mapless=True).literal


def mapless_sql(sql: str) -> str:
    """``sql`` with every ``Map(K, V)`` as ``Tuple(Array(K), Array(V))``: the type a
    map-free text is cast to before the cast to ``sql`` itself."""
    start = sql.find("Map(")
    if start < 0:
        return sql
    end = _closing(sql, start + 3)
    key, value = split_type_args(sql[start + 4 : end])
    inner = f"Tuple(Array({mapless_sql(key)}), Array({mapless_sql(value)}))"
    return sql[:start] + inner + mapless_sql(sql[end + 1 :])


def empty_text(sql: str) -> str:
    """The text of a composite type's empty value (Cassandra's null): ``[]``, ``{}``,
    and a tuple of its fields' empty values (``NULL`` for a nullable scalar)."""
    if sql.startswith("Array("):
        return "[]"
    if sql.startswith("Map("):
        return "{}"
    if sql.startswith("Tuple("):
        return "(" + ",".join(empty_text(t) for t in split_type_args(sql[6:-1])) + ")"
    return "NULL"


def _closing(sql: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(sql)):
        depth += sql[index] == "("
        depth -= sql[index] == ")"
        if depth == 0:
            return index
    raise ValueError(f"unbalanced type {sql!r}")


def split_type_args(inner: str) -> list[str]:
    """The arguments of a type's parentheses, split at top-level commas only (a
    ``Tuple(Array(Int32), Map(String, Int8))`` nests them)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(inner):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(inner[start:index].strip())
            start = index + 1
    parts.append(inner[start:].strip())
    return parts


def _fallback_sql(sql: str, f: ServerFeatures) -> str:
    if not f.datetime64:
        sql = sql.replace("DateTime64(3, 'UTC')", "Int64")
    if not f.date32:
        sql = re.sub(r"\bDate32\b", "Int32", sql)
    return sql


@attrs.frozen(slots=True)
class _Nested:
    """How a value is written as a literal: raw text, then quoted if it is a string.
    ``escaped`` text (blobs) is already in ClickHouse's escape syntax."""

    text: Encoder
    quoted: bool
    escaped: bool = False

    def literal(self, value: Any) -> str:
        if value is None:
            return "NULL"
        text = self.text(value)
        if self.escaped:
            return "'" + text + "'"
        return "'" + _escape(text).replace("'", "\\'") + "'" if self.quoted else text


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


tsv_escape = _escape
"""Text as a TabSeparated field: backslash, tab and newline escaped."""


def quoted(text: str) -> str:
    """Text as a quoted string literal, inside a composite TabSeparated field."""
    return "'" + _escape(text).replace("'", "\\'") + "'"


def _top_scalar(nested: _Nested) -> Encoder:
    text = nested.text
    if nested.escaped or not nested.quoted:  # blobs come escaped; numbers need no escape

        def encode(value: Any) -> str:
            return "\\N" if value is None else text(value)

        return encode

    def escape(value: Any) -> str:
        if value is None:
            return "\\N"
        plain = text(value)
        if "\\" in plain or "\t" in plain or "\n" in plain:
            return _escape(plain)
        return plain

    return escape


def _top_composite(nested: _Nested, null: str) -> Encoder:
    text = nested.text

    def encode(value: Any) -> str:
        return null if value is None else text(value)

    return encode


def _nested(cql_type: CqlType, f: ServerFeatures, *, mapless: bool = False) -> _Nested:
    name = cql_type.name
    if cql_type.is_udt:
        names = cql_type.field_names
        return _Nested(lambda v: _udt_json(v, names), quoted=True)
    if name in ("list", "set", "vector"):
        element = _nested(cql_type.params[0], f, mapless=mapless)
        ordered = name == "set"
        return _Nested(lambda v: _array(v, element, ordered), quoted=False)
    if name == "map":
        keys = _nested(cql_type.params[0], f, mapless=mapless)
        values = _nested(cql_type.params[1], f, mapless=mapless)
        if mapless:
            return _Nested(lambda v: _map_free(v, keys, values), quoted=False)

        def pairs(value: Any) -> str:
            return ",".join(f"{keys.literal(k)}:{values.literal(x)}" for k, x in value.items())

        return _Nested(lambda v: "{" + pairs(v) + "}", quoted=False)
    if name == "tuple":
        fields = [_nested(p, f, mapless=mapless) for p in cql_type.params]
        return _Nested(
            lambda v: "(" + ",".join(e.literal(x) for e, x in zip(fields, v, strict=True)) + ")",
            quoted=False,
        )
    return _native(name, f)


def _map_free(value: Any, keys: _Nested, values: _Nested) -> str:
    items = list(value.items())
    key_list = ",".join(keys.literal(k) for k, _ in items)
    return f"([{key_list}],[{','.join(values.literal(x) for _, x in items)}])"


def _array(values: Any, element: _Nested, ordered: bool) -> str:
    items = list(values)
    if ordered:
        try:
            items.sort()
        except TypeError:
            items.sort(key=repr)
    return "[" + ",".join(element.literal(x) for x in items) + "]"


def _native(name: str, f: ServerFeatures) -> _Nested:
    if name in _INT_BITS:
        return _Nested(_integer(_INT_BITS[name]), quoted=False)
    simple: dict[str, tuple[Encoder, bool]] = {
        "ascii": (str, True),
        "text": (str, True),
        "varint": (lambda v: str(int(v)), True),
        "decimal": (lambda v: str(Decimal(v)), True),
        "float": (repr, False),
        "double": (repr if f.subnormal_doubles else _normal_double, False),
        "boolean": (lambda v: "1" if v else "0", False),
        "uuid": (str, True),
        "timeuuid": (str, True),
        "inet": (str, True),
        "duration": (_duration, True),
        "time": (_time_nanos, False),
        "timestamp": (_datetime64, True) if f.datetime64 else (_millis, False),
        "date": (_date32, True) if f.date32 else (_days, False),
    }
    if name == "blob":
        return _Nested(_blob, quoted=True, escaped=True)
    text, quoted = simple[name]
    return _Nested(text, quoted)


# Printable ASCII but the backslash and the quote: anything else travels as \\xHH, so
# arbitrary bytes pass through text-only layers (and chdb's UTF-8 query strings) intact.
_BLOB_BYTES = [
    chr(b) if 0x20 <= b < 0x7F and b not in (0x5C, 0x27) else f"\\x{b:02x}" for b in range(256)
]


def _blob(value: bytes) -> str:
    return "".join([_BLOB_BYTES[b] for b in bytes(value)])


def _integer(bits: int) -> Encoder:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def encode(value: Any) -> str:
        number = int(value)
        if not low <= number <= high:
            raise RejectedValueError(f"{number} does not fit in Int{bits}")
        return str(number)

    return encode


def _normal_double(value: float) -> str:
    if 0 < abs(value) < _SMALLEST_NORMAL:
        raise RejectedValueError(f"this ClickHouse server would read {value!r} as 0")
    return repr(value)


def _millis(value: dt.datetime) -> str:
    return str((_aware(value) - _EPOCH) // _MILLI)


def _datetime64(value: dt.datetime) -> str:
    value = _aware(value).astimezone(dt.UTC)
    if not _MODERN_DATES[0] <= value.date() <= _MODERN_DATES[1]:
        raise RejectedValueError(f"{value.isoformat()} is outside ClickHouse's DateTime64 range")
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise RejectedValueError("a naive timestamp is ambiguous; Cassandra timestamps are UTC")
    return value


def _days(value: dt.date) -> str:
    return str((value - _EPOCH_DAY).days)


def _date32(value: dt.date) -> str:
    if not _MODERN_DATES[0] <= value <= _MODERN_DATES[1]:
        raise RejectedValueError(f"{value.isoformat()} is outside ClickHouse's Date32 range")
    return value.isoformat()


def _time_nanos(value: dt.time) -> str:
    seconds = (value.hour * 60 + value.minute) * 60 + value.second
    return str(seconds * 1_000_000_000 + value.microsecond * 1000)


def _duration(value: Duration) -> str:
    """Cassandra's own duration literal (``1mo2d3ns``); the three parts share one sign."""
    sign = "-" if min(value.months, value.days, value.nanoseconds) < 0 else ""
    return f"{sign}{abs(value.months)}mo{abs(value.days)}d{abs(value.nanoseconds)}ns"


def _udt_json(value: UdtValue | Mapping[str, Any], names: tuple[str, ...]) -> str:
    """A UDT as a JSON object of every declared field; a non-frozen UDT's state is the
    mapping of the fields that have a live cell."""
    fields = value.as_dict() if isinstance(value, UdtValue) else value
    return json.dumps({name: value_to_json(fields.get(name)) for name in names}, ensure_ascii=False)


def _json(value: Any) -> str:
    return json.dumps(value_to_json(value), ensure_ascii=False)
