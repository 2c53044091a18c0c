"""Builders for domain objects, so tests state only what they care about."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

import attrs

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


def replica_copy(
    original: ChangeEvent,
    node: str,
    position: SourcePosition,
    captured_at: dt.datetime = CAPTURED,
) -> ChangeEvent:
    """The same write as read from another node's commit log: its own event id,
    position and capture time, and its maps and element lists built in another order
    (a decoder owes no order to what has none)."""

    def flipped(values: dict[str, Any]) -> dict[str, Any]:
        return dict(reversed(values.items()))

    return attrs.evolve(
        original,
        event_id=f"{node}:{position.segment_id}:{position.offset}:{position.index}",
        position=position,
        captured_at=captured_at,
        partition_key=flipped(original.partition_key),
        clustering_key=flipped(original.clustering_key),
        columns=flipped(original.columns),
        deleted_columns=tuple(reversed(original.deleted_columns)),
        collections={
            name: attrs.evolve(
                delta,
                elements=tuple(reversed(delta.elements)),
                removed=tuple(reversed(delta.removed)),
            )
            for name, delta in reversed(original.collections.items())
        },
        counters=flipped(original.counters),
        counter_totals=flipped(original.counter_totals),
    )
