"""How one Cassandra table is laid out in ClickHouse, and the DDL that creates it.

Each table is a ``ReplacingMergeTree(_cdc_version)`` ordered by the Cassandra primary
key: the row with the newest version is the row's current state once merged, or at
once with ``FINAL``. Besides the mapped columns every row has ``_cdc_version`` (the
newest write timestamp it reflects), ``_cdc_is_deleted``, ``_cdc_op`` and
``_cdc_state`` (the cell-level state of :mod:`row_state`). Tables with clustering
columns get a companion ``<table>__cdc_partitions`` for partition-wide state, and every
table a ``<table>__current`` view that shows only live rows.
"""

from __future__ import annotations

import attrs

from cdc_adapters.clickhouse.column_types import ColumnCodec, ServerFeatures, column_codec
from cdc_adapters.clickhouse.sql import qualified, quote_identifier
from cdc_domain.cql_types import CqlType
from cdc_domain.schema import ClusteringOrder, ColumnDefinition, TableSchema
from cdc_domain.type_mapping import Unsupported

__all__ = ["META_COLUMNS", "TableLayout"]

META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_cdc_version", "UInt64"),
    ("_cdc_is_deleted", "UInt8"),
    ("_cdc_op", "Enum8('INSERT' = 1, 'UPDATE' = 2, 'DELETE' = 3)"),
    ("_cdc_state", "String"),
)
_ENGINE = "ReplacingMergeTree(`_cdc_version`)"


@attrs.frozen(slots=True)
class TableLayout:
    """The ClickHouse columns of one table version; unsupported columns are left out."""

    database: str
    schema: TableSchema
    keys: tuple[tuple[str, ColumnCodec], ...]
    values: tuple[tuple[str, ColumnCodec], ...]
    unsupported: dict[str, str]
    partition_names: tuple[str, ...]
    clustering_names: tuple[str, ...]
    # The clustering columns declared DESC: range tombstone bounds follow their order.
    descending: frozenset[str] = attrs.field(init=False)
    # (name, codec, the field of a null) per value column, and a whole row of nulls.
    value_fields: tuple[tuple[str, ColumnCodec, str], ...] = attrs.field(init=False)
    null_fields: str = attrs.field(init=False)
    # Every column's type, dropped ones included: equal timestamps are settled by value.
    types: dict[str, CqlType] = attrs.field(init=False)
    # Columns dropped from the table: their cells no longer keep a row visible.
    dropped: frozenset[str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        schema = self.schema
        types = {c.name: c.type for c in (*schema.dropped_columns, *schema.columns)}
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "dropped", frozenset(c.name for c in schema.dropped_columns))
        fields = tuple((n, c, str(c.encode(None))) for n, c in self.values)
        object.__setattr__(self, "value_fields", fields)
        object.__setattr__(self, "null_fields", "\t".join(null for _, _, null in fields))
        desc = ClusteringOrder.DESC
        descending = frozenset(c.name for c in self.schema.clustering if c.clustering_order is desc)
        object.__setattr__(self, "descending", descending)

    @classmethod
    def of(cls, schema: TableSchema, database: str, features: ServerFeatures) -> TableLayout:
        keys = tuple(
            (c.name, _supported(column_codec(c.type, features, key=True), c))
            for c in schema.primary_key
        )
        values: list[tuple[str, ColumnCodec]] = []
        unsupported: dict[str, str] = {}
        for column in (*schema.regular, *schema.static):
            codec = column_codec(column.type, features)
            if isinstance(codec, Unsupported):
                unsupported[column.name] = codec.reason
            else:
                values.append((column.name, codec))
        return cls(
            database,
            schema,
            keys,
            tuple(values),
            unsupported,
            tuple(c.name for c in schema.partition_key),
            tuple(c.name for c in schema.clustering),
        )

    @property
    def table(self) -> str:
        return qualified(self.database, self.schema.table)

    @property
    def partitions_table(self) -> str:
        return qualified(self.database, f"{self.schema.table}__cdc_partitions")

    @property
    def view(self) -> str:
        return qualified(self.database, f"{self.schema.table}__current")

    @property
    def has_clustering(self) -> bool:
        return bool(self.clustering_names)

    @property
    def partition_key(self) -> tuple[tuple[str, ColumnCodec], ...]:
        return self.keys[: len(self.partition_names)]

    def column_sql(self) -> dict[str, str]:
        """Every column this layout writes, name -> ClickHouse type."""
        return {n: c.sql for n, c in (*self.keys, *self.values)} | dict(META_COLUMNS)

    def create_table(self) -> str:
        columns = ", ".join(f"{quote_identifier(n)} {t}" for n, t in self.column_sql().items())
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} ({columns}) "
            f"ENGINE = {_ENGINE} ORDER BY ({_names(self.keys)})"
        )

    def create_partitions_table(self) -> str:
        keys = ", ".join(f"{quote_identifier(n)} {c.sql}" for n, c in self.partition_key)
        return (
            f"CREATE TABLE IF NOT EXISTS {self.partitions_table} ({keys}, "
            "`_cdc_version` UInt64, `_cdc_state` String) "
            f"ENGINE = {_ENGINE} ORDER BY ({_names(self.partition_key)})"
        )

    def create_view(self, columns: list[str]) -> str:
        shown = ", ".join(quote_identifier(c) for c in columns if c != "_cdc_state")
        return (
            f"CREATE VIEW IF NOT EXISTS {self.view} AS SELECT {shown} "
            f"FROM {self.table} FINAL WHERE `_cdc_is_deleted` = 0"
        )

    def insert_target(self) -> str:
        names = [n for n, _ in (*self.keys, *self.values)] + [n for n, _ in META_COLUMNS]
        return f"{self.table} ({', '.join(quote_identifier(n) for n in names)})"

    def partitions_insert_target(self) -> str:
        names = [n for n, _ in self.partition_key] + ["_cdc_version", "_cdc_state"]
        return f"{self.partitions_table} ({', '.join(quote_identifier(n) for n in names)})"


def _names(columns: tuple[tuple[str, ColumnCodec], ...]) -> str:
    return ", ".join(quote_identifier(n) for n, _ in columns)


def _supported(codec: ColumnCodec | Unsupported, column: ColumnDefinition) -> ColumnCodec:
    if isinstance(codec, Unsupported):
        # The diff engine refuses such a CREATE_TABLE; a schema that reaches here anyway
        # has no possible layout.
        raise ValueError(f"key column {column.name}: {codec.reason}")
    return codec
