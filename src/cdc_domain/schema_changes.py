"""Schema changes between two snapshots, each with a verdict per destination kind."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping

import attrs

from cdc_domain.cql_types import CqlType
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import SchemaIncompatibleError
from cdc_domain.schema import ColumnDefinition, TableSchema
from cdc_domain.type_mapping import MappedType, SchemaMapper, Unsupported

__all__ = [
    "DESTINATION_KINDS",
    "AppliedChange",
    "ChangeKind",
    "Compatibility",
    "SchemaChange",
    "SchemaDiff",
]

DESTINATION_KINDS: tuple[DestinationKind, ...] = tuple(DestinationKind)


class ChangeKind(enum.Enum):
    CREATE_TABLE = "CREATE_TABLE"
    DROP_TABLE = "DROP_TABLE"
    ADD_COLUMN = "ADD_COLUMN"
    DROP_COLUMN = "DROP_COLUMN"
    ALTER_TYPE = "ALTER_TYPE"


@attrs.frozen(slots=True)
class Compatibility:
    """Whether a destination of one kind can follow the change without losing data."""

    compatible: bool
    reason: str = ""


@attrs.frozen(slots=True)
class SchemaChange:
    """One change to one table. ``schema`` is the table as it is after the change
    (before it, for DROP_TABLE), so a destination can create what it lacks."""

    kind: ChangeKind
    keyspace: str
    table: str
    schema: TableSchema
    column: str | None = None
    old_type: CqlType | None = None
    new_type: CqlType | None = None
    compatibility: dict[DestinationKind, Compatibility] = attrs.field(factory=dict)

    @property
    def qualified_table(self) -> str:
        return f"{self.keyspace}.{self.table}"

    def is_compatible_with(self, destination: DestinationKind) -> bool:
        verdict = self.compatibility.get(destination)
        return verdict is None or verdict.compatible

    def require_compatible(self, destination: DestinationKind, name: str) -> None:
        """Raise the typed error a pipeline routes to the dead letter queue."""
        if self.is_compatible_with(destination):
            return
        reason = self.compatibility[destination].reason
        raise SchemaIncompatibleError(
            f"{name} cannot apply {self.describe()}: {reason}",
            table=self.qualified_table,
            details={
                "change": self.describe(),
                "column": self.column,
                "old_type": self.old_type.cql() if self.old_type else None,
                "new_type": self.new_type.cql() if self.new_type else None,
                "reason": reason,
            },
        )

    def describe(self) -> str:
        target = self.qualified_table + (f".{self.column}" if self.column else "")
        types = ""
        if self.old_type is not None or self.new_type is not None:
            old = self.old_type.cql() if self.old_type else "-"
            new = self.new_type.cql() if self.new_type else "-"
            types = f" ({old} -> {new})"
        return f"{self.kind.value} {target}{types}"


@attrs.frozen(slots=True)
class AppliedChange:
    """A schema change as a destination took it: the history an operator audits."""

    destination: str
    change: SchemaChange
    applied_at: dt.datetime


# Widenings Cassandra itself accepts or a destination column can absorb in place: the
# new type holds every value of the old one, and each destination's mapped type grows
# the same way (checked against the mapper, so a widening that maps to an incompatible
# destination type still gets a "no").
_WIDENINGS: frozenset[tuple[str, str]] = frozenset(
    {
        ("tinyint", "smallint"), ("tinyint", "int"), ("tinyint", "bigint"),
        ("tinyint", "varint"), ("smallint", "int"), ("smallint", "bigint"),
        ("smallint", "varint"), ("int", "bigint"), ("int", "varint"),
        ("bigint", "varint"), ("float", "double"), ("ascii", "text"),
        ("timeuuid", "uuid"), ("int", "decimal"), ("bigint", "decimal"),
        ("varint", "decimal"),
    }
)  # fmt: skip

# Destination column types each mapped type may be altered into in place.
_DESTINATION_WIDENINGS: dict[DestinationKind, frozenset[tuple[str, str]]] = {
    DestinationKind.POSTGRES: frozenset(
        {
            ("smallint", "integer"), ("smallint", "bigint"), ("integer", "bigint"),
            ("smallint", "numeric"), ("integer", "numeric"), ("bigint", "numeric"),
            ("real", "double precision"),
        }
    ),
    DestinationKind.CLICKHOUSE: frozenset(
        {
            ("Int8", "Int16"), ("Int8", "Int32"), ("Int8", "Int64"), ("Int16", "Int32"),
            ("Int16", "Int64"), ("Int32", "Int64"), ("Float32", "Float64"),
            ("Int8", "String"), ("Int16", "String"), ("Int32", "String"),
            ("Int64", "String"),
        }
    ),
}  # fmt: skip
_DESTINATION_WIDENINGS[DestinationKind.TIMESCALEDB] = _DESTINATION_WIDENINGS[
    DestinationKind.POSTGRES
]


class SchemaDiff:
    """The diff engine: what changed between two schemas, and who can follow it."""

    def __init__(self, mapper: SchemaMapper | None = None) -> None:
        self._mapper = mapper or SchemaMapper()

    def tables(self, old: TableSchema, new: TableSchema) -> list[SchemaChange]:
        """Column changes between two versions of one table, in the new table's order."""
        changes: list[SchemaChange] = []
        old_columns = {c.name: c for c in old.columns}
        new_columns = {c.name: c for c in new.columns}
        for name, column in new_columns.items():
            before = old_columns.get(name)
            if before is None:
                changes.append(self._column_change(ChangeKind.ADD_COLUMN, new, None, column))
            elif before.type != column.type or before.kind is not column.kind:
                changes.append(self._column_change(ChangeKind.ALTER_TYPE, new, before, column))
        for name, column in old_columns.items():
            if name not in new_columns:
                changes.append(self._column_change(ChangeKind.DROP_COLUMN, new, column, None))
        return changes

    def keyspaces(
        self,
        old: Mapping[tuple[str, str], TableSchema],
        new: Mapping[tuple[str, str], TableSchema],
    ) -> list[SchemaChange]:
        """Every change between two snapshots of many tables, keyed (keyspace, table)."""
        changes: list[SchemaChange] = []
        for key, schema in new.items():
            before = old.get(key)
            if before is None:
                changes.append(self._table_change(ChangeKind.CREATE_TABLE, schema))
            elif before.table_id != schema.table_id:
                # Dropped and re-created under the same name: a different table.
                changes.append(self._table_change(ChangeKind.DROP_TABLE, before))
                changes.append(self._table_change(ChangeKind.CREATE_TABLE, schema))
            else:
                changes.extend(self.tables(before, schema))
        for key, schema in old.items():
            if key not in new:
                changes.append(self._table_change(ChangeKind.DROP_TABLE, schema))
        return changes

    def created(self, schema: TableSchema) -> SchemaChange:
        """The CREATE_TABLE change that brings a destination from nothing to ``schema``."""
        return self._table_change(ChangeKind.CREATE_TABLE, schema)

    def _table_change(self, kind: ChangeKind, schema: TableSchema) -> SchemaChange:
        verdicts = {}
        for destination in DESTINATION_KINDS:
            if kind is ChangeKind.CREATE_TABLE:
                verdicts[destination] = self._key_support(schema, destination)
            else:
                verdicts[destination] = Compatibility(True)
        return SchemaChange(
            kind=kind,
            keyspace=schema.keyspace,
            table=schema.table,
            schema=schema,
            compatibility=verdicts,
        )

    def _key_support(self, schema: TableSchema, destination: DestinationKind) -> Compatibility:
        for column in schema.primary_key:
            mapped = self._mapper.map(column.type, destination)
            if isinstance(mapped, Unsupported):
                return Compatibility(False, f"key column {column.name}: {mapped.reason}")
        return Compatibility(True)

    def _column_change(
        self,
        kind: ChangeKind,
        schema: TableSchema,
        before: ColumnDefinition | None,
        after: ColumnDefinition | None,
    ) -> SchemaChange:
        column = after or before
        assert column is not None
        verdicts = {
            destination: self._verdict(kind, before, after, destination)
            for destination in DESTINATION_KINDS
        }
        return SchemaChange(
            kind=kind,
            keyspace=schema.keyspace,
            table=schema.table,
            schema=schema,
            column=column.name,
            old_type=before.type if before else None,
            new_type=after.type if after else None,
            compatibility=verdicts,
        )

    def _verdict(
        self,
        kind: ChangeKind,
        before: ColumnDefinition | None,
        after: ColumnDefinition | None,
        destination: DestinationKind,
    ) -> Compatibility:
        if kind is ChangeKind.DROP_COLUMN:
            return Compatibility(True)
        assert after is not None
        new_mapping = self._mapper.map(after.type, destination)
        if isinstance(new_mapping, Unsupported):
            return Compatibility(False, new_mapping.reason)
        if kind is ChangeKind.ADD_COLUMN:
            return Compatibility(True)
        assert before is not None
        return self._alter_verdict(before, after, new_mapping, destination)

    def _alter_verdict(
        self,
        before: ColumnDefinition,
        after: ColumnDefinition,
        new_mapping: MappedType,
        destination: DestinationKind,
    ) -> Compatibility:
        if before.is_primary_key or after.is_primary_key:
            return Compatibility(
                False, f"primary key column {after.name} cannot change in a destination"
            )
        if before.kind is not after.kind:
            return Compatibility(False, f"column {after.name} changed kind")
        if destination in (DestinationKind.FILE, DestinationKind.MEMORY):
            return Compatibility(True)
        old_mapping = self._mapper.map(before.type, destination)
        if old_mapping == new_mapping:
            return Compatibility(True)
        if (before.type.name, after.type.name) not in _WIDENINGS:
            return Compatibility(
                False, f"{before.type.cql()} -> {after.type.cql()} is not a widening"
            )
        assert isinstance(old_mapping, MappedType)
        pair = (old_mapping.sql, new_mapping.sql)
        if pair in _DESTINATION_WIDENINGS.get(destination, frozenset()):
            return Compatibility(True)
        return Compatibility(
            False,
            f"{destination.value} cannot alter {old_mapping.sql} to {new_mapping.sql} in place",
        )
