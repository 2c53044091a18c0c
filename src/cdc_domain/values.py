"""Column values: the few value types Python lacks, and their lossless JSON form.

Change events carry natural Python values (``Decimal``, ``UUID``, aware ``datetime``,
``ipaddress`` objects, ``bytes``...). JSON has none of these, so the JSON form tags
every value JSON cannot hold exactly as ``{"$<tag>": ...}``. Plain strings, booleans,
floats that JSON can print and integers inside +/-2^53 stay as they are, so the common
case reads naturally in a JSON Lines file and is still lossless.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

__all__ = [
    "Duration",
    "UdtValue",
    "ValueCodecError",
    "value_from_json",
    "value_to_json",
]

_SAFE_INT = 2**53


class ValueCodecError(ValueError):
    """JSON that does not describe a column value."""


@attrs.frozen(slots=True)
class Duration:
    """CQL ``duration``: months, days and nanoseconds are independent, as in Cassandra."""

    months: int
    days: int
    nanoseconds: int


@attrs.frozen(slots=True)
class UdtValue:
    """A user-defined type value: its fields in declaration order (missing = None)."""

    fields: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> UdtValue:
        return cls(tuple(values.items()))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.fields)


def value_to_json(value: Any) -> Any:
    """The JSON-compatible, lossless form of a column value."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value if -_SAFE_INT <= value <= _SAFE_INT else {"$varint": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value)
    if isinstance(value, dict):
        return _dict_to_json(value)
    raise ValueCodecError(f"cannot encode a value of type {type(value).__name__}")


def _dict_to_json(value: dict[Any, Any]) -> Any:
    if all(isinstance(k, str) and not k.startswith("$") for k in value):
        return {k: value_to_json(v) for k, v in value.items()}
    return {"$map": [[value_to_json(k), value_to_json(v)] for k, v in value.items()]}


def _datetime_to_json(value: dt.datetime) -> Any:
    if value.tzinfo is None:
        raise ValueCodecError("naive datetimes are ambiguous; column values carry UTC")
    return {"$timestamp": value.astimezone(dt.UTC).isoformat()}


_ENCODERS: dict[type, Any] = {
    Decimal: lambda v: {"$decimal": str(v)},
    uuid.UUID: lambda v: {"$uuid": str(v)},
    bytes: lambda v: {"$blob": base64.b64encode(v).decode("ascii")},
    dt.datetime: _datetime_to_json,
    dt.date: lambda v: {"$date": v.isoformat()},
    dt.time: lambda v: {"$time": v.isoformat()},
    ipaddress.IPv4Address: lambda v: {"$inet": str(v)},
    ipaddress.IPv6Address: lambda v: {"$inet": str(v)},
    Duration: lambda v: {"$duration": [v.months, v.days, v.nanoseconds]},
    list: lambda v: [value_to_json(x) for x in v],
    tuple: lambda v: {"$tuple": [value_to_json(x) for x in v]},
    frozenset: lambda v: {"$set": [value_to_json(x) for x in v]},
    set: lambda v: {"$set": [value_to_json(x) for x in v]},
    UdtValue: lambda v: {"$udt": [[name, value_to_json(x)] for name, x in v.fields]},
}


def _inet(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


_DECODERS: dict[str, Any] = {
    "$varint": int,
    "$float": float,
    "$decimal": Decimal,
    "$uuid": uuid.UUID,
    "$blob": lambda v: base64.b64decode(v, validate=True),
    "$timestamp": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$inet": _inet,
    "$duration": lambda v: Duration(*v),
    "$tuple": lambda v: tuple(value_from_json(x) for x in v),
    "$set": lambda v: frozenset(value_from_json(x) for x in v),
    "$map": lambda v: {value_from_json(k): value_from_json(x) for k, x in v},
    "$udt": lambda v: UdtValue(tuple((name, value_from_json(x)) for name, x in v)),
}


def value_from_json(data: Any) -> Any:
    """Inverse of :func:`value_to_json`."""
    if isinstance(data, list):
        return [value_from_json(x) for x in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1:
        ((tag, payload),) = data.items()
        decoder = _DECODERS.get(tag)
        if decoder is not None:
            try:
                return decoder(payload)
            except (TypeError, ValueError) as exc:
                raise ValueCodecError(f"bad {tag} value {payload!r}: {exc}") from exc
        if tag.startswith("$"):
            raise ValueCodecError(f"unknown value tag {tag!r}")
    return {k: value_from_json(v) for k, v in data.items()}
