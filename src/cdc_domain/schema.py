"""Table schemas as Cassandra defines them, independent of any destination."""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Callable, Iterable

import attrs

from cdc_domain.cql_types import CqlType

__all__ = [
    "ClusteringOrder",
    "ColumnDefinition",
    "ColumnKind",
    "TableSchema",
    "UnresolvedTypeError",
    "resolve_udts",
]


class ColumnKind(enum.Enum):
    PARTITION_KEY = "partition_key"
    CLUSTERING = "clustering"
    REGULAR = "regular"
    STATIC = "static"


class ClusteringOrder(enum.Enum):
    ASC = "asc"
    DESC = "desc"
    NONE = "none"


class UnresolvedTypeError(LookupError):
    """A user-defined type that the schema does not define."""


@attrs.frozen(slots=True)
class ColumnDefinition:
    name: str
    type: CqlType
    kind: ColumnKind = ColumnKind.REGULAR
    position: int = -1
    clustering_order: ClusteringOrder = ClusteringOrder.NONE

    @property
    def is_primary_key(self) -> bool:
        return self.kind in (ColumnKind.PARTITION_KEY, ColumnKind.CLUSTERING)


def _fingerprint(schema: TableSchema) -> str:
    digest = hashlib.sha256()
    for column in schema.columns:
        digest.update(
            f"{column.name}\0{column.type.cql()}\0{column.kind.value}\0{column.position}"
            f"\0{column.clustering_order.value}\n".encode()
        )
    return digest.hexdigest()[:16]


@attrs.frozen(slots=True)
class TableSchema:
    """One table's columns at one point in time.

    ``version`` is a fingerprint of the column set, recomputed whenever a schema is built
    (``attrs.evolve`` included), so caches keyed on it are dropped by any schema change.
    ``dropped_columns`` keeps the types of columns dropped from the table, because older
    commit log entries still hold their cells.
    """

    keyspace: str
    table: str
    table_id: uuid.UUID
    columns: tuple[ColumnDefinition, ...]
    cdc: bool = True
    dropped_columns: tuple[ColumnDefinition, ...] = ()
    version: str = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "version", _fingerprint(self))

    @property
    def qualified_name(self) -> str:
        return f"{self.keyspace}.{self.table}"

    def _of_kind(self, kind: ColumnKind) -> tuple[ColumnDefinition, ...]:
        return tuple(sorted((c for c in self.columns if c.kind is kind), key=lambda c: c.position))

    @property
    def partition_key(self) -> tuple[ColumnDefinition, ...]:
        return self._of_kind(ColumnKind.PARTITION_KEY)

    @property
    def clustering(self) -> tuple[ColumnDefinition, ...]:
        return self._of_kind(ColumnKind.CLUSTERING)

    @property
    def primary_key(self) -> tuple[ColumnDefinition, ...]:
        return self.partition_key + self.clustering

    @property
    def regular(self) -> tuple[ColumnDefinition, ...]:
        return tuple(c for c in self.columns if c.kind is ColumnKind.REGULAR)

    @property
    def static(self) -> tuple[ColumnDefinition, ...]:
        return tuple(c for c in self.columns if c.kind is ColumnKind.STATIC)

    def column(self, name: str) -> ColumnDefinition | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None

    def column_or_dropped(self, name: str) -> ColumnDefinition | None:
        """The live column, else the dropped one of that name (for decoding old cells)."""
        found = self.column(name)
        if found is not None:
            return found
        for column in self.dropped_columns:
            if column.name == name:
                return column
        return None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def resolve_udts(
    cql_type: CqlType, lookup: Callable[[str, str], Iterable[tuple[str, CqlType]] | None]
) -> CqlType:
    """Fill in the fields of every UDT in ``cql_type`` from ``lookup(keyspace, name)``.

    ``lookup`` returns the (field name, field type) pairs, whose own UDTs are resolved
    in turn, or None when the keyspace has no such type.
    """
    params = tuple(resolve_udts(p, lookup) for p in cql_type.params)
    if not cql_type.is_udt or cql_type.field_names:
        return attrs.evolve(cql_type, params=params)
    fields = lookup(cql_type.udt_keyspace or "", cql_type.udt_name or "")
    if fields is None:
        raise UnresolvedTypeError(f"unknown type {cql_type.udt_keyspace}.{cql_type.udt_name}")
    pairs = list(fields)
    return attrs.evolve(
        cql_type,
        field_names=tuple(name for name, _ in pairs),
        params=tuple(resolve_udts(t, lookup) for _, t in pairs),
    )
