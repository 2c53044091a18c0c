"""Column values between the domain's Python values and what asyncpg sends and returns.

The conversion is directed by the column's CQL type, not by the Python value: the same
``int`` is a ``smallint`` in one column and a ``numeric`` (varint) in another, and a
jsonb document can only be turned back into a ``UUID`` or a ``Decimal`` by knowing the
type it was written as. Values are checked on the way in (range, type, time zone), so
a bad value is rejected with the event that carried it before any SQL runs.

jsonb holds what PostgreSQL has no native type for (maps, tuples, UDTs, nested
collections) in a form readable without this code: objects for maps and UDTs, arrays
for lists, sets and tuples, numbers for integers of any size (jsonb numbers are exact),
strings for decimals, UUIDs, timestamps (ISO 8601, UTC), blobs (base64) and inet.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import ipaddress
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

import attrs

from cdc_domain.cql_types import CqlType
from cdc_domain.values import Duration, UdtValue

__all__ = [
    "ColumnCodec",
    "UnwritableValueError",
    "canonical_json",
    "canonical_text",
    "json_converter",
    "list_key_text",
    "to_json",
]

Convert = Callable[[Any], Any]


class UnwritableValueError(ValueError):
    """A value the column's type cannot hold (wrong type, out of range, lossy)."""


def _fail(cql: str, value: Any, why: str = "") -> UnwritableValueError:
    detail = f": {why}" if why else ""
    shown = repr(value)[:80]
    return UnwritableValueError(f"{type(value).__name__} {shown} is not a valid {cql}{detail}")


def _integer(bits: int | None, cql: str) -> Convert:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if bits else (None, None)

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(cql, value)
        if low is not None and high is not None and not low <= value <= high:
            raise _fail(cql, value, "out of range")
        return value

    return check


def _instance(cls: type | tuple[type, ...], cql: str) -> Convert:
    def check(value: Any) -> Any:
        if not isinstance(value, cls) or (cls is not bool and isinstance(value, bool)):
            raise _fail(cql, value)
        return value

    return check


def _floating(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("float", value)
    return float(value)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise _fail("decimal", value)
    result = Decimal(value)
    if not result.is_finite():
        raise _fail("decimal", value, "not finite")
    return result


def _timestamp(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise _fail("timestamp", value, "needs a timezone-aware datetime")
    return value


def _date(value: Any) -> dt.date:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise _fail("date", value)
    return value


def _inet(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise _fail("inet", value)
    return value


def _blob(value: Any) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise _fail("blob", value)
    return bytes(value)


def _duration_to_db(value: Any) -> tuple[int, int, int]:
    if not isinstance(value, Duration):
        raise _fail("duration", value)
    if value.nanoseconds % 1000:
        raise _fail("duration", value, "an interval holds microseconds, not nanoseconds")
    return (value.months, value.days, value.nanoseconds // 1000)


def _duration_from_db(value: tuple[int, int, int]) -> Duration:
    months, days, micros = value
    return Duration(months, days, micros * 1000)


_TEXT = _instance(str, "text")
_UUID = _instance(uuid.UUID, "uuid")
_TIME = _instance(dt.time, "time")
_BOOL = _instance(bool, "boolean")

# CQL native type -> (to the driver, from the driver) for native PostgreSQL columns.
_NATIVE: dict[str, tuple[Convert, Convert]] = {
    "ascii": (_TEXT, str),
    "text": (_TEXT, str),
    "tinyint": (_integer(8, "tinyint"), int),
    "smallint": (_integer(16, "smallint"), int),
    "int": (_integer(32, "int"), int),
    "bigint": (_integer(64, "bigint"), int),
    "counter": (_integer(64, "counter"), int),
    "varint": (lambda v: Decimal(_integer(None, "varint")(v)), int),
    "decimal": (_decimal, Decimal),
    "float": (_floating, float),
    "double": (_floating, float),
    "boolean": (_BOOL, bool),
    "uuid": (_UUID, lambda v: v),
    "timeuuid": (_UUID, lambda v: v),
    # asyncpg sends datetime.min/max as -/+infinity and returns those naive.
    "timestamp": (_timestamp, lambda v: v if v.tzinfo else v.replace(tzinfo=dt.UTC)),
    "date": (_date, lambda v: v),
    "time": (_TIME, lambda v: v),
    "duration": (_duration_to_db, _duration_from_db),
    "inet": (_inet, ipaddress.ip_address),
    "blob": (_blob, bytes),
}

# JSON forms of native values; the ones that are JSON strings are listed so that map
# keys (always strings in a jsonb object) of those types are not JSON-quoted twice.
_STRING_FORMS = {
    "ascii", "text", "decimal", "uuid", "timeuuid", "timestamp", "date", "time", "inet", "blob",
}  # fmt: skip


def _float_to_json(value: Any) -> float | str:
    number = _floating(value)
    if math.isfinite(number):
        return number
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def _float_from_json(data: float | int | str) -> float:
    return float(data)


_NATIVE_JSON: dict[str, tuple[Convert, Convert]] = {
    "ascii": (_TEXT, str),
    "text": (_TEXT, str),
    "tinyint": (_integer(8, "tinyint"), int),
    "smallint": (_integer(16, "smallint"), int),
    "int": (_integer(32, "int"), int),
    "bigint": (_integer(64, "bigint"), int),
    "counter": (_integer(64, "counter"), int),
    "varint": (_integer(None, "varint"), int),
    "decimal": (lambda v: str(_decimal(v)), Decimal),
    "float": (_float_to_json, _float_from_json),
    "double": (_float_to_json, _float_from_json),
    "boolean": (_BOOL, bool),
    "uuid": (lambda v: str(_UUID(v)), uuid.UUID),
    "timeuuid": (lambda v: str(_UUID(v)), uuid.UUID),
    "timestamp": (
        lambda v: _timestamp(v).astimezone(dt.UTC).isoformat(),
        dt.datetime.fromisoformat,
    ),
    "date": (lambda v: _date(v).isoformat(), dt.date.fromisoformat),
    "time": (lambda v: _TIME(v).isoformat(), dt.time.fromisoformat),
    "duration": (
        lambda v: dict(zip(("months", "days", "nanoseconds"), _duration_tuple(v), strict=True)),
        lambda d: Duration(d["months"], d["days"], d["nanoseconds"]),
    ),
    "inet": (lambda v: str(_inet(v)), ipaddress.ip_address),
    "blob": (lambda v: base64.b64encode(_blob(v)).decode("ascii"), base64.b64decode),
}


def _duration_tuple(value: Any) -> tuple[int, int, int]:
    if not isinstance(value, Duration):
        raise _fail("duration", value)
    return (value.months, value.days, value.nanoseconds)


def _sorted(values: Iterable[Any], key: Callable[[Any], Any] | None = None) -> list[Any]:
    """A canonical order for set elements (keys must compare equal across writers)."""
    items = list(values)
    try:
        return sorted(items, key=key)
    except TypeError:
        return sorted(items, key=repr)


def canonical_json(data: Any) -> str:
    """JSON text that is the same for equal values, whoever writes it."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)


def canonical_text(data: Any) -> str:
    """:func:`canonical_json`'s text, made directly for a string or an integer (what it
    would produce: ``json.dumps`` encodes those two with exactly these functions): set
    elements are sorted and keyed by it, and building an encoder per element cost more
    than the rest of a history row."""
    kind = data.__class__
    if kind is str:
        return _json_string(data)
    if kind is int:
        return int.__repr__(data)
    return canonical_json(data)


def json_converter(cql_type: CqlType) -> Callable[[Any], Any]:
    """:func:`to_json` for one type, its dispatch done once: a history row converts
    every column of every event, and looking its type's converter up each time cost
    as much as converting."""
    if not cql_type.is_native:
        return functools.partial(to_json, cql_type)
    convert = _NATIVE_JSON[cql_type.name][0]

    def native(value: Any) -> Any:
        return None if value is None else convert(value)

    return native


def to_json(cql_type: CqlType, value: Any) -> Any:
    """The jsonb form of ``value`` (see the module docstring)."""
    if value is None:
        return None
    name = cql_type.name
    if cql_type.is_native:
        return _NATIVE_JSON[name][0](value)
    if name in ("list", "vector"):
        if not isinstance(value, list | tuple):
            raise _fail(cql_type.cql(), value)
        return [to_json(cql_type.params[0], v) for v in value]
    if name == "set":
        if not isinstance(value, set | frozenset | list | tuple):
            raise _fail(cql_type.cql(), value)
        encoded = [to_json(cql_type.params[0], v) for v in value]
        return _sorted(encoded, key=canonical_text)
    if name == "map":
        if not isinstance(value, Mapping):
            raise _fail(cql_type.cql(), value)
        key_type, value_type = cql_type.params
        return {key_text(key_type, k): to_json(value_type, v) for k, v in value.items()}
    if name == "tuple":
        if not isinstance(value, tuple | list) or len(value) != len(cql_type.params):
            raise _fail(cql_type.cql(), value)
        return [to_json(t, v) for t, v in zip(cql_type.params, value, strict=True)]
    if cql_type.is_udt:
        fields = value.as_dict() if isinstance(value, UdtValue) else value
        if not isinstance(fields, Mapping):
            raise _fail(cql_type.cql(), value)
        types = dict(zip(cql_type.field_names, cql_type.params, strict=True))
        unknown = set(fields) - set(types)
        if unknown:
            raise _fail(cql_type.cql(), value, f"no field(s) {sorted(unknown)}")
        return {f: to_json(types[f], v) for f, v in fields.items()}
    raise _fail(cql_type.cql(), value, "no jsonb form for this type")


def from_json(cql_type: CqlType, data: Any) -> Any:
    """Inverse of :func:`to_json`."""
    if data is None:
        return None
    name = cql_type.name
    if cql_type.is_native:
        return _NATIVE_JSON[name][1](data)
    if name in ("list", "vector"):
        return [from_json(cql_type.params[0], v) for v in data]
    if name == "set":
        return frozenset(from_json(cql_type.params[0], v) for v in data)
    if name == "map":
        key_type, value_type = cql_type.params
        return {key_from_text(key_type, k): from_json(value_type, v) for k, v in data.items()}
    if name == "tuple":
        return tuple(from_json(t, v) for t, v in zip(cql_type.params, data, strict=True))
    types = dict(zip(cql_type.field_names, cql_type.params, strict=True))
    return UdtValue(tuple((f, from_json(types[f], data[f])) for f in types if f in data))


def key_text(cql_type: CqlType, value: Any) -> str:
    """A map key as a jsonb object key: strings as they are, anything else as JSON text."""
    encoded = to_json(cql_type, value)
    return encoded if isinstance(encoded, str) else canonical_text(encoded)


def key_from_text(cql_type: CqlType, text: str) -> Any:
    if cql_type.is_native and cql_type.name in _STRING_FORMS:
        return from_json(cql_type, text)
    return from_json(cql_type, json.loads(text))


def list_key_text(key: Any) -> str:
    """A list cell's key (a timeuuid) as text that sorts in the list's order.

    Cassandra orders list cells by their timeuuid's time, then by the whole uuid.
    """
    if isinstance(key, uuid.UUID):
        return f"{key.time:016x}{key.int:032x}"
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return f"{0:016x}{key:032x}"
    raise UnwritableValueError(f"list element key {key!r} is not a timeuuid")


@attrs.frozen(slots=True)
class ColumnCodec:
    """How one column's values travel: ``to_db`` checks and converts a domain value for
    asyncpg, ``from_db`` turns what asyncpg returns back into the domain's value.

    ``multicell`` columns (non-frozen collections and UDTs) also convert single
    elements, which their element-wise changes are made of.
    """

    cql_type: CqlType
    sql_type: str

    @property
    def is_json(self) -> bool:
        return self.sql_type == "jsonb"

    @property
    def is_array(self) -> bool:
        return self.sql_type.endswith("[]")

    @property
    def element_type(self) -> CqlType:
        return self.cql_type.params[0]

    def encoder(self) -> Convert:
        """``to_db`` for a value known not to be None, resolved once per column: the
        fold calls it for every cell, so it skips re-deciding the column's kind."""
        if self.is_json:
            cql_type = self.cql_type
            return lambda value: to_json(cql_type, value)
        if self.is_array:
            return self._array_to_db
        return _NATIVE[self.cql_type.name][0]

    def to_db(self, value: Any) -> Any:
        if value is None:
            return None
        if self.is_json:
            return to_json(self.cql_type, value)
        if self.is_array:
            return self._array_to_db(value)
        return _NATIVE[self.cql_type.name][0](value)

    def from_db(self, value: Any) -> Any:
        if value is None:
            return None
        if self.is_json:
            if self.cql_type.is_udt and not self.cql_type.frozen:
                return dict(from_json(self.cql_type, value).fields)
            return from_json(self.cql_type, value)
        if self.is_array:
            decode = _NATIVE[self.element_type.name][1]
            items = [decode(v) for v in value]
            return frozenset(items) if self.cql_type.name == "set" else items
        return _NATIVE[self.cql_type.name][1](value)

    def _array_to_db(self, value: Any) -> list[Any]:
        encode = _NATIVE[self.element_type.name][0]
        if self.cql_type.name == "set":
            if not isinstance(value, set | frozenset | list | tuple):
                raise _fail(self.cql_type.cql(), value)
            return _sorted(encode(v) for v in value)
        if not isinstance(value, list | tuple):
            raise _fail(self.cql_type.cql(), value)
        return [encode(v) for v in value]

    def element_to_db(self, value: Any) -> Any:
        """One element of a list or set column, as the column's array or jsonb holds it."""
        if self.is_json:
            return to_json(self.element_type, value)
        return _NATIVE[self.element_type.name][0](value)

    def map_key(self, key: Any) -> str:
        return key_text(self.cql_type.params[0], key)

    def map_value(self, value: Any) -> Any:
        return to_json(self.cql_type.params[1], value)

    def udt_field(self, field: Any, value: Any) -> Any:
        types = dict(zip(self.cql_type.field_names, self.cql_type.params, strict=True))
        if field not in types:
            raise UnwritableValueError(f"{self.cql_type.cql()} has no field {field!r}")
        return to_json(types[field], value)
