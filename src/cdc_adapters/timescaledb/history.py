"""The change-history table of one Cassandra table: one row per Cassandra write.

Key columns are typed (so ``WHERE id = ...`` and ``time_bucket`` per key are indexable);
what the change wrote goes to jsonb (``_cdc_columns``, ``_cdc_collections``,
``_cdc_counters``), in the same type-directed JSON form the PostgreSQL mirror uses, so
adding or dropping a Cassandra column never needs DDL here. ``_cdc_time`` is the
Cassandra write time: the hypertable is partitioned on it. The unique index on
(write id, time) makes every copy of a write after the first a no-op (``ON CONFLICT DO
NOTHING``): the copies other nodes' agents read of the same write, and re-deliveries.
The node's event id and position stay, as what says which copy was recorded.
``_cdc_op`` is the write's operation, or ``SNAPSHOT`` for a row a snapshot read
(:data:`SNAPSHOT`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from cdc_adapters.postgres.identifiers import derived_name, qualified, quote
from cdc_adapters.postgres.layout import KeyColumn
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.values import (
    ColumnCodec,
    UnwritableValueError,
    json_converter,
    to_json,
)
from cdc_adapters.timescaledb.extension import TimescaleInfo
from cdc_domain.cql_types import CqlType
from cdc_domain.destinations import DestinationKind
from cdc_domain.events import ChangeEvent, ClusteringBound, CollectionDelta
from cdc_domain.schema import TableSchema
from cdc_domain.type_mapping import MappedType, SchemaMapper

__all__ = ["HistoryLayout"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

SNAPSHOT = "SNAPSHOT"
"""``_cdc_op`` of a row a snapshot read: what the row held, at its real write times, not a
write that happened when it was recorded. Its write id is a snapshot reading's
(:func:`~cdc_domain.identity.write_id`), so a write the stream also carried keeps its own
row beside it."""

# (column, type) after the key columns; the composite row type has the same fields.
_META = (
    ("_cdc_time", "timestamptz NOT NULL"),
    ("_cdc_write_id", "text NOT NULL"),  # null in rows written before write ids (ADR 0005)
    ("_cdc_event_id", "text NOT NULL"),
    ("_cdc_op", "text NOT NULL"),
    ("_cdc_scope", "text"),
    ("_cdc_static", "boolean NOT NULL"),
    ("_cdc_columns", "jsonb"),
    ("_cdc_deleted_columns", "text[]"),
    ("_cdc_collections", "jsonb"),
    ("_cdc_counters", "jsonb"),
    ("_cdc_counter_totals", "jsonb"),
    ("_cdc_range", "jsonb"),
    ("_cdc_ttl", "integer"),
    ("_cdc_expires_at", "timestamptz"),
    ("_cdc_writetime", "bigint NOT NULL"),
    ("_cdc_partition_id", "text"),  # null for a dead letter replay (no checkpoint)
    ("_cdc_segment", "bigint NOT NULL"),
    ("_cdc_offset", "bigint NOT NULL"),
    ("_cdc_index", "integer NOT NULL"),
    ("_cdc_captured_at", "timestamptz NOT NULL"),
)


def micros_to_datetime(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


@attrs.frozen(slots=True)
class HistoryLayout:
    source: TableSchema
    schema: str
    table: str
    keys: tuple[KeyColumn, ...]
    types: dict[str, CqlType]
    row_type: str
    converters: dict[str, Callable[[Any], Any]]

    @classmethod
    def build(cls, source: TableSchema, naming: Naming) -> HistoryLayout:
        mapper = SchemaMapper()
        keys = []
        for column in source.primary_key:
            mapped = mapper.map(column.type, DestinationKind.TIMESCALEDB)
            if not isinstance(mapped, MappedType):
                raise UnwritableValueError(f"key column {column.name}: {mapped.reason}")
            keys.append(KeyColumn(column.name, ColumnCodec(column.type, mapped.sql)))
        table = naming.table_for(source.keyspace, source.table)
        fields = tuple((k.name, k.sql_type) for k in keys)
        # The row type's name follows its fields, so a layout with other columns gets a
        # type of its own instead of meeting an older one by the same name.
        version = hashlib.sha256(repr((fields, _META)).encode()).hexdigest()[:10]
        types = {c.name: c.type for c in (*source.columns, *source.dropped_columns)}
        return cls(
            source=source,
            schema=naming.schema_for(source.keyspace, source.table),
            table=table,
            keys=tuple(keys),
            types=types,
            row_type=derived_name("", table, f"__cdc_hist_{version}"),
            converters={name: json_converter(cql) for name, cql in types.items()},
        )

    @property
    def qualified(self) -> str:
        return qualified(self.schema, self.table)

    def _attributes(self) -> list[tuple[str, str]]:
        keys = [(f"k{i}", k.sql_type) for i, k in enumerate(self.keys)]
        return keys + [(name, sql.replace(" NOT NULL", "")) for name, sql in _META]

    def ddl(self, timescale: TimescaleInfo | None, chunk_interval: str) -> list[str]:
        """Idempotent statements creating the table (a hypertable when ``timescale``),
        its unique index and its row type."""
        keys = [f"{quote(k.name)} {k.sql_type}" for k in self.keys]
        meta = [f"{quote(n)} {t}" for n, t in _META]
        row_type = qualified(self.schema, self.row_type)
        fields = ", ".join(f"{quote(n)} {t}" for n, t in self._attributes())
        statements = [
            f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}",
            f"CREATE TABLE IF NOT EXISTS {self.qualified} ({', '.join([*meta, *keys])})",
            *(
                f"ALTER TABLE {self.qualified} ADD COLUMN IF NOT EXISTS {quote(n)} "
                + t.replace(" NOT NULL", "")
                for n, t in _META
            ),
            f"CREATE UNIQUE INDEX IF NOT EXISTS {quote(self.table[:40] + '__cdc_write')} "
            f'ON {self.qualified} ("_cdc_write_id", "_cdc_time")',
            "DO $cdc$ BEGIN IF to_regtype("
            + _literal(row_type)
            + f") IS NULL THEN CREATE TYPE {row_type} AS ({fields}); END IF; END $cdc$",
        ]
        if timescale is not None:
            functions = quote(timescale.schema)
            statements.append(
                f"SELECT {functions}.create_hypertable("
                + _literal(self.qualified)
                + f", {functions}.by_range('_cdc_time'::name, "
                + _literal(chunk_interval)
                + "::interval), if_not_exists => true, migrate_data => true)"
            )
        return statements

    def insert_sql(self) -> str:
        columns = [quote(k.name) for k in self.keys] + [quote(n) for n, _ in _META]
        return (
            f"INSERT INTO {self.qualified} ({', '.join(columns)}) SELECT * FROM "
            f"unnest($1::{qualified(self.schema, self.row_type)}[]) "
            # No conflict target: a table made before write ids also keeps its unique
            # (event id, time) index, and a row meeting either is one already held.
            "ON CONFLICT DO NOTHING"
        )

    def row(self, event: ChangeEvent, partition_id: str | None, write: str) -> tuple[Any, ...]:
        """The event as one history row, keyed by its ``write`` id (raises
        UnwritableValueError for a bad value)."""
        keys: list[Any] = []
        given = {**event.partition_key, **event.clustering_key}
        for key in self.keys:
            value = given.get(key.name)
            keys.append(None if value is None else key.codec.to_db(value))
        position = event.position
        return (
            *keys,
            micros_to_datetime(event.timestamp_micros),
            write,
            event.event_id,
            SNAPSHOT if event.is_snapshot else event.operation.value,
            event.scope.value if event.scope else None,
            event.static,
            self._columns(event.columns),
            list(event.deleted_columns) or None,
            {n: self._delta(n, d) for n, d in event.collections.items()} or None,
            dict(event.counters) or None,
            dict(event.counter_totals) or None,
            self._range(event),
            event.ttl_seconds,
            event.expires_at,
            event.timestamp_micros,
            partition_id,
            position.segment_id,
            position.offset,
            position.index,
            event.captured_at,
        )

    def _columns(self, columns: Mapping[str, Any]) -> dict[str, Any] | None:
        if not columns:
            return None
        converters = self.converters
        for name in columns:
            if name not in converters:
                raise self._unknown(name)
        return {name: converters[name](value) for name, value in columns.items()}

    def _type(self, name: str) -> CqlType:
        found = self.types.get(name)
        if found is None:
            raise self._unknown(name)
        return found

    def _unknown(self, name: str) -> UnwritableValueError:
        return UnwritableValueError(f"column {name} is not in {self.source.qualified_name}")

    def _delta(self, name: str, delta: CollectionDelta) -> dict[str, Any]:
        """Element changes as [key, value] pairs: a list's key is its cell's timeuuid, a
        set's the element (no value), a map's its key, a UDT's the field name."""
        cql = self._type(name)
        fields = dict(zip(cql.field_names, cql.params, strict=True)) if cql.is_udt else {}

        def key(k: Any) -> Any:
            return to_json(cql.params[0], k) if cql.name in ("set", "map") else str(k)

        def value(k: Any, v: Any) -> Any:
            if cql.name == "set":
                return None
            if cql.is_udt:
                if k not in fields:
                    raise UnwritableValueError(f"{cql.cql()} has no field {k!r}")
                return to_json(fields[k], v)
            return to_json(cql.params[-1], v)

        return {
            "overwritten": delta.overwritten,
            "elements": [[key(e.key), value(e.key, e.value)] for e in delta.elements],
            "removed": [key(k) for k in delta.removed],
        }

    def _range(self, event: ChangeEvent) -> dict[str, Any] | None:
        if event.clustering_range is None:
            return None

        def bound(b: ClusteringBound) -> dict[str, Any]:
            values = {n: to_json(self._type(n), v) for n, v in b.values.items()}
            return {"values": values, "inclusive": b.inclusive}

        return {
            "start": bound(event.clustering_range.start),
            "end": bound(event.clustering_range.end),
        }


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
