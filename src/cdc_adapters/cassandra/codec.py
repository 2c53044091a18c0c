"""CQL values from the bytes Cassandra stores, as natural Python values.

``value_decoder(cql_type)`` builds, once per column type, a function from a value's exact
bytes to its Python value; the mutation reader caches those per table so decoding a cell
is one call with no type dispatch.

Choices a reader of the events should know:

* An empty (0-byte) value decodes to None, except for ``text``/``ascii`` (``""``) and
  ``blob`` (``b""``). Cassandra accepts empty values for most types (``blobAsInt(0x)``);
  the Python driver reads them as None too, so a destination cannot tell the two apart.
* ``timestamp``/``date`` values outside Python's datetime range decode to the raw int
  (milliseconds / days since the epoch) rather than failing the whole event.
* ``time`` keeps microseconds; the sub-microsecond nanoseconds are truncated.
* A value used as a set element or map key must be hashable, so lists in that position
  decode to tuples and maps to tuples of (key, value) pairs.
* ``counter`` cells hold a counter context, not a plain bigint: see :func:`counter_shards`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cdc_adapters.cassandra.vint import read_signed_vint, read_unsigned_vint
from cdc_domain.cql_types import CqlType
from cdc_domain.values import Duration, UdtValue

__all__ = [
    "CounterShard",
    "ValueDecodeError",
    "ValueDecoder",
    "counter_shards",
    "counter_total",
    "key_decoder",
    "split_collection",
    "split_fields",
    "value_decoder",
]

ValueDecoder = Callable[[bytes], Any]
CounterShard = tuple[bytes, int, int]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_MIN_DAYS = dt.date.min.toordinal() - _EPOCH_ORDINAL
_MAX_DAYS = dt.date.max.toordinal() - _EPOCH_ORDINAL
_DATE_BIAS = 1 << 31
# Within 2**32 s of the epoch (years 1833 to 2106) the float ``millis / 1000`` is off by
# under half a microsecond, so ``fromtimestamp`` rounds it back to the exact millisecond;
# it takes half the time of datetime arithmetic, which remains for the rest of the range.
_EXACT_FLOAT_MILLIS = 2**32 * 1000
_MIN_EXACT_FLOAT_MILLIS = -_EXACT_FLOAT_MILLIS
_from_timestamp = dt.datetime.fromtimestamp
_UTC = dt.UTC
# Bound once, here and below: a global name is cheaper than an attribute lookup per value.
_from_bytes = int.from_bytes
# What _uuid needs to fill the two slots UUID.__init__ fills. An enum member such as
# SafeUUID.unknown is an especially slow attribute to read in 3.11.
_new_object = object.__new__
_UUID = uuid.UUID
_set_uuid_int = vars(uuid.UUID)["int"].__set__
_set_uuid_is_safe = vars(uuid.UUID)["is_safe"].__set__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown
_INT32 = struct.Struct(">i")
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")
_SHORT = struct.Struct(">h")
_SHARD = struct.Struct(">16sqq")


class ValueDecodeError(ValueError):
    """Bytes that cannot be a value of the column's type."""


def _signed(raw: bytes) -> int | None:
    return _from_bytes(raw, "big", signed=True) if raw else None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8")


def _blob(raw: bytes) -> bytes:
    return bytes(raw)


def _boolean(raw: bytes) -> bool | None:
    return raw[0] != 0 if raw else None


def _float(raw: bytes) -> float | None:
    return _FLOAT.unpack(raw)[0] if raw else None


def _double(raw: bytes) -> float | None:
    return _DOUBLE.unpack(raw)[0] if raw else None


def _uuid(raw: bytes) -> uuid.UUID | None:
    if len(raw) != 16:
        if not raw:
            return None
        raise ValueDecodeError(f"uuid of {len(raw)} bytes")
    # UUID.__init__ validates arguments we know to be fine and dominates a row's decoding;
    # fill the two slots it would set directly, through their slot descriptors (what
    # object.__setattr__ ends up calling, minus the name lookup).
    value = _new_object(_UUID)
    _set_uuid_int(value, _from_bytes(raw, "big"))
    _set_uuid_is_safe(value, _UNKNOWN_SAFETY)
    return value


def _timestamp(raw: bytes) -> dt.datetime | int | None:
    if not raw:
        return None
    millis = _from_bytes(raw, "big", signed=True)
    if _MIN_EXACT_FLOAT_MILLIS < millis < _EXACT_FLOAT_MILLIS:
        return _from_timestamp(millis / 1000, _UTC)
    try:
        # Positional (days, seconds, micros, millis): keyword parsing costs a third more.
        return _EPOCH + dt.timedelta(0, 0, 0, millis)
    except OverflowError:
        return millis


def _date(raw: bytes) -> dt.date | int | None:
    if not raw:
        return None
    days = int.from_bytes(raw, "big") - _DATE_BIAS
    if _MIN_DAYS <= days <= _MAX_DAYS:
        return dt.date.fromordinal(_EPOCH_ORDINAL + days)
    return days


def _time(raw: bytes) -> dt.time | None:
    if not raw:
        return None
    nanos = int.from_bytes(raw, "big", signed=True)
    if not 0 <= nanos < 86_400_000_000_000:
        raise ValueDecodeError(f"time of day out of range: {nanos} ns")
    micros, _ = divmod(nanos, 1000)
    seconds, micro = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return dt.time(hour, minute, second, micro)


def _duration(raw: bytes) -> Duration | None:
    if not raw:
        return None
    months, pos = read_signed_vint(raw, 0)
    days, pos = read_signed_vint(raw, pos)
    nanos, _ = read_signed_vint(raw, pos)
    return Duration(months, days, nanos)


def _inet(raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not raw:
        return None
    if len(raw) not in (4, 16):
        raise ValueDecodeError(f"inet of {len(raw)} bytes")
    return ipaddress.ip_address(bytes(raw))


def _decimal(raw: bytes) -> Decimal | None:
    if not raw:
        return None
    scale = _INT32.unpack_from(raw)[0]
    unscaled = int.from_bytes(raw[4:], "big", signed=True)
    # Through the string form: Decimal arithmetic would round to the context precision.
    return Decimal(f"{unscaled}E{-scale}")


def counter_shards(raw: bytes) -> list[CounterShard]:
    """The (counter id, clock, count) shards of a counter context.

    The context starts with a short count of header entries and that many shorts; the
    34-byte shards follow.
    """
    if not raw:
        return []
    header = _SHORT.unpack_from(raw)[0]
    pos = 2 + 2 * abs(header)
    shards = []
    while pos + _SHARD.size <= len(raw):
        counter_id, clock, count = _SHARD.unpack_from(raw, pos)
        shards.append((counter_id, clock, count))
        pos += _SHARD.size
    if pos != len(raw):
        raise ValueDecodeError(f"counter context of {len(raw)} bytes has a partial shard")
    return shards


def counter_total(raw: bytes) -> int | None:
    """The value a counter context reads as: the sum of its shards' counts."""
    if not raw:
        return None
    return sum(count for _, _, count in counter_shards(raw))


_NATIVE: dict[str, ValueDecoder] = {
    "ascii": _text,
    "text": _text,
    "blob": _blob,
    "bigint": _signed,
    "int": _signed,
    "smallint": _signed,
    "tinyint": _signed,
    "varint": _signed,
    "counter": counter_total,
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
    "decimal": _decimal,
}


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((_hashable(k), _hashable(v)) for k, v in value.items())
    if isinstance(value, UdtValue):
        return UdtValue(tuple((name, _hashable(v)) for name, v in value.fields))
    return value


def split_collection(raw: bytes, per_element: int) -> list[bytes | None]:
    """The int32-length-prefixed items of a frozen collection (a negative length = null)."""
    count = _INT32.unpack_from(raw)[0]
    pos = 4
    items: list[bytes | None] = []
    for _ in range(count * per_element):
        size = _INT32.unpack_from(raw, pos)[0]
        pos += 4
        if size < 0:
            items.append(None)
            continue
        items.append(raw[pos : pos + size])
        pos += size
    if pos != len(raw):
        raise ValueDecodeError(f"collection has {len(raw) - pos} trailing bytes")
    return items


def _maybe(decode: ValueDecoder) -> Callable[[bytes | None], Any]:
    return lambda raw: None if raw is None else decode(raw)


def _list_decoder(element: CqlType) -> ValueDecoder:
    decode = _maybe(value_decoder(element))

    def decode_list(raw: bytes) -> list[Any] | None:
        return [decode(item) for item in split_collection(raw, 1)] if raw else None

    return decode_list


def _set_decoder(element: CqlType) -> ValueDecoder:
    decode = _maybe(key_decoder(element))

    def decode_set(raw: bytes) -> frozenset[Any] | None:
        return frozenset(decode(item) for item in split_collection(raw, 1)) if raw else None

    return decode_set


def _map_decoder(key: CqlType, value: CqlType) -> ValueDecoder:
    decode_key = _maybe(key_decoder(key))
    decode_value = _maybe(value_decoder(value))

    def decode_map(raw: bytes) -> dict[Any, Any] | None:
        if not raw:
            return None
        items = split_collection(raw, 2)
        return {decode_key(items[i]): decode_value(items[i + 1]) for i in range(0, len(items), 2)}

    return decode_map


def split_fields(raw: bytes, count: int) -> list[bytes | None]:
    """Tuple/UDT fields: int32 length (negative = null) + bytes; missing trailing = null."""
    fields: list[bytes | None] = []
    pos = 0
    end = len(raw)
    while pos < end:
        size = _INT32.unpack_from(raw, pos)[0]
        pos += 4
        if size < 0:
            fields.append(None)
        else:
            fields.append(raw[pos : pos + size])
            pos += size
    if len(fields) > count:
        raise ValueDecodeError(f"{len(fields)} fields where the type has {count}")
    fields.extend([None] * (count - len(fields)))
    return fields


def _tuple_decoder(cql_type: CqlType) -> ValueDecoder:
    decoders = [_maybe(value_decoder(p)) for p in cql_type.params]

    def decode_tuple(raw: bytes) -> tuple[Any, ...] | None:
        if not raw:
            return None
        fields = split_fields(raw, len(decoders))
        return tuple(d(f) for d, f in zip(decoders, fields, strict=True))

    return decode_tuple


def _udt_decoder(cql_type: CqlType) -> ValueDecoder:
    names = cql_type.field_names
    decoders = [_maybe(value_decoder(p)) for p in cql_type.params]

    def decode_udt(raw: bytes) -> UdtValue | None:
        if not raw:
            return None
        fields = split_fields(raw, len(decoders))
        return UdtValue(
            tuple((name, d(f)) for name, d, f in zip(names, decoders, fields, strict=True))
        )

    return decode_udt


def _vector_decoder(cql_type: CqlType) -> ValueDecoder:
    element = cql_type.params[0]
    dimension = cql_type.dimension or 0
    size = element.fixed_length
    if element.name == "float":
        unpack = struct.Struct(f">{dimension}f").unpack

        def decode_floats(raw: bytes) -> list[float] | None:
            return list(unpack(raw)) if raw else None

        return decode_floats
    decode = value_decoder(element)

    def decode_vector(raw: bytes) -> list[Any] | None:
        if not raw:
            return None
        values = []
        pos = 0
        for _ in range(dimension):
            if size is None:
                length, pos = read_unsigned_vint(raw, pos)
            else:
                length = size
            values.append(decode(raw[pos : pos + length]))
            pos += length
        if pos != len(raw):
            raise ValueDecodeError(f"vector has {len(raw) - pos} trailing bytes")
        return values

    return decode_vector


def value_decoder(cql_type: CqlType) -> ValueDecoder:
    """A function decoding one whole value of ``cql_type`` from its bytes.

    For a non-frozen collection or UDT this decodes the frozen (serialized) form, which is
    what appears inside other values and in snapshots; its commit log cells are decoded
    element by element with :func:`key_decoder`/:func:`value_decoder` of its parameters.
    """
    native = _NATIVE.get(cql_type.name)
    if native is not None:
        return native
    if cql_type.name == "list":
        return _list_decoder(cql_type.params[0])
    if cql_type.name == "set":
        return _set_decoder(cql_type.params[0])
    if cql_type.name == "map":
        return _map_decoder(cql_type.params[0], cql_type.params[1])
    if cql_type.name == "tuple":
        return _tuple_decoder(cql_type)
    if cql_type.is_udt:
        if not cql_type.is_resolved:
            raise ValueDecodeError(f"type {cql_type} has an unresolved user-defined type")
        return _udt_decoder(cql_type)
    if cql_type.name == "vector":
        return _vector_decoder(cql_type)
    # Custom types: Cassandra only knows them by a Java class; keep the bytes.
    return _blob


def key_decoder(cql_type: CqlType) -> ValueDecoder:
    """Like :func:`value_decoder`, but the result can be a set element or a map key."""
    decode = value_decoder(cql_type)
    if any(node.name in ("list", "map") for node in cql_type.walk()):
        return lambda raw: _hashable(decode(raw))
    return decode
