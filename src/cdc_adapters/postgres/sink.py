"""The PostgreSQL sink: a current-state mirror of Cassandra tables (ADR 0004).

A batch is grouped per row in Python (:mod:`.collapse`), then written in one
transaction per batch together with the destination's offset row: per table, its
partition and range deletions first (recorded in the tombstone table and applied to
the stored rows in one statement), then its rows, in chunks that are built while the
server applies the previous one. The statements apply Cassandra's rules themselves
(:mod:`.statements`), so batches can arrive in any order, twice, or from several
writers at once, and converge; writers lock rows in one shared order (tables by name,
rows by key), so they wait for each other but never deadlock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from cdc_adapters.postgres.collapse import FoldPlan, RowsRejected, TableWrites, Tombstone, collapse
from cdc_adapters.postgres.ddl import (
    ensure_statements,
    ensured_sql,
    fingerprint,
    view_statements,
)
from cdc_adapters.postgres.errors import RetryPolicy, refused_table, with_retries
from cdc_adapters.postgres.identifiers import derived_name, qualified, quote
from cdc_adapters.postgres.layout import TableLayout
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.pool import SharedPool
from cdc_adapters.postgres.pooled_sink import PooledSink
from cdc_adapters.postgres.read_back import mirror_rows
from cdc_adapters.postgres.statements import (
    apply_tombstones_sql,
    insert_tombstones_sql,
    purge_deleted_sql,
    purge_expired_sql,
    upsert_sql,
)
from cdc_adapters.postgres.transactions import ddl_transaction
from cdc_domain.destinations import DestinationKind, DroppedColumns
from cdc_domain.errors import SchemaIncompatibleError
from cdc_domain.events import ChangeEvent
from cdc_domain.mirror import RowKey
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import Clock, SinkBatch
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import ChangeKind, SchemaChange

__all__ = ["PostgresSink"]

UPSERT_CHUNK = 500
"""Rows per upsert statement. Smaller statements let the next chunk be built while the
server applies one (ADR 0004); per row, 500-row statements cost the server about what
1,000-2,000-row ones do, and 10,000-row ones 27% more."""

FIRST_CHUNK = 100
"""Rows in a table's first upsert statement: the server waits while it is built, so a
short one puts it to work sooner; the later chunks are built while it works."""

PURGE_EVERY_S = 3600.0
"""The longest wait between two purges of expired rows (see ``purge_expired_after``)."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _micros(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


@attrs.frozen
class _Prepared:
    """A layout with its statements, generated once per schema version."""

    layout: TableLayout
    plan: FoldPlan
    upserts: dict[bool, str]
    tombstone_insert: str
    tombstone_apply: dict[bool, str]
    purge_deleted: dict[bool, str]
    purge_expired: dict[bool, str]
    fingerprint: str

    @classmethod
    def of(cls, layout: TableLayout) -> _Prepared:
        targets = layout.targets
        return cls(
            layout,
            FoldPlan.of(layout),
            {t.static: upsert_sql(layout, t) for t in targets},
            insert_tombstones_sql(layout),
            {t.static: apply_tombstones_sql(layout, t) for t in targets},
            {t.static: purge_deleted_sql(t) for t in targets},
            {t.static: purge_expired_sql(t) for t in targets},
            fingerprint(layout),
        )


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


async def _pipelined(connection: Any, sql: str, chunks: Iterator[list[tuple[Any, ...]]]) -> None:
    """Run ``sql`` once per chunk, in order, on one connection, building each next
    chunk while the server applies the one before (asyncpg sends a statement in the
    first step of its task, so one pass of the event loop puts it on the wire)."""
    pending: asyncio.Task[str] | None = None
    try:
        for chunk in chunks:
            if pending is not None:
                await pending
            pending = asyncio.create_task(connection.execute(sql, chunk))
            await asyncio.sleep(0)
        if pending is not None:
            await pending
    except asyncio.CancelledError:
        if pending is not None:
            pending.cancel()
        raise
    finally:
        # A chunk that could not be built ends the transaction: let the statement in
        # flight finish first, so the connection is free for the rollback.
        if pending is not None:
            if not pending.done():
                await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # seen: the error that ends the transaction is raised


class PostgresSink(PooledSink):
    """Mirrors Cassandra tables into PostgreSQL under Cassandra's last-write-wins rules.

    ``schema``/``table`` name where each Cassandra table lands (templates over
    ``{keyspace}`` and ``{table}``); ``metadata_schema`` holds ``cdc_offsets``.
    ``drop_columns`` is ``keep`` (default: a dropped column stays, no longer written,
    so no data is destroyed) or ``drop``. ``purge_expired_after`` (seconds), when set,
    makes the sink delete rows whose data all expired longer ago than that, at most
    once per that time (and at least hourly). ``dsn`` and ``pool``: see
    :class:`PooledSink`.
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
        purge_expired_after: float | None = None,
        pool_min_size: int = 1,
        pool_max_size: int = 4,
        pool_idle_s: float | None = None,
        connect_timeout: float = 10.0,
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
            pool_idle_s=pool_idle_s,
            connect_timeout=connect_timeout,
            retry=retry,
            health_timeout=health_timeout,
            clock=clock,
        )
        self._drop_columns = DroppedColumns(drop_columns)
        self._purge_after = purge_expired_after
        self._next_purge = time.monotonic() + self._purge_interval()
        self._prepared: dict[tuple[str, str], _Prepared] = {}
        self._ensured: set[tuple[str, str]] = set()
        self._latest: dict[str, _Prepared] = {}

    # ------------------------------------------------------------------ writing

    def _prepare(self, schema: TableSchema) -> _Prepared:
        key = (schema.qualified_name, schema.version)
        prepared = self._prepared.get(key)
        if prepared is None:
            layout = TableLayout.build(schema, self._naming, self._kind)
            prepared = self._prepared[key] = _Prepared.of(layout)
        self._latest[schema.qualified_name] = prepared
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

        try:
            await self._commit(batch.events, batch.checkpoint, transaction)
        except RowsRejected as exc:
            # Rows are built as they are sent: one that could not be built ended the
            # transaction. Name every such event at once, not one per attempt.
            every = {k: v for w in writes.values() for k, v in w.rejections().items()}
            self._reject(every or exc.rejected)
        await self._purge_when_due()

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
                if not await self._complete(connection, item):
                    statements = ensure_statements(item.layout)
                    await self._run_ddl(connection, item.layout, statements, unless=item)
            self._ensured.add(key)

    async def _complete(self, connection: Any, prepared: _Prepared) -> bool:
        """Whether the layout's tables, types and view are all there (its view carries
        the layout's fingerprint): a plain catalog read, no lock."""
        view = qualified(prepared.layout.schema, prepared.layout.view)
        return bool(await connection.fetchval(ensured_sql(), view, prepared.fingerprint))

    async def _run_ddl(
        self,
        connection: Any,
        layout: TableLayout,
        statements: list[str],
        unless: _Prepared | None = None,
    ) -> None:
        """Run DDL under its schema's lock; with ``unless``, only if that layout is still
        incomplete once the lock is held (another writer may have just made it)."""
        # One lock per schema: the tables of one keyspace create the schema itself
        # too, which two of them doing at once would race on.
        async with ddl_transaction(connection, f"cdc:{layout.schema}"):
            if unless is not None and await self._complete(connection, unless):
                return
            for statement in statements:
                await connection.execute(statement)

    async def _apply(self, connection: Any, prepared: _Prepared, writes: TableWrites) -> None:
        layout = prepared.layout
        if writes.tombstones:
            await self._apply_tombstones(connection, prepared, writes.tombstones.values())
        for target in layout.targets:
            if writes.has_rows(target.static):
                chunks = writes.chunks(target.static, UPSERT_CHUNK, FIRST_CHUNK)
                await _pipelined(connection, prepared.upserts[target.static], chunks)

    async def _apply_tombstones(
        self, connection: Any, prepared: _Prepared, tombstones: Iterable[Tombstone]
    ) -> None:
        """Record deletions and apply them to stored rows, all of them at once.

        The table lock makes concurrent writers of the table wait, so none of them can
        commit a row this deletion should have covered but did not see; it is taken
        before anything else of the table, in the writers' shared order.
        """
        layout = prepared.layout
        tables = ", ".join(qualified(t.schema, t.table) for t in layout.targets)
        await connection.execute(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")
        ordered = sorted(tombstones, key=lambda t: t.identity)
        await connection.execute(
            prepared.tombstone_insert, [_tombstone_tuple(layout, t) for t in ordered]
        )
        ids = [t.identity for t in ordered]
        for target in layout.targets:
            if target.static and not any(t.partition for t in ordered):
                continue
            await connection.execute(prepared.tombstone_apply[target.static], ids)

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
        for target in layout.targets:
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
        """The mirror of a table as a reader of its live view sees it now; name the
        table (``keyspace.table``, as this sink last saw it) or give its schema."""
        prepared = self._latest.get(table) if isinstance(table, str) else self._prepare(table)
        if prepared is None:
            return {}
        layout = prepared.layout
        pool = await self._pool.get()
        async with pool.acquire() as connection:
            exists = await connection.fetchval(
                "SELECT to_regclass($1)", qualified(layout.schema, layout.view)
            )
            if exists is None:
                return {}
            return await mirror_rows(connection, layout)

    # ------------------------------------------------------------------ purging

    async def purge_tombstones(self, table: str, before: dt.datetime) -> int:
        """Forget deletions older than ``before``; returns how many rows went.

        After this a change older than ``before`` arriving late could resurrect data,
        so ``before`` should lie beyond any delay the pipeline can have (Cassandra's
        own ``gc_grace_seconds`` is the natural bound: ADR 0004).
        """
        prepared = self._latest.get(table)
        if prepared is None:
            return 0
        layout = prepared.layout
        cutoff = _micros(before)
        statements = [prepared.purge_deleted[t.static] for t in layout.targets]
        statements.append(
            f'DELETE FROM {qualified(layout.schema, layout.tombstones)} WHERE "_cdc_ts" < $1'
        )
        return await self._purge(statements, cutoff)

    async def purge_expired(self, table: str, before: dt.datetime) -> int:
        """Delete the rows whose every value (and row marker) expired before ``before``
        and that hold no deletion; returns how many went. Until then the live view
        hides them; after, a write older than theirs arriving late could show again
        what they hid, as in Cassandra once it purged them (ADR 0004)."""
        prepared = self._latest.get(table)
        if prepared is None:
            return 0
        statements = [prepared.purge_expired[t.static] for t in prepared.layout.targets]
        return await self._purge(statements, _micros(before))

    async def _purge(self, statements: list[str], cutoff: int) -> int:
        async def attempt() -> int:
            pool = await self._pool.get()
            removed = 0
            async with pool.acquire() as connection, connection.transaction():
                for statement in statements:
                    status = await connection.execute(statement, cutoff)
                    removed += int(status.split()[-1])
            return removed

        return await with_retries(self._retry, attempt, f"{self._name} purge")

    def _purge_interval(self) -> float:
        return min(self._purge_after, PURGE_EVERY_S) if self._purge_after else PURGE_EVERY_S

    async def _purge_when_due(self) -> None:
        """With ``purge_expired_after`` set, purge every table this sink writes once the
        interval has passed (after a write, so an idle sink costs nothing)."""
        if self._purge_after is None or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self._purge_interval()
        now = self._clock.now() if self._clock is not None else dt.datetime.now(dt.UTC)
        before = now - dt.timedelta(seconds=self._purge_after)
        for table in sorted(self._latest):
            await self.purge_expired(table, before)


def _side_names(column: str) -> list[str]:
    return [derived_name(p, column) for p in ("_cdc_ts_", "_cdc_exp_", "_cdc_tie_", "_cdc_el_")]


def _table_names(layout: TableLayout) -> list[str]:
    return [
        qualified(layout.schema, layout.table),
        qualified(layout.schema, derived_name("", layout.table, "__static")),
    ]
