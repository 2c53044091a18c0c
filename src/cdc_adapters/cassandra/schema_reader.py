"""Table schemas read from a live node's ``system_schema`` with cassandra-driver.

The commit log names tables by id and columns by name only; everything else needed to
decode it (types, key layout, UDT fields, dropped columns, the cdc flag) lives in
``system_schema``. This is the synchronous building block; the async SchemaSource port
adapter wraps it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from cdc_domain.cql_types import CqlType, parse_cql_type
from cdc_domain.schema import (
    ClusteringOrder,
    ColumnDefinition,
    ColumnKind,
    TableSchema,
    resolve_udts,
)

__all__ = ["read_table_schemas"]

_KINDS = {kind.value: kind for kind in ColumnKind}
_ORDERS = {order.value: order for order in ClusteringOrder}


def _rows(session: Any, query: str, keyspaces: list[str] | None) -> list[Any]:
    if keyspaces is None:
        return list(session.execute(query))
    rows: list[Any] = []
    for keyspace in keyspaces:
        rows.extend(session.execute(query + " WHERE keyspace_name = %s", (keyspace,)))
    return rows


def read_table_schemas(session: Any, keyspaces: Iterable[str] | None = None) -> list[TableSchema]:
    """Every table of ``keyspaces`` (all keyspaces when None) as a :class:`TableSchema`.

    ``session`` is a connected ``cassandra.cluster.Session``. UDTs are resolved against
    the types of each table's own keyspace, so pass whole keyspaces.
    """
    wanted = None if keyspaces is None else list(keyspaces)
    types: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for row in _rows(
        session,
        "SELECT keyspace_name, type_name, field_names, field_types FROM system_schema.types",
        wanted,
    ):
        fields = list(zip(row.field_names or (), row.field_types or (), strict=True))
        types[(row.keyspace_name, row.type_name)] = fields

    def lookup(keyspace: str, name: str) -> list[tuple[str, CqlType]] | None:
        fields = types.get((keyspace, name))
        if fields is None:
            return None
        return [(field, parse_cql_type(text, keyspace)) for field, text in fields]

    def column_type(text: str, keyspace: str) -> CqlType:
        return resolve_udts(parse_cql_type(text, keyspace), lookup)

    columns: dict[tuple[str, str], list[ColumnDefinition]] = defaultdict(list)
    for row in _rows(
        session,
        "SELECT keyspace_name, table_name, column_name, kind, position, clustering_order, type"
        " FROM system_schema.columns",
        wanted,
    ):
        columns[(row.keyspace_name, row.table_name)].append(
            ColumnDefinition(
                name=row.column_name,
                type=column_type(row.type, row.keyspace_name),
                kind=_KINDS[row.kind],
                position=row.position,
                clustering_order=_ORDERS.get(row.clustering_order, ClusteringOrder.NONE),
            )
        )

    dropped: dict[tuple[str, str], list[ColumnDefinition]] = defaultdict(list)
    for row in _rows(
        session,
        "SELECT keyspace_name, table_name, column_name, kind, type"
        " FROM system_schema.dropped_columns",
        wanted,
    ):
        dropped[(row.keyspace_name, row.table_name)].append(
            ColumnDefinition(
                name=row.column_name,
                type=column_type(row.type, row.keyspace_name),
                kind=_KINDS.get(row.kind or "regular", ColumnKind.REGULAR),
            )
        )

    schemas = []
    for row in _rows(
        session, "SELECT keyspace_name, table_name, id, cdc FROM system_schema.tables", wanted
    ):
        key = (row.keyspace_name, row.table_name)
        schemas.append(
            TableSchema(
                keyspace=row.keyspace_name,
                table=row.table_name,
                table_id=row.id,
                columns=tuple(columns[key]),
                cdc=bool(row.cdc),
                dropped_columns=tuple(dropped[key]),
            )
        )
    return schemas
