"""Every CQL type mapped to each destination's column type, in one table.

A combination a destination cannot hold faithfully is an explicit ``Unsupported`` with
the reason, never a missing key: the validator routes events touching such a column to
the dead letter queue with that reason.
"""

from __future__ import annotations

import attrs

from cdc_domain.cql_types import CqlType
from cdc_domain.destinations import DestinationKind

__all__ = ["MappedType", "SchemaMapper", "TypeMapping", "Unsupported"]


@attrs.frozen(slots=True)
class MappedType:
    """A destination column type, as that destination spells it in DDL."""

    sql: str


@attrs.frozen(slots=True)
class Unsupported:
    reason: str


TypeMapping = MappedType | Unsupported

_PG = DestinationKind.POSTGRES
_CH = DestinationKind.CLICKHOUSE
_TS = DestinationKind.TIMESCALEDB

_COUNTER_MIRROR = Unsupported(
    "counter columns hold increments; a mirror cannot apply them idempotently "
    "(replays would double-count), so only change-history destinations take them"
)

# Native CQL types: PostgreSQL, ClickHouse, TimescaleDB. TimescaleDB is PostgreSQL
# underneath; it differs only where a change-history table can keep what a mirror cannot.
NATIVE_TYPES: dict[str, tuple[TypeMapping, TypeMapping, TypeMapping]] = {
    "ascii": (MappedType("text"), MappedType("String"), MappedType("text")),
    "text": (MappedType("text"), MappedType("String"), MappedType("text")),
    "bigint": (MappedType("bigint"), MappedType("Int64"), MappedType("bigint")),
    "int": (MappedType("integer"), MappedType("Int32"), MappedType("integer")),
    "smallint": (MappedType("smallint"), MappedType("Int16"), MappedType("smallint")),
    "tinyint": (MappedType("smallint"), MappedType("Int8"), MappedType("smallint")),
    "varint": (MappedType("numeric"), MappedType("String"), MappedType("numeric")),
    "decimal": (MappedType("numeric"), MappedType("String"), MappedType("numeric")),
    "float": (MappedType("real"), MappedType("Float32"), MappedType("real")),
    "double": (
        MappedType("double precision"),
        MappedType("Float64"),
        MappedType("double precision"),
    ),
    "boolean": (MappedType("boolean"), MappedType("UInt8"), MappedType("boolean")),
    "uuid": (MappedType("uuid"), MappedType("UUID"), MappedType("uuid")),
    "timeuuid": (MappedType("uuid"), MappedType("UUID"), MappedType("uuid")),
    "timestamp": (
        MappedType("timestamptz"),
        MappedType("DateTime64(3, 'UTC')"),
        MappedType("timestamptz"),
    ),
    "date": (MappedType("date"), MappedType("Date32"), MappedType("date")),
    "time": (MappedType("time"), MappedType("Int64"), MappedType("time")),
    "duration": (MappedType("interval"), MappedType("String"), MappedType("interval")),
    "inet": (MappedType("inet"), MappedType("String"), MappedType("inet")),
    "blob": (MappedType("bytea"), MappedType("String"), MappedType("bytea")),
    "counter": (_COUNTER_MIRROR, _COUNTER_MIRROR, MappedType("bigint")),
}

# PostgreSQL arrays hold scalars only; anything nested goes to jsonb.
_PG_ARRAY_ELEMENTS = {
    "ascii", "text", "bigint", "int", "smallint", "tinyint", "varint", "decimal", "float",
    "double", "boolean", "uuid", "timeuuid", "timestamp", "date", "time", "inet", "blob",
}  # fmt: skip

# ClickHouse Map keys must be simple, comparable values.
_CH_MAP_KEYS = {
    "ascii", "text", "bigint", "int", "smallint", "tinyint", "boolean", "uuid", "timeuuid",
    "date", "timestamp", "inet", "varint", "decimal",
}  # fmt: skip

_LOSSLESS = {DestinationKind.FILE, DestinationKind.MEMORY}


class SchemaMapper:
    """Maps CQL types to destination column types (see the module docstring)."""

    def map(self, cql_type: CqlType, destination: DestinationKind) -> TypeMapping:
        if destination in _LOSSLESS:
            return MappedType(cql_type.cql())
        if cql_type.name == "custom":
            return Unsupported(f"custom type {cql_type.custom_class} has no known layout")
        if cql_type.is_native:
            return NATIVE_TYPES[cql_type.name][_column(destination)]
        if destination is DestinationKind.CLICKHOUSE:
            return self._clickhouse_composite(cql_type)
        return self._postgres_composite(cql_type, destination)

    def is_supported(self, cql_type: CqlType, destination: DestinationKind) -> bool:
        return isinstance(self.map(cql_type, destination), MappedType)

    def _postgres_composite(self, cql_type: CqlType, destination: DestinationKind) -> TypeMapping:
        nested_counter = self._nested_unsupported(cql_type, destination)
        if nested_counter is not None:
            return nested_counter
        if cql_type.name in ("list", "set", "vector"):
            element = cql_type.params[0]
            if element.name in _PG_ARRAY_ELEMENTS:
                mapped = self.map(element, destination)
                assert isinstance(mapped, MappedType)
                return MappedType(f"{mapped.sql}[]")
        return MappedType("jsonb")

    def _clickhouse_composite(self, cql_type: CqlType) -> TypeMapping:
        nested = self._nested_unsupported(cql_type, DestinationKind.CLICKHOUSE)
        if nested is not None:
            return nested
        if cql_type.is_udt:
            return MappedType("String")
        inner = [self._clickhouse_element(p) for p in cql_type.params]
        for mapped in inner:
            if isinstance(mapped, Unsupported):
                return mapped
        sqls = [m.sql for m in inner if isinstance(m, MappedType)]
        if cql_type.name in ("list", "set", "vector"):
            return MappedType(f"Array({sqls[0]})")
        if cql_type.name == "map":
            if cql_type.params[0].name not in _CH_MAP_KEYS:
                return Unsupported(
                    f"ClickHouse Map keys must be simple values, not {cql_type.params[0].cql()}"
                )
            return MappedType(f"Map({sqls[0]}, {sqls[1]})")
        # A tuple's fields may each be null in Cassandra.
        return MappedType(f"Tuple({', '.join(_nullable(s) for s in sqls)})")

    def _clickhouse_element(self, cql_type: CqlType) -> TypeMapping:
        return self.map(cql_type, DestinationKind.CLICKHOUSE)

    def _nested_unsupported(
        self, cql_type: CqlType, destination: DestinationKind
    ) -> Unsupported | None:
        for node in cql_type.walk():
            if node.name == "custom":
                return Unsupported(f"custom type {node.custom_class} has no known layout")
            if node.is_udt and not node.is_resolved:
                return Unsupported(f"user type {node.udt_name} has not been resolved")
        return None


def _nullable(sql: str) -> str:
    if sql.startswith(("Array(", "Map(", "Tuple(", "Nullable(")):
        return sql
    return f"Nullable({sql})"


def _column(destination: DestinationKind) -> int:
    return {_PG: 0, _CH: 1, _TS: 2}[destination]
