"""How one Cassandra table is laid out in ClickHouse, and the DDL that creates it.

Every write goes into ``<table>__cdc_ingest``, a ``Null`` table: one row per event,
every cell a string of :mod:`cells` (empty when the event does not touch it).
Materialized views fold those rows into ``AggregatingMergeTree`` tables whose every
state is ``max`` over cell strings (or a set, for range tombstones), so the engine
merges them itself, in any order, any number of times:

- ``<table>__cdc_rows``, by primary key: the row marker, the row tombstone, one cell
  per regular column;
- ``<table>__cdc_partition``, by partition key (tables with clustering columns): the
  partition tombstone, the range tombstones, one cell per static column;
- ``<table>__cdc_elements``, by primary key, column and element (tables with
  non-frozen collections or UDTs): one cell per element, and each column's deletion.

``<table>`` itself is a view of the current state (:mod:`view`). Materialized views
are named after a hash of their query, so a schema change creates the new one before
it drops the old: two views writing the same states twice is harmless, a moment with
none would lose rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import attrs

from cdc_adapters.clickhouse.cells import CellCodec, ElementCodec, cell_codec, element_codec
from cdc_adapters.clickhouse.column_types import ColumnCodec, ServerFeatures, column_codec
from cdc_adapters.clickhouse.sql import qualified, quote_identifier
from cdc_domain.schema import ClusteringOrder, ColumnDefinition, TableSchema
from cdc_domain.type_mapping import Unsupported

__all__ = ["CELL_STATE", "Column", "TableLayout"]

CELL_STATE = "AggregateFunction(max, String)"
_ENGINE = "AggregatingMergeTree"
_KINDS = {"list": "list", "set": "set", "map": "map"}


@attrs.frozen(slots=True)
class Column:
    """A regular or static column: its cells, and its elements when non-frozen.
    ``shown`` is False for a column Cassandra dropped (kept by ``drop_columns: keep``):
    its cells are still written and shown, but keep no row alive."""

    name: str
    cells: CellCodec
    elements: ElementCodec | None
    static: bool
    live: bool = True


@attrs.frozen(slots=True)
class TableLayout:
    """The ClickHouse objects of one table version; unsupported columns are left out."""

    database: str
    schema: TableSchema
    features: ServerFeatures
    keys: tuple[tuple[str, ColumnCodec], ...]
    columns: tuple[Column, ...]
    unsupported: dict[str, str]
    partition_names: tuple[str, ...]
    clustering_names: tuple[str, ...]
    descending: frozenset[str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        desc = ClusteringOrder.DESC
        descending = frozenset(c.name for c in self.schema.clustering if c.clustering_order is desc)
        object.__setattr__(self, "descending", descending)

    @classmethod
    def of(
        cls,
        schema: TableSchema,
        database: str,
        features: ServerFeatures,
        *,
        keep_dropped: bool = True,
    ) -> TableLayout:
        """``keep_dropped``: columns Cassandra dropped still have their (kept) cells."""
        keys = tuple(
            (c.name, _supported(column_codec(c.type, features, key=True), c))
            for c in schema.primary_key
        )
        columns: list[Column] = []
        unsupported: dict[str, str] = {}
        dropped = schema.dropped_columns if keep_dropped else ()
        current = {c.name for c in schema.columns}
        for column in (*schema.regular, *schema.static, *dropped):
            if column.name in current and column in dropped:
                continue
            codec = cell_codec(column.type, features)
            if isinstance(codec, Unsupported):
                unsupported[column.name] = codec.reason
                continue
            elements = None
            if column.type.is_multicell:
                kind = "udt" if column.type.is_udt else _KINDS[column.type.name]
                elements = element_codec(column.type, kind, features)
            static = column.kind.value == "static"
            columns.append(Column(column.name, codec, elements, static, column in schema.columns))
        return cls(
            database,
            schema,
            features,
            keys,
            tuple(columns),
            unsupported,
            tuple(c.name for c in schema.partition_key),
            tuple(c.name for c in schema.clustering),
        )

    # ------------------------------------------------------------------ names

    @property
    def name(self) -> str:
        return self.schema.table

    @property
    def view(self) -> str:
        return qualified(self.database, self.name)

    @property
    def ingest(self) -> str:
        return qualified(self.database, f"{self.name}__cdc_ingest")

    @property
    def rows(self) -> str:
        return qualified(self.database, f"{self.name}__cdc_rows")

    @property
    def partition(self) -> str:
        return qualified(self.database, f"{self.name}__cdc_partition")

    @property
    def elements(self) -> str:
        return qualified(self.database, f"{self.name}__cdc_elements")

    def table_names(self) -> dict[str, str]:
        """The tables this layout uses, by role, unqualified."""
        names = {"rows": f"{self.name}__cdc_rows"}
        if self.has_clustering:
            names["partition"] = f"{self.name}__cdc_partition"
        if self.has_elements:
            names["elements"] = f"{self.name}__cdc_elements"
        return names

    # ------------------------------------------------------------------ shape

    @property
    def has_clustering(self) -> bool:
        return bool(self.clustering_names)

    @property
    def has_elements(self) -> bool:
        return any(c.elements is not None for c in self.columns)

    @property
    def has_statics(self) -> bool:
        return any(c.static for c in self.columns)

    @property
    def partition_key(self) -> tuple[tuple[str, ColumnCodec], ...]:
        return self.keys[: len(self.partition_names)]

    @property
    def clustering_key(self) -> tuple[tuple[str, ColumnCodec], ...]:
        return self.keys[len(self.partition_names) :]

    @property
    def regular(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.static)

    @property
    def statics(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.static)

    def range_sql(self) -> str:
        """A range tombstone: start (length of its prefix, inclusive, values), end
        (same), and the stamp of its timestamp."""
        values = ", ".join(c.sql for _, c in self.clustering_key)
        bound = f"UInt8, UInt8, Tuple({values})"
        return f"Tuple({bound}, {bound}, String)"

    # ------------------------------------------------------------------ DDL

    def ingest_columns(self) -> dict[str, str]:
        """The ingest table's columns, in the order each event's line has them."""
        columns = {n: c.sql for n, c in self.keys}
        if self.has_clustering:
            columns["_cdc_kind"] = "UInt8"
        columns["_cdc_marker"] = "String"
        columns["_cdc_deleted"] = "String"
        columns.update((c.name, "String") for c in self.columns)
        if self.has_clustering:
            columns["_cdc_range"] = self.range_sql()
        if self.has_elements:
            for name in ("_cdc_e_column", "_cdc_e_key", "_cdc_e_cell"):
                columns[name] = "Array(String)"
        return columns

    def target_columns(self) -> dict[str, dict[str, str]]:
        """Each aggregating table's columns, by role."""
        keys = {n: c.sql for n, c in self.keys}
        rows = {**keys, "_cdc_marker": CELL_STATE, "_cdc_deleted": CELL_STATE}
        rows.update((c.name, CELL_STATE) for c in self.regular)
        targets = {"rows": rows}
        if self.has_clustering:
            partition = {n: c.sql for n, c in self.partition_key}
            partition["_cdc_deleted"] = CELL_STATE
            partition["_cdc_ranges"] = f"AggregateFunction(groupUniqArray, {self.range_sql()})"
            partition.update((c.name, CELL_STATE) for c in self.statics)
            targets["partition"] = partition
        if self.has_elements:
            targets["elements"] = {
                **keys,
                "_cdc_column": "String",
                "_cdc_element": "String",
                "_cdc_cell": CELL_STATE,
            }
        return targets

    def create_statements(self) -> list[str]:
        order = {
            "rows": _names(self.keys),
            "partition": _names(self.partition_key),
            "elements": ", ".join([_names(self.keys), "`_cdc_column`", "`_cdc_element`"]),
        }
        statements = [
            f"CREATE TABLE IF NOT EXISTS {qualified(self.database, self.table_names()[role])} "
            f"({_columns(columns)}) ENGINE = {_ENGINE} ORDER BY ({order[role]})"
            for role, columns in self.target_columns().items()
        ]
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.ingest} ({_columns(self.ingest_columns())}) "
            "ENGINE = Null"
        )
        return statements

    def materialized_view(self, role: str, target_columns: list[str]) -> tuple[str, str]:
        """(name, CREATE statement) of the view feeding the ``role`` table, for the cell
        columns that table has (``target_columns``, as listed by the server)."""
        if role == "elements":
            keys = _names(self.keys)
            select = (
                f"SELECT {keys}, `_cdc_c` AS `_cdc_column`, `_cdc_k` AS `_cdc_element`, "
                f"maxState(`_cdc_x`) AS `_cdc_cell` FROM {self.ingest} ARRAY JOIN "
                "`_cdc_e_column` AS `_cdc_c`, `_cdc_e_key` AS `_cdc_k`, `_cdc_e_cell` AS `_cdc_x` "
                f"GROUP BY {keys}, `_cdc_column`, `_cdc_element`"
            )
        else:
            keys = _names(self.keys if role == "rows" else self.partition_key)
            key_names = {n for n, _ in (self.keys if role == "rows" else self.partition_key)}
            states = []
            for name in target_columns:
                if name in key_names:
                    continue
                column = quote_identifier(name)
                function = "groupUniqArrayState(`_cdc_range`)" if name == "_cdc_ranges" else (
                    f"maxState({column})"
                )  # fmt: skip
                states.append(f"{function} AS {column}")
            where = ""
            if self.has_clustering:
                where = f" WHERE `_cdc_kind` = {0 if role == 'rows' else 1}"
            select = f"SELECT {keys}, {', '.join(states)} FROM {self.ingest}{where} GROUP BY {keys}"
        digest = hashlib.sha256(select.encode()).hexdigest()[:12]
        name = f"{self.name}__cdc_mv_{role}_{digest}"
        target = qualified(self.database, self.table_names()[role])
        create = (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {qualified(self.database, name)} "
            f"TO {target} AS {select}"
        )
        return name, create

    def insert_target(self, columns: Sequence[str] | None = None) -> str:
        """The ingest table with ``columns`` (default: this layout's) named."""
        named = self.ingest_columns() if columns is None else columns
        names = ", ".join(quote_identifier(n) for n in named)
        return f"{self.ingest} ({names})"


def _names(columns: tuple[tuple[str, ColumnCodec], ...]) -> str:
    return ", ".join(quote_identifier(n) for n, _ in columns)


def _columns(columns: dict[str, str]) -> str:
    return ", ".join(f"{quote_identifier(n)} {t}" for n, t in columns.items())


def _supported(codec: ColumnCodec | Unsupported, column: ColumnDefinition) -> ColumnCodec:
    if isinstance(codec, Unsupported):
        # The diff engine refuses such a CREATE_TABLE; a schema that reaches here anyway
        # has no possible layout.
        raise ValueError(f"key column {column.name}: {codec.reason}")
    return codec
