"""How one Cassandra table is laid out in PostgreSQL, derived once per schema version.

Per table: the mirror table (primary key = Cassandra's), a companion table for static
columns when the table has any (one row per partition, joined in by the view), a
tombstone table for partition and clustering-range deletions, the ``<table>__live``
view that hides soft-deleted rows, and composite row types that carry a whole batch
as one array parameter (see ADR 0004 for why).

Each value column ``c`` has a write timestamp column ``_cdc_ts_c``; a non-frozen
collection also keeps ``_cdc_dts_c`` (newest element change) and a list its cell keys
``_cdc_keys_c``, which is what makes element changes and removals by key possible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import attrs

from cdc_adapters.postgres.identifiers import derived_name
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.values import ColumnCodec
from cdc_domain.destinations import DestinationKind
from cdc_domain.schema import ClusteringOrder, ColumnDefinition, TableSchema
from cdc_domain.type_mapping import MappedType, SchemaMapper

__all__ = ["NATIVE_ORDER", "NEVER", "KeyColumn", "RowTarget", "TableLayout", "ValueColumn"]

NEVER = -(2**63)
"""The timestamp of "never written": below any Cassandra write timestamp."""


@attrs.frozen(slots=True)
class KeyColumn:
    """``descending``: a clustering column declared DESC, along which a range
    deletion's start bound holds the larger value."""

    name: str
    codec: ColumnCodec
    descending: bool = False

    @property
    def sql_type(self) -> str:
        return self.codec.sql_type


NATIVE_ORDER = frozenset(
    {
        "ascii", "text", "blob", "boolean", "date", "time", "uuid", "timeuuid",
        "tinyint", "smallint", "int", "bigint", "timestamp", "float", "double",
    }
)  # fmt: skip
"""CQL types whose serialized byte order PostgreSQL can compute from the stored value:
equal timestamps are settled in SQL. Other whole values keep their serialized bytes in
a tie column beside them (``tie``)."""


@attrs.frozen(slots=True)
class ValueColumn:
    """A regular or static column. ``shape`` is ``cell`` for anything written whole,
    else how a non-frozen collection changes element by element. ``tie`` names the
    column holding a whole value's serialized bytes, for a type whose byte order SQL
    cannot compute (see :data:`NATIVE_ORDER`)."""

    name: str
    codec: ColumnCodec
    shape: str
    ts: str
    dts: str | None = None
    keys: str | None = None
    tie: str | None = None

    @property
    def sql_type(self) -> str:
        return self.codec.sql_type

    @property
    def is_collection(self) -> bool:
        return self.shape != "cell"

    def side_columns(self) -> Iterator[tuple[str, str]]:
        yield self.ts, "bigint"
        if self.dts is not None:
            yield self.dts, "bigint"
        if self.keys is not None:
            yield self.keys, "text[]"
        if self.tie is not None:
            yield self.tie, "bytea"

    @property
    def add_type(self) -> str:
        """Type of the elements a delta adds: the column's own type or a jsonb object."""
        return self.sql_type if self.shape in ("set", "list") else "jsonb"

    @property
    def remove_type(self) -> str:
        """Type of what a delta removes: set elements, or keys as text."""
        return self.sql_type if self.shape == "set" else "text[]"


@attrs.frozen(slots=True)
class RowTarget:
    """One table rows are upserted into: the mirror table or the static companion.

    ``clustering`` is empty for the static table, whose rows only a partition
    deletion reaches.
    """

    schema: str
    table: str
    partition: tuple[KeyColumn, ...]
    clustering: tuple[KeyColumn, ...]
    values: tuple[ValueColumn, ...]
    row_type: str
    delta_type: str
    static: bool

    @property
    def keys(self) -> tuple[KeyColumn, ...]:
        return self.partition + self.clustering

    @property
    def collections(self) -> tuple[ValueColumn, ...]:
        return tuple(v for v in self.values if v.is_collection)

    def value(self, name: str) -> ValueColumn | None:
        for column in self.values:
            if column.name == name:
                return column
        return None

    def row_attributes(self) -> list[tuple[str, str]]:
        attributes = [(f"k{i}", k.sql_type) for i, k in enumerate(self.keys)]
        for i, column in enumerate(self.values):
            attributes += [(f"v{i}", column.sql_type), (f"t{i}", "bigint")]
            if column.keys is not None:
                attributes.append((f"l{i}", "text[]"))
            if column.tie is not None:
                attributes.append((f"b{i}", "bytea"))
        return [*attributes, ("live", "bigint"), ("rowdel", "bigint"), ("wt", "bigint")]

    def delta_attributes(self) -> list[tuple[str, str]]:
        attributes = [(f"k{i}", k.sql_type) for i, k in enumerate(self.keys)]
        for i, column in enumerate(self.values):
            if column.is_collection:
                attributes += [
                    (f"a{i}", column.add_type),
                    (f"d{i}", column.remove_type),
                    (f"n{i}", "text[]"),
                    (f"s{i}", "bigint"),
                ]
        return attributes


def _shape(column: ColumnDefinition) -> str:
    if not column.type.is_multicell:
        return "cell"
    return "udt" if column.type.is_udt else column.type.name


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


@attrs.frozen(slots=True)
class TableLayout:
    """Everything the sink needs to write one table at one schema version."""

    source: TableSchema
    schema: str
    table: str
    main: RowTarget
    static: RowTarget | None
    tombstones: str
    tombstone_type: str
    view: str
    unsupported: dict[str, str]

    @property
    def partition(self) -> tuple[KeyColumn, ...]:
        return self.main.partition

    @property
    def clustering(self) -> tuple[KeyColumn, ...]:
        return self.main.clustering

    def tombstone_attributes(self) -> list[tuple[str, str]]:
        attributes = [(f"k{i}", k.sql_type) for i, k in enumerate(self.partition)]
        attributes += [
            ("id", "text"), ("ts", "bigint"), ("part", "boolean"),
            ("sl", "smallint"), ("si", "boolean"), ("el", "smallint"), ("ei", "boolean"),
        ]  # fmt: skip
        attributes += [(f"s{i}", c.sql_type) for i, c in enumerate(self.clustering)]
        attributes += [(f"e{i}", c.sql_type) for i, c in enumerate(self.clustering)]
        return attributes

    @classmethod
    def build(
        cls,
        source: TableSchema,
        naming: Naming,
        kind: DestinationKind,
        mapper: SchemaMapper | None = None,
    ) -> TableLayout:
        mapper = mapper or SchemaMapper()
        unsupported: dict[str, str] = {}
        codecs: dict[str, ColumnCodec] = {}
        for column in source.columns:
            mapped = mapper.map(column.type, kind)
            if isinstance(mapped, MappedType):
                codecs[column.name] = ColumnCodec(column.type, mapped.sql)
            else:
                unsupported[column.name] = mapped.reason
        schema = naming.schema_for(source.keyspace, source.table)
        table = naming.table_for(source.keyspace, source.table)
        partition = tuple(KeyColumn(c.name, codecs[c.name]) for c in source.partition_key)
        clustering = tuple(
            KeyColumn(c.name, codecs[c.name], c.clustering_order is ClusteringOrder.DESC)
            for c in source.clustering
        )

        def values(columns: tuple[ColumnDefinition, ...]) -> tuple[ValueColumn, ...]:
            result = []
            for column in columns:
                if column.name not in codecs:
                    continue
                shape = _shape(column)
                result.append(
                    ValueColumn(
                        column.name,
                        codecs[column.name],
                        shape,
                        ts=derived_name("_cdc_ts_", column.name),
                        dts=derived_name("_cdc_dts_", column.name) if shape != "cell" else None,
                        keys=derived_name("_cdc_keys_", column.name) if shape == "list" else None,
                        tie=(
                            derived_name("_cdc_tie_", column.name)
                            if shape == "cell" and column.type.name not in NATIVE_ORDER
                            else None
                        ),
                    )
                )
            return tuple(result)

        regular, static = values(source.regular), values(source.static)
        main = _target(schema, table, partition, clustering, regular, static=False)
        static_target = (
            _target(schema, derived_name("", table, "__static"), partition, (), static, True)
            if static
            else None
        )
        tombstone_fields = (partition, clustering)
        return cls(
            source=source,
            schema=schema,
            table=table,
            main=main,
            static=static_target,
            tombstones=derived_name("", table, "__tombstones"),
            tombstone_type=derived_name(
                "", table, f"__cdc_tomb_{_fingerprint(repr(tombstone_fields))}"
            ),
            view=derived_name("", table, "__live"),
            unsupported=unsupported,
        )


def _target(
    schema: str,
    table: str,
    partition: tuple[KeyColumn, ...],
    clustering: tuple[KeyColumn, ...],
    values: tuple[ValueColumn, ...],
    static: bool,
) -> RowTarget:
    draft = RowTarget(schema, table, partition, clustering, values, "", "", static)
    version = _fingerprint(draft.row_attributes(), draft.delta_attributes())
    return attrs.evolve(
        draft,
        row_type=derived_name("", table, f"__cdc_row_{version}"),
        delta_type=derived_name("", table, f"__cdc_delta_{version}"),
    )
