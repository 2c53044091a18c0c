"""Which of two versions of one cell Cassandra keeps: its ``Cells.reconcile`` as an order.

Every destination receives the same writes in a different order (several agents, late
replicas), so a tie must be settled by what the versions are, never by which came
first. Cassandra decides in this order, the first rule that separates them winning:

1. the greater write timestamp;
2. a version carrying a local deletion time (a tombstone, or an expiring cell: one
   written with a TTL) beats one without;
3. between two that carry one, a tombstone beats an expiring cell, then the later
   local deletion time (expiry) wins;
4. the greater serialized value, compared as unsigned bytes.

:func:`cell_rank` turns a version into a tuple whose order is exactly that, so "keep
the greater rank" is Cassandra's rule, commutative and idempotent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cdc_domain.cql_bytes import serialize
from cdc_domain.cql_types import CqlType, parse_cql_type
from cdc_domain.values import Duration, value_to_json

__all__ = ["CellRank", "cell_rank", "element_type", "value_bytes"]

CellRank = tuple[int, int, int, int, bytes]

_INFERRED = {
    bool: "boolean",
    int: "bigint",
    float: "double",
    str: "text",
    bytes: "blob",
    Decimal: "decimal",
    uuid.UUID: "uuid",
    dt.datetime: "timestamp",
    dt.date: "date",
    dt.time: "time",
    Duration: "duration",
    ipaddress.IPv4Address: "inet",
    ipaddress.IPv6Address: "inet",
}
_BY_NAME = {name: parse_cql_type(name, "") for name in {*_INFERRED.values(), "varint"}}


def cell_rank(
    timestamp: int, *, deleted: bool, expires_at: dt.datetime | None, value: bytes
) -> CellRank:
    """The rank of one version of a cell: the greater rank is the version Cassandra
    keeps. ``value`` is the serialized value (:func:`value_bytes`), empty for a
    tombstone; a tombstone's own deletion time is not carried by events and never
    changes what is visible, so tombstones of one timestamp rank alike."""
    if deleted:
        return (timestamp, 1, 1, 0, b"")
    if expires_at is not None:
        return (timestamp, 1, 0, int(expires_at.timestamp()), value)
    return (timestamp, 0, 0, 0, value)


def value_bytes(cql_type: CqlType | None, value: Any) -> bytes:
    """``value`` serialized as Cassandra stores it; without its column's type, as the
    type its Python value implies (exact for every type but the integers narrower than
    bigint and varint, whose ties then fall back to the bigint order)."""
    if value is None:
        return b""
    if cql_type is None:
        inferred = _INFERRED.get(type(value))
        if inferred is None:
            return json.dumps(value_to_json(value), sort_keys=True).encode()
        if inferred == "bigint" and not -(2**63) <= value < 2**63:
            inferred = "varint"
        cql_type = _BY_NAME[inferred]
    return serialize(cql_type, value)


def element_type(cql_type: CqlType | None, kind: str) -> Callable[[Any], CqlType | None]:
    """The type of an element's value in a non-frozen collection or UDT, by its key."""
    if cql_type is None or kind == "set":
        return lambda _: None
    if kind == "udt":
        fields = dict(zip(cql_type.field_names, cql_type.params, strict=False))
        return fields.get
    value_type = cql_type.params[-1]
    return lambda _: value_type
