"""Builders for domain objects, so tests state only what they care about."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

from cdc_domain.cql_types import parse_cql_type
from cdc_domain.events import ChangeEvent, DeletionScope, Operation, SourcePosition
from cdc_domain.schema import (
    ClusteringOrder,
    ColumnDefinition,
    ColumnKind,
    TableSchema,
    resolve_udts,
)

CAPTURED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_positions = itertools.count(1)


UDTS = {"address": (("street", parse_cql_type("text")), ("zip", parse_cql_type("int")))}
"""The user-defined types a test table's columns may name."""


def column(
    name: str, cql: str, kind: ColumnKind = ColumnKind.REGULAR, position: int = -1
) -> ColumnDefinition:
    order = ClusteringOrder.ASC if kind is ColumnKind.CLUSTERING else ClusteringOrder.NONE
    cql_type = resolve_udts(parse_cql_type(cql, "shop"), lambda _, udt: UDTS.get(udt))
    return ColumnDefinition(name, cql_type, kind, position, order)


def table(
    name: str = "orders",
    keyspace: str = "shop",
    *,
    partition: dict[str, str] | None = None,
    clustering: dict[str, str] | None = None,
    regular: dict[str, str] | None = None,
    static: dict[str, str] | None = None,
    table_id: uuid.UUID | None = None,
) -> TableSchema:
    columns = [
        column(n, t, ColumnKind.PARTITION_KEY, i)
        for i, (n, t) in enumerate((partition or {"id": "int"}).items())
    ]
    columns += [
        column(n, t, ColumnKind.CLUSTERING, i)
        for i, (n, t) in enumerate((clustering or {}).items())
    ]
    columns += [column(n, t) for n, t in (regular or {"status": "text", "total": "int"}).items()]
    columns += [column(n, t, ColumnKind.STATIC) for n, t in (static or {}).items()]
    return TableSchema(
        keyspace,
        name,
        table_id or uuid.uuid5(uuid.NAMESPACE_DNS, f"{keyspace}.{name}"),
        tuple(columns),
    )


def event(
    operation: Operation = Operation.UPDATE,
    *,
    key: Any = 1,
    table: str = "orders",
    keyspace: str = "shop",
    ts: int = 1,
    columns: dict[str, Any] | None = None,
    position: SourcePosition | None = None,
    **kwargs: Any,
) -> ChangeEvent:
    if operation is Operation.DELETE:
        kwargs.setdefault("scope", DeletionScope.ROW)
    return ChangeEvent.create(
        operation=operation,
        keyspace=keyspace,
        table=table,
        partition_key={"id": key},
        columns=columns or {},
        timestamp_micros=ts,
        captured_at=CAPTURED,
        position=position or SourcePosition(1, next(_positions) * 10),
        **kwargs,
    )
