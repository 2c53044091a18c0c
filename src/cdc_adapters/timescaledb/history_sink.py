"""The TimescaleDB history sink: one row per write, in a hypertable per table (ADR 0005).

Each change event is appended to the hypertable of its Cassandra table, partitioned on
the change's write time. Its row is keyed by the event's write id
(:func:`~cdc_domain.identity.write_id`), so the copies of one write that the agents of
several nodes deliver, in any order and at once, are one row: the unique (write id,
time) index skips every copy after the first, and the sink counts those it skipped
(:class:`~cdc_domain.ports.CopiesReporting`). The batch and the destination's offset row
commit in one transaction.

The sink checks for the ``timescaledb`` extension before its first write and refuses
to go on without it, unless ``fallback_to_plain_tables`` allows ordinary tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from cdc_adapters.postgres.ddl import lock_statement
from cdc_adapters.postgres.errors import RetryPolicy, refused_table, with_retries
from cdc_adapters.postgres.naming import Naming
from cdc_adapters.postgres.pool import SharedPool
from cdc_adapters.postgres.pooled_sink import PooledSink
from cdc_adapters.postgres.values import UnwritableValueError
from cdc_adapters.timescaledb.extension import ExtensionCheck, TimescaleInfo
from cdc_adapters.timescaledb.history import HistoryLayout
from cdc_domain.destinations import DestinationKind
from cdc_domain.errors import SchemaIncompatibleError
from cdc_domain.events import ChangeEvent
from cdc_domain.identity import write_id
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import Clock, SinkBatch
from cdc_domain.schema import TableSchema
from cdc_domain.schema_changes import ChangeKind, SchemaChange

__all__ = ["TimescaleHistorySink"]


_KIND = DestinationKind.TIMESCALEDB


class TimescaleHistorySink(PooledSink):
    """The history of every change in TimescaleDB.

    The pool defaults to one connection (``pool_max_size=1``): the WASM TimescaleDB
    used in development serves one connection at a time, and health checks go
    through the same pool so they never wait for a second connection;
    sinks of several agents on it take turns with ``pool_min_size=0`` and a short
    ``pool_idle_s``, and wait for their turn within ``connect_timeout``.
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
        fallback_to_plain_tables: bool = False,
        chunk_interval: str = "7 days",
        pool_min_size: int = 1,
        pool_max_size: int = 1,
        pool_idle_s: float | None = None,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        health_timeout: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            name=name,
            kind=_KIND,
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
        self._extension = ExtensionCheck(
            name, self._pool, self._retry, fallback=fallback_to_plain_tables
        )
        self._chunk_interval = chunk_interval
        self._layouts: dict[tuple[str, str], HistoryLayout] = {}
        self._latest: dict[str, HistoryLayout] = {}
        self._ensured: set[tuple[str, str]] = set()
        self._absorbed: Counter[str] = Counter()

    async def check_ready(self) -> None:
        """Verify TimescaleDB at start-up (see :meth:`ExtensionCheck.info`); the sink
        also checks before its first write, when start-up could not reach it."""
        await self._extension.info()

    async def timescale(self) -> TimescaleInfo | None:
        """The extension the history is written with (its schema qualifies
        ``time_bucket``), None when it went to plain tables."""
        return await self._extension.info()

    # ------------------------------------------------------------------ writing

    def _layout(self, schema: TableSchema) -> HistoryLayout:
        key = (schema.qualified_name, schema.version)
        layout = self._layouts.get(key)
        if layout is None:
            try:
                layout = self._layouts[key] = HistoryLayout.build(schema, self._naming)
            except UnwritableValueError as exc:
                raise SchemaIncompatibleError(
                    f"{self._name}: {exc}", table=schema.qualified_name
                ) from exc
        self._latest[schema.qualified_name] = layout
        return layout

    async def write(self, batch: SinkBatch) -> None:
        """Append the batch's events and move the offset, in one transaction."""
        timescale = await self._extension.info()
        layouts: dict[str, HistoryLayout] = {}
        for table in dict.fromkeys(e.qualified_table for e in batch.events):
            schema = batch.schemas.get(table)
            if schema is None:
                raise SchemaIncompatibleError(f"{self._name}: no schema for {table}", table=table)
            layouts[table] = self._layout(schema)
        partition = batch.checkpoint.partition_id if batch.checkpoint else None
        rows, rejected = self._rows(batch.events, layouts, partition)
        self._reject(rejected)

        async def transaction(
            events: Sequence[ChangeEvent], checkpoint: Checkpoint | None, trial: bool
        ) -> None:
            subset = rows if events is batch.events else self._rows(events, layouts, partition)[0]
            await self._transaction(timescale, layouts, subset, checkpoint, trial)

        await self._commit(batch.events, batch.checkpoint, transaction)

    @staticmethod
    def _rows(
        events: Sequence[ChangeEvent],
        layouts: Mapping[str, HistoryLayout],
        partition: str | None,
    ) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, str]]:
        """Rows per table, in write id order: writers inserting copies of the same
        writes then take the index's locks in one order, and do not deadlock on them."""
        keyed: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
        rejected: dict[str, str] = {}
        for event in events:
            write = write_id(event)
            try:
                row = layouts[event.qualified_table].row(event, partition, write)
            except UnwritableValueError as exc:
                rejected[event.event_id] = f"{event.qualified_table}: {exc}"
            else:
                keyed.setdefault(event.qualified_table, []).append((write, row))
        rows = {
            table: [row for _, row in sorted(pairs, key=_first)] for table, pairs in keyed.items()
        }
        return rows, rejected

    async def _transaction(
        self,
        timescale: TimescaleInfo | None,
        layouts: Mapping[str, HistoryLayout],
        rows: Mapping[str, list[tuple[Any, ...]]],
        checkpoint: Checkpoint | None,
        trial: bool = False,
    ) -> None:
        absorbed: Counter[str] = Counter()

        async def ensure(connection: Any) -> None:
            await self._ensure(connection, timescale, list(layouts.values()))

        async def apply(connection: Any) -> None:
            absorbed.clear()  # a retried attempt counts afresh
            for table in sorted(rows):
                with refused_table(self._name, table):
                    status = await connection.execute(layouts[table].insert_sql(), rows[table])
                absorbed[table] = len(rows[table]) - _inserted(status)

        await self._with_offset(ensure, apply, checkpoint, trial)
        if not trial:
            self._absorbed.update(absorbed)

    def take_absorbed_copies(self) -> dict[str, int]:
        """Rows not inserted because their write was already held, per ``keyspace.table``,
        by the batches committed since the previous call."""
        taken = {table: count for table, count in self._absorbed.items() if count}
        self._absorbed.clear()
        return taken

    async def _ensure(
        self, connection: Any, timescale: TimescaleInfo | None, layouts: Sequence[HistoryLayout]
    ) -> None:
        await self._ensure_offsets(connection)
        for layout in layouts:
            key = (layout.source.qualified_name, layout.source.version)
            if key in self._ensured:
                continue
            async with connection.transaction():
                await connection.execute(lock_statement(), f"cdc:{layout.qualified}")
                for statement in layout.ddl(timescale, self._chunk_interval):
                    await connection.execute(statement)
            self._ensured.add(key)

    # ------------------------------------------------------------------ schema changes

    async def apply_schema_change(self, change: SchemaChange) -> None:
        """History rows keep changed columns in jsonb, so only a new table needs DDL;
        every other compatible change is taken as it comes (and DROP_TABLE keeps the
        history, which is the point of having one)."""
        timescale = await self._extension.info()
        change.require_compatible(_KIND, self._name)
        if change.kind is ChangeKind.DROP_TABLE:
            return
        layout = self._layout(change.schema)

        async def attempt() -> None:
            pool = await self._pool.get()
            async with pool.acquire() as connection:
                await self._ensure(connection, timescale, [layout])

        await with_retries(self._retry, attempt, f"{self._name} schema change")

    # ------------------------------------------------------------------ reading

    async def event_ids(self, table: str | TableSchema) -> list[str]:
        """Ids of the events held for a table (named ``keyspace.table`` as this sink
        last saw it, or given by its schema), in source order: one per write, of the
        copy that was recorded first."""
        return await self._column(
            table,
            "_cdc_event_id",
            '"_cdc_partition_id", "_cdc_segment", "_cdc_offset", "_cdc_index"',
        )

    async def write_ids(self, table: str | TableSchema) -> list[str]:
        """Write ids of the rows held for a table (named as for :meth:`event_ids`),
        sorted."""
        return await self._column(table, "_cdc_write_id", '"_cdc_write_id"')

    async def _column(self, table: str | TableSchema, column: str, order: str) -> list[str]:
        layout = self._latest.get(table) if isinstance(table, str) else self._layout(table)
        if layout is None:
            return []
        pool = await self._pool.get()
        async with pool.acquire() as connection:
            if await connection.fetchval("SELECT to_regclass($1)", layout.qualified) is None:
                return []
            rows = await connection.fetch(
                f'SELECT "{column}" FROM {layout.qualified} ORDER BY {order}'
            )
        return [r[column] for r in rows]

    async def is_hypertable(self, table: str) -> bool:
        layout = self._latest.get(table)
        if layout is None:
            return False
        pool = await self._pool.get()
        async with pool.acquire() as connection:
            found = await connection.fetchval(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = $1 AND hypertable_name = $2",
                layout.schema,
                layout.table,
            )
        return bool(found)


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def _inserted(status: str) -> int:
    """The row count of an ``INSERT 0 <rows>`` command status."""
    return int(status.rsplit(" ", 1)[-1])
