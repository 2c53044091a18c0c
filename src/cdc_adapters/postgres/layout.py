"""How one Cassandra table is laid out in PostgreSQL, derived once per schema version.

Per table: the mirror table (primary key = Cassandra's), a companion table for static
columns when the table has any (one row per partition, joined in by the view), a
tombstone table for partition and clustering-range deletions, the ``<table>__live``
view that shows what Cassandra returns now, and composite row types that carry a
whole batch as one array parameter (see ADR 0004 for why).

Each value column ``c`` keeps what Cassandra's reconciliation needs to pick between
two versions of its cell (:mod:`cdc_domain.reconciliation`): the write timestamp
``_cdc_ts_c``, the expiry ``_cdc_exp_c`` of a cell written with a TTL, and for types
whose byte order SQL cannot compute the serialized bytes ``_cdc_tie_c``. A non-frozen
collection is a set of cells, one per element: ``_cdc_el_c`` holds each element's
version (an array of ``<table>__cdc_el_<hash>``), ``_cdc_ts_c`` the collection's own
tombstone, ``c`` the value its live elements make and ``_cdc_exp_c`` the first expiry
among them (when that value stops being current).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import attrs

from cdc_adapters.postgres.identifiers import derived_name, qualified
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.values import ColumnCodec
from cdc_domain.destinations import DestinationKind
from cdc_domain.schema import ClusteringOrder, ColumnDefinition, TableSchema
from cdc_domain.type_mapping import MappedType, SchemaMapper

__all__ = [
    "ELEMENT_FIELDS",
    "NATIVE_ORDER",
    "NEVER",
    "KeyColumn",
    "RowTarget",
    "TableLayout",
    "ValueColumn",
    "element_attributes",
]

NEVER = -(2**63)
"""The timestamp of "never written": below any Cassandra write timestamp."""

ELEMENT_FIELDS = ("k", "t", "f", "x", "b", "v")
"""One element's version, as ``<table>__cdc_el_<hash>`` holds it: its key as text
(``k``: a set's element, a map's key, a UDT's field, a list cell's time-ordered key),
timestamp ``t``, kind ``f`` (0 live, 1 expiring, 2 tombstone: the order Cassandra ranks
them in at equal timestamps), expiry ``x`` (microseconds), serialized value ``b`` (the
last tie-break) and the value ``v`` as the collection column holds it."""


def element_attributes(value_type: str) -> list[tuple[str, str]]:
    """The fields of an element type whose values are of SQL type ``value_type``."""
    types = ("text", "bigint", "smallint", "bigint", "bytea", value_type)
    return list(zip(ELEMENT_FIELDS, types, strict=True))


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
    else the kind of non-frozen collection (``set``, ``list``, ``map``, ``udt``) whose
    elements are cells of their own. ``ts`` and ``exp`` name the cell's timestamp and
    expiry columns (a collection's own tombstone, and its elements' first expiry);
    ``tie`` the column of a whole value's serialized bytes, for a type whose byte order
    SQL cannot compute (see :data:`NATIVE_ORDER`); ``elements`` the element versions of
    a collection, of composite type ``element_type``."""

    name: str
    codec: ColumnCodec
    shape: str
    ts: str
    exp: str
    tie: str | None = None
    elements: str | None = None
    element_type: str | None = None

    @property
    def sql_type(self) -> str:
        return self.codec.sql_type

    @property
    def is_collection(self) -> bool:
        return self.shape != "cell"

    @property
    def element_value_type(self) -> str:
        """The SQL type of one element's value: a list's or set's array element type,
        else jsonb (map values, UDT fields, elements of jsonb-held lists and sets)."""
        if self.shape in ("set", "list") and self.codec.is_array:
            return self.sql_type[:-2]
        return "jsonb"

    def side_columns(self, schema: str) -> Iterator[tuple[str, str]]:
        """The bookkeeping columns beside the value, with their types (an element type
        lives in the table's ``schema``)."""
        yield self.ts, "bigint"
        yield self.exp, "bigint"
        if self.tie is not None:
            yield self.tie, "bytea"
        if self.elements is not None:
            assert self.element_type is not None
            yield self.elements, f"{qualified(schema, self.element_type)}[]"


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
        """The fields of one folded row: the key, per cell column its value, timestamp,
        expiry (and tie bytes), per collection its tombstone time and element versions,
        then the row marker's time and expiry, the row deletion time and the newest
        write time."""
        attributes = [(f"k{i}", k.sql_type) for i, k in enumerate(self.keys)]
        for i, column in enumerate(self.values):
            if column.is_collection:
                assert column.element_type is not None
                element_type = qualified(self.schema, column.element_type)
                attributes += [(f"t{i}", "bigint"), (f"e{i}", f"{element_type}[]")]
                continue
            attributes += [(f"v{i}", column.sql_type), (f"t{i}", "bigint"), (f"x{i}", "bigint")]
            if column.tie is not None:
                attributes.append((f"b{i}", "bytea"))
        return [
            *attributes,
            ("live", "bigint"),
            ("lx", "bigint"),
            ("rowdel", "bigint"),
            ("wt", "bigint"),
        ]


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

    @property
    def targets(self) -> tuple[RowTarget, ...]:
        """The tables rows go to, in the order every writer locks them."""
        return (self.main,) if self.static is None else (self.main, self.static)

    def element_types(self) -> dict[str, str]:
        """The composite type of each collection's element versions, by name, with the
        SQL type of its value field."""
        return {
            column.element_type: column.element_value_type
            for target in self.targets
            for column in target.collections
            if column.element_type is not None
        }

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
            return tuple(
                _value_column(table, column, codecs[column.name])
                for column in columns
                if column.name in codecs
            )

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


def _value_column(table: str, column: ColumnDefinition, codec: ColumnCodec) -> ValueColumn:
    shape = _shape(column)
    draft = ValueColumn(
        column.name,
        codec,
        shape,
        ts=derived_name("_cdc_ts_", column.name),
        exp=derived_name("_cdc_exp_", column.name),
    )
    if shape == "cell":
        if column.type.name in NATIVE_ORDER:
            return draft
        return attrs.evolve(draft, tie=derived_name("_cdc_tie_", column.name))
    element_type = derived_name(
        "", table, f"__cdc_el_{_fingerprint(ELEMENT_FIELDS, draft.element_value_type)}"
    )
    return attrs.evolve(
        draft, elements=derived_name("_cdc_el_", column.name), element_type=element_type
    )


def _target(
    schema: str,
    table: str,
    partition: tuple[KeyColumn, ...],
    clustering: tuple[KeyColumn, ...],
    values: tuple[ValueColumn, ...],
    static: bool,
) -> RowTarget:
    draft = RowTarget(schema, table, partition, clustering, values, "", static)
    version = _fingerprint(draft.row_attributes())
    return attrs.evolve(draft, row_type=derived_name("", table, f"__cdc_row_{version}"))
