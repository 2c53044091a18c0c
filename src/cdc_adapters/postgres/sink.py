"""The PostgreSQL sink: a current-state mirror of Cassandra tables (ADR 0004).

A batch is folded per row in Python (:mod:`.collapse`), then written in one
transaction per batch together with the destination's offset row: deletions first
(recorded in the tombstone table and applied to stored rows), then one upsert per
table of every changed row, then element changes of non-frozen collections. The
statements apply Cassandra's rules themselves (:mod:`.statements`), so batches can
arrive in any order, twice, or from several writers at once, and converge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from cdc_adapters.postgres.collapse import (
    FoldPlan,
    RowWrite,
    TableWrites,
    Tombstone,
    collapse,
    delta_fields,
)
from cdc_adapters.postgres.ddl import ensure_statements, lock_statement, view_statements
from cdc_adapters.postgres.errors import RetryPolicy, refused_table, with_retries
from cdc_adapters.postgres.identifiers import derived_name, qualified, quote
from cdc_adapters.postgres.layout import RowTarget, TableLayout
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.pool import SharedPool
from cdc_adapters.postgres.pooled_sink import PooledSink
from cdc_adapters.postgres.read_back import mirror_rows
from cdc_adapters.postgres.statements import (
    delta_sql,
    insert_tombstones_sql,
    refresh_deleted_sql,
    tombstone_sql,
    upsert_sql,
)
from cdc_domain.destinations import DestinationKind, DroppedColumns
from cdc_domain.errors import SchemaIncompatibleError
from cdc_domain.events import ChangeEvent
from cdc_domain.mirror import RowKey
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import Clock, SinkBatch
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import ChangeKind, SchemaChange

__all__ = ["PostgresSink"]

UPSERT_CHUNK = 2000
"""Rows per upsert statement: 10,000-row statements ran 27% slower per row than
1,000-2,000-row ones on PostgreSQL 15 here (ADR 0004)."""


@attrs.define
class _Prepared:
    """A layout with its statements, generated once per schema version."""

    layout: TableLayout
    plan: FoldPlan
    upserts: dict[bool, str]
    deltas: dict[bool, tuple[str, str]]
    tombstone_insert: str
    tombstone_updates: dict[tuple[bool, int, bool, int, bool], str] = attrs.field(factory=dict)

    @classmethod
    def of(cls, layout: TableLayout) -> _Prepared:
        upserts, deltas = {}, {}
        for target in _targets(layout):
            upserts[target.static] = upsert_sql(layout, target)
            if target.collections:
                deltas[target.static] = (delta_sql(target), refresh_deleted_sql(target))
        return cls(layout, FoldPlan.of(layout), upserts, deltas, insert_tombstones_sql(layout))

    def tombstone_update(self, target: RowTarget, tombstone: Tombstone) -> str:
        shape = (
            target.static,
            len(tombstone.start),
            tombstone.start_inclusive,
            len(tombstone.end),
            tombstone.end_inclusive,
        )
        sql = self.tombstone_updates.get(shape)
        if sql is None:
            sql = self.tombstone_updates[shape] = tombstone_sql(
                self.layout, target, shape[1:3], shape[3:5]
            )
        return sql


def _targets(layout: TableLayout) -> list[RowTarget]:
    return [layout.main] if layout.static is None else [layout.main, layout.static]


def _delta_tuple(target: RowTarget, row: RowWrite) -> tuple[Any, ...]:
    values: list[Any] = list(row.key)
    for column in target.collections:
        writes = row.deltas.get(column.name)
        if writes is None:
            values += [None, None, None, None]
        else:
            added, removed, keys, newest = delta_fields(column, writes)
            values += [added, removed, keys, newest]
    return tuple(values)


def _tombstone_tuple(layout: TableLayout, tombstone: Tombstone) -> tuple[Any, ...]:
    width = len(layout.clustering)
    start = list(tombstone.start) + [None] * (width - len(tombstone.start))
    end = list(tombstone.end) + [None] * (width - len(tombstone.end))
    return (
        *tombstone.partition_key,
        tombstone.identity,
        tombstone.ts,
        tombstone.partition,
        len(tombstone.start),
        tombstone.start_inclusive,
        len(tombstone.end),
        tombstone.end_inclusive,
        *start,
        *end,
    )


class PostgresSink(PooledSink):
    """Mirrors Cassandra tables into PostgreSQL with column-level last-write-wins.

    ``schema``/``table`` name where each Cassandra table lands (templates over
    ``{keyspace}`` and ``{table}``); ``metadata_schema`` holds ``cdc_offsets``.
    ``drop_columns`` is ``keep`` (default: a dropped column stays, no longer written,
    so no data is destroyed) or ``drop``. ``dsn`` and ``pool``: see :class:`PooledSink`.
    """

    def __init__(
        self,
        *,
        name: str,
        dsn: str | None = None,
        pool: SharedPool = None,
        schema: str = "{keyspace}",
        table: str = "{table}",
        metadata_schema: str = "public",
        drop_columns: DroppedColumns = DroppedColumns.KEEP,
        pool_min_size: int = 1,
        pool_max_size: int = 4,
        retry: RetryPolicy | None = None,
        health_timeout: float = 5.0,
        clock: Clock | None = None,
        kind: DestinationKind = DestinationKind.POSTGRES,
    ) -> None:
        super().__init__(
            name=name,
            kind=kind,
            naming=Naming(schema, table, metadata_schema),
            dsn=dsn,
            pool=pool,
            pool_min_size=pool_min_size,
            pool_max_size=pool_max_size,
            retry=retry,
            health_timeout=health_timeout,
            clock=clock,
        )
        self._drop_columns = DroppedColumns(drop_columns)
        self._prepared: dict[tuple[str, str], _Prepared] = {}
        self._ensured: set[tuple[str, str]] = set()
        self._latest: dict[str, TableLayout] = {}

    # ------------------------------------------------------------------ writing

    def _prepare(self, schema: TableSchema) -> _Prepared:
        key = (schema.qualified_name, schema.version)
        prepared = self._prepared.get(key)
        if prepared is None:
            layout = TableLayout.build(schema, self._naming, self._kind)
            prepared = self._prepared[key] = _Prepared.of(layout)
        self._latest[schema.qualified_name] = prepared.layout
        return prepared

    def _prepare_batch(self, batch: SinkBatch) -> dict[str, _Prepared]:
        prepared: dict[str, _Prepared] = {}
        for keyspace, name in dict.fromkeys([(e.keyspace, e.table) for e in batch.events]):
            table = f"{keyspace}.{name}"
            schema = batch.schemas.get(table)
            if schema is None:
                raise SchemaIncompatibleError(
                    f"{self._name}: no schema for {table} in the batch", table=table
                )
            prepared[table] = self._prepare(schema)
        return prepared

    async def write(self, batch: SinkBatch) -> None:
        """Write the batch and its checkpoint in one transaction (see the module doc).

        Raises TransientError when the database stays unreachable through the retries,
        EventsRejectedError naming the poison events (nothing written), or
        SchemaIncompatibleError for a table this destination cannot hold.
        """
        prepared = self._prepare_batch(batch)
        plans = {name: p.plan for name, p in prepared.items()}
        writes, rejected = collapse(batch.events, plans)
        self._reject(rejected)

        async def transaction(
            events: Sequence[ChangeEvent], checkpoint: Checkpoint | None, trial: bool
        ) -> None:
            subset = writes if events is batch.events else collapse(events, plans)[0]
            await self._transaction(prepared, subset, checkpoint, trial)

        await self._commit(batch.events, batch.checkpoint, transaction)

    async def _transaction(
        self,
        prepared: Mapping[str, _Prepared],
        writes: Mapping[str, TableWrites],
        checkpoint: Checkpoint | None,
        trial: bool,
    ) -> None:
        async def ensure(connection: Any) -> None:
            await self._ensure(connection, prepared.values())

        async def apply(connection: Any) -> None:
            for table in sorted(writes):
                with refused_table(self._name, table):
                    await self._apply(connection, prepared[table], writes[table])

        await self._with_offset(ensure, apply, checkpoint, trial)

    async def _ensure(self, connection: Any, prepared: Iterable[_Prepared]) -> None:
        await self._ensure_offsets(connection)
        for item in prepared:
            source = item.layout.source
            key = (source.qualified_name, source.version)
            if key in self._ensured:
                continue
            with refused_table(self._name, source.qualified_name):
                await self._run_ddl(connection, item.layout, ensure_statements(item.layout))
            self._ensured.add(key)

    async def _run_ddl(self, connection: Any, layout: TableLayout, statements: list[str]) -> None:
        async with connection.transaction():
            await connection.execute(lock_statement(), f"cdc:{layout.schema}.{layout.table}")
            for statement in statements:
                await connection.execute(statement)

    async def _apply(self, connection: Any, prepared: _Prepared, writes: TableWrites) -> None:
        layout = prepared.layout
        if writes.tombstones:
            await self._apply_tombstones(connection, prepared, writes.tombstones.values())
        for target in _targets(layout):
            rows = writes.sorted_rows(target.static)
            if not rows:
                continue
            # A folded row already holds the row type's fields in order (RowWrite.slots).
            # Large batches go in chunks: measured faster than one statement (ADR 0004),
            # and the rows keep their global order, so locks are taken in the same order.
            for start in range(0, len(rows), UPSERT_CHUNK):
                chunk = rows[start : start + UPSERT_CHUNK]
                await connection.execute(
                    prepared.upserts[target.static], [tuple(r.slots) for r in chunk]
                )
            with_deltas = [_delta_tuple(target, r) for r in rows if r.deltas]
            if with_deltas:
                update, refresh = prepared.deltas[target.static]
                await connection.execute(update, with_deltas)
                await connection.execute(refresh, with_deltas)

    async def _apply_tombstones(
        self, connection: Any, prepared: _Prepared, tombstones: Iterable[Tombstone]
    ) -> None:
        """Record deletions and apply them to stored rows.

        The table lock makes concurrent writers of the same table wait, so none of them
        can commit a row this deletion should have covered but did not see.
        """
        layout = prepared.layout
        tables = ", ".join(qualified(t.schema, t.table) for t in _targets(layout))
        await connection.execute(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")
        ordered = sorted(tombstones, key=lambda t: t.identity)
        await connection.execute(
            prepared.tombstone_insert, [_tombstone_tuple(layout, t) for t in ordered]
        )
        for tombstone in ordered:
            for target in _targets(layout):
                if target.static and not tombstone.partition:
                    continue
                await connection.execute(
                    prepared.tombstone_update(target, tombstone),
                    tombstone.ts,
                    *tombstone.partition_key,
                    *tombstone.start,
                    *tombstone.end,
                )

    # ------------------------------------------------------------------ schema changes

    async def apply_schema_change(self, change: SchemaChange) -> None:
        """Follow a Cassandra schema change; every step is idempotent (see ADR 0004)."""
        change.require_compatible(self._kind, self._name)
        if change.kind is ChangeKind.DROP_TABLE:
            # Data is never destroyed by default: the table stays, nothing writes to it.
            self._latest.pop(change.qualified_table, None)
            return
        layout = self._prepare(change.schema).layout
        statements: list[str] = []
        if change.kind is ChangeKind.DROP_COLUMN and self._drop_columns is DroppedColumns.DROP:
            statements = self._drop_column(layout, change)
        elif change.kind is ChangeKind.ALTER_TYPE:
            statements = self._alter_type(layout, change)
        statements = [*view_statements(layout)[:1], *statements, *ensure_statements(layout)]

        async def attempt() -> None:
            pool = await self._pool.get()
            async with pool.acquire() as connection:
                await self._run_ddl(connection, layout, statements)

        try:
            await with_retries(self._retry, attempt, f"{self._name} schema change")
        except Exception as exc:
            if hasattr(exc, "sqlstate"):
                raise SchemaIncompatibleError(
                    f"{self._name} cannot apply {change.describe()}: {exc}",
                    table=change.qualified_table,
                    details={"change": change.describe(), "error": str(exc)},
                ) from exc
            raise
        self._ensured.add((change.schema.qualified_name, change.schema.version))

    def _drop_column(self, layout: TableLayout, change: SchemaChange) -> list[str]:
        assert change.column is not None
        names = [change.column, *_side_names(change.column)]
        drops = ", ".join(f"DROP COLUMN IF EXISTS {quote(n)}" for n in names)
        return [f"ALTER TABLE IF EXISTS {table} {drops}" for table in _table_names(layout)]

    def _alter_type(self, layout: TableLayout, change: SchemaChange) -> list[str]:
        assert change.column is not None
        for target in _targets(layout):
            column = target.value(change.column)
            if column is not None:
                table = qualified(target.schema, target.table)
                name = quote(column.name)
                return [
                    f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {column.sql_type} "
                    f"USING {name}::{column.sql_type}"
                ]
        return []

    # ------------------------------------------------------------------ reading

    async def rows(self, table: str | TableSchema) -> dict[RowKey, dict[str, Any]]:
        """The mirror of a table as a reader of its live view sees it; name the table
        (``keyspace.table``, as this sink last saw it) or give its schema."""
        layout = self._latest.get(table) if isinstance(table, str) else self._prepare(table).layout
        if layout is None:
            return {}
        pool = await self._pool.get()
        async with pool.acquire() as connection:
            exists = await connection.fetchval(
                "SELECT to_regclass($1)", qualified(layout.schema, layout.view)
            )
            if exists is None:
                return {}
            return await mirror_rows(connection, layout)

    async def purge_tombstones(self, table: str, before: dt.datetime) -> int:
        """Forget deletions older than ``before``; returns how many rows went.

        After this a change older than ``before`` arriving late could resurrect data,
        so ``before`` should lie beyond any delay the pipeline can have (Cassandra's
        own ``gc_grace_seconds`` is the natural bound: ADR 0004).
        """
        layout = self._latest.get(table)
        if layout is None:
            return 0
        cutoff = int((before - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * 1e6)
        pool = await self._pool.get()
        removed = 0
        async with pool.acquire() as connection, connection.transaction():
            for target in _targets(layout):
                status = await connection.execute(
                    f"DELETE FROM {qualified(target.schema, target.table)} "
                    'WHERE "_cdc_deleted" AND "_cdc_deleted_at" < $1',
                    cutoff,
                )
                removed += int(status.split()[-1])
            status = await connection.execute(
                f'DELETE FROM {qualified(layout.schema, layout.tombstones)} WHERE "_cdc_ts" < $1',
                cutoff,
            )
            removed += int(status.split()[-1])
        return removed


def _side_names(column: str) -> list[str]:
    return [derived_name(p, column) for p in ("_cdc_ts_", "_cdc_dts_", "_cdc_keys_")]


def _table_names(layout: TableLayout) -> list[str]:
    return [
        qualified(layout.schema, layout.table),
        qualified(layout.schema, derived_name("", layout.table, "__static")),
    ]
