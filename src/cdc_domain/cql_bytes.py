"""Column values as the bytes Cassandra serializes them to.

Cassandra settles two writes of one cell with the same timestamp by comparing their
serialized values as unsigned bytes (see :mod:`cdc_domain.reconciliation`). Destinations
see decoded values, so to reproduce that choice the domain serializes them back: this
module is the inverse of the Cassandra adapter's decoder, for every CQL type.

Frozen sets and maps are serialized in their elements' order, which Cassandra takes
from the element type's comparator; here that order is the natural order of the
decoded values (numbers by value, text and blobs by bytes, dates and timestamps by
time), with timeuuids by their time first as Cassandra orders them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import struct
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from cdc_domain.cql_types import CqlType
from cdc_domain.values import Duration, UdtValue

__all__ = ["serialize", "signed_vint", "unsigned_vint"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DAY = dt.date(1970, 1, 1)
_DATE_BIAS = 1 << 31
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")
_INT32 = struct.Struct(">i")
_MASK64 = (1 << 64) - 1
_WIDTHS = {"tinyint": 1, "smallint": 2, "int": 4, "bigint": 8, "counter": 8}

Serializer = Callable[[Any], bytes]


def serialize(cql_type: CqlType, value: Any) -> bytes:
    """``value``'s bytes as Cassandra stores a cell of ``cql_type`` (frozen form for a
    collection or UDT). None serializes to no bytes, as an empty value does."""
    if value is None:
        return b""
    return _serializer(cql_type)(value)


def _serializer(cql_type: CqlType) -> Serializer:
    name = cql_type.name
    width = _WIDTHS.get(name)
    if width is not None:
        return lambda v: int(v).to_bytes(width, "big", signed=True)
    native = _NATIVE.get(name)
    if native is not None:
        return native
    if name == "list":
        return _list(cql_type.params[0])
    if name == "set":
        return _set(cql_type.params[0])
    if name == "map":
        return _map(cql_type.params[0], cql_type.params[1])
    if name == "tuple":
        return _fields(cql_type.params)
    if cql_type.is_udt:
        return _udt(cql_type)
    if name == "vector":
        return _vector(cql_type)
    return _blob


def _text(value: Any) -> bytes:
    return str(value).encode("utf-8")


def _blob(value: Any) -> bytes:
    return bytes(value)


def _varint(value: Any) -> bytes:
    number = int(value)
    length = max(1, (number + (number < 0)).bit_length() // 8 + 1)
    return number.to_bytes(length, "big", signed=True)


def _decimal(value: Any) -> bytes:
    sign, digits, exponent = Decimal(value).as_tuple()
    assert isinstance(exponent, int)
    unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    return _INT32.pack(-exponent) + _varint(unscaled)


def _timestamp(value: Any) -> bytes:
    if isinstance(value, int):
        millis = value
    else:
        delta = value - _EPOCH
        millis = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return millis.to_bytes(8, "big", signed=True)


def _date(value: Any) -> bytes:
    days = value if isinstance(value, int) else (value - _EPOCH_DAY).days
    return (days + _DATE_BIAS).to_bytes(4, "big")


def _time(value: Any) -> bytes:
    seconds = value.hour * 3600 + value.minute * 60 + value.second
    nanos: int = (seconds * 1_000_000 + value.microsecond) * 1000
    return nanos.to_bytes(8, "big", signed=True)


def unsigned_vint(value: int) -> bytes:
    """Cassandra's unsigned vint of ``value`` (modulo 2**64): the count of bytes after the
    first is the count of leading one bits of the first."""
    value &= _MASK64
    bits = value.bit_length() or 1
    size = 9 if bits > 56 else (bits + 6) // 7
    if size == 1:
        return bytes((value,))
    if size == 9:
        return b"\xff" + value.to_bytes(8, "big")
    encoded = bytearray(value.to_bytes(size, "big"))
    encoded[0] |= (0xFF << (9 - size)) & 0xFF
    return bytes(encoded)


def signed_vint(value: int) -> bytes:
    """The zigzag-encoded vint of a signed 64-bit ``value``."""
    return unsigned_vint((value << 1) ^ (value >> 63))


def _duration(value: Any) -> bytes:
    assert isinstance(value, Duration)
    return b"".join(signed_vint(part) for part in (value.months, value.days, value.nanoseconds))


def _inet(value: Any) -> bytes:
    return ipaddress.ip_address(value).packed


def _uuid(value: Any) -> bytes:
    return value.bytes if isinstance(value, uuid.UUID) else uuid.UUID(str(value)).bytes


def _float(value: Any) -> bytes:
    return _FLOAT.pack(value)


def _double(value: Any) -> bytes:
    return _DOUBLE.pack(value)


def _boolean(value: Any) -> bytes:
    return b"\x01" if value else b"\x00"


_NATIVE: dict[str, Serializer] = {
    "ascii": _text,
    "text": _text,
    "blob": _blob,
    "varint": _varint,
    "decimal": _decimal,
    "boolean": _boolean,
    "float": _float,
    "double": _double,
    "uuid": _uuid,
    "timeuuid": _uuid,
    "timestamp": _timestamp,
    "date": _date,
    "time": _time,
    "duration": _duration,
    "inet": _inet,
}


def _items(values: Iterable[bytes | None], count: int) -> bytes:
    parts = [_INT32.pack(count)]
    for raw in values:
        parts.append(_INT32.pack(-1) if raw is None else _INT32.pack(len(raw)) + raw)
    return b"".join(parts)


def _maybe(cql_type: CqlType) -> Callable[[Any], bytes | None]:
    inner = _serializer(cql_type)
    return lambda v: None if v is None else inner(v)


def _list(element: CqlType) -> Serializer:
    item = _maybe(element)
    return lambda v: _items((item(e) for e in v), len(v))


def _set(element: CqlType) -> Serializer:
    item = _maybe(element)
    key = _order_key(element)
    return lambda v: _items((item(e) for e in sorted(v, key=key)), len(v))


def _map(key_type: CqlType, value_type: CqlType) -> Serializer:
    key, value = _maybe(key_type), _maybe(value_type)
    order = _order_key(key_type)

    def serialize_map(v: Any) -> bytes:
        pairs = sorted(dict(v).items(), key=lambda kv: order(kv[0]))
        flat = (raw for k, val in pairs for raw in (key(k), value(val)))
        return _items(flat, len(pairs))

    return serialize_map


def _fields(types: Iterable[CqlType]) -> Serializer:
    serializers = [_maybe(t) for t in types]

    def serialize_fields(v: Any) -> bytes:
        parts = []
        for serialize_field, field in zip(serializers, v, strict=False):
            raw = serialize_field(field)
            parts.append(_INT32.pack(-1) if raw is None else _INT32.pack(len(raw)) + raw)
        return b"".join(parts)

    return serialize_fields


def _udt(cql_type: CqlType) -> Serializer:
    fields = _fields(cql_type.params)
    names = cql_type.field_names

    def serialize_udt(v: Any) -> bytes:
        values = v.as_dict() if isinstance(v, UdtValue) else dict(v)
        return fields([values.get(name) for name in names])

    return serialize_udt


def _vector(cql_type: CqlType) -> Serializer:
    element = cql_type.params[0]
    inner = _serializer(element)
    fixed = element.fixed_length is not None

    def serialize_vector(v: Any) -> bytes:
        if fixed:
            return b"".join(inner(e) for e in v)
        return b"".join(unsigned_vint(len(raw)) + raw for raw in map(inner, v))

    return serialize_vector


def _order_key(cql_type: CqlType) -> Callable[[Any], Any]:
    """How Cassandra orders elements of ``cql_type`` in a set or map (its comparator)."""
    if cql_type.name == "timeuuid":
        return lambda v: (v.time, v.bytes)
    if cql_type.name in ("double", "float"):
        return lambda v: (math.isnan(v), v)
    if cql_type.name in ("list", "set", "map", "tuple", "vector") or cql_type.is_udt:
        return _serializer(cql_type)
    return lambda v: v
