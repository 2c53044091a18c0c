"""The TimescaleDB mirror sink: the PostgreSQL mirror on a TimescaleDB database (ADR 0005).

It is :class:`PostgresSink` (kind TIMESCALEDB, plain tables: a current-state table has
no time dimension to partition on) plus the start-up check for the ``timescaledb``
extension, so a destination configured as TimescaleDB refuses a database without it
unless ``fallback_to_plain_tables`` says that is fine.
"""

from __future__ import annotations

from cdc_adapters.postgres.errors import RetryPolicy
from cdc_adapters.postgres.pool import SharedPool
from cdc_adapters.postgres.sink import PostgresSink
from cdc_adapters.timescaledb.extension import ExtensionCheck
from cdc_domain.destinations import DestinationKind, DroppedColumns
from cdc_domain.ports import Clock, SinkBatch
from cdc_domain.schema_changes import SchemaChange

__all__ = ["TimescaleMirrorSink"]


class TimescaleMirrorSink(PostgresSink):
    """A current-state mirror in TimescaleDB, written as :class:`PostgresSink` writes.

    The pool defaults to one connection (``pool_max_size=1``): the WASM TimescaleDB
    used in development serves one connection at a time;
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
        drop_columns: DroppedColumns = DroppedColumns.KEEP,
        purge_expired_after: float | None = None,
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
            dsn=dsn,
            pool=pool,
            schema=schema,
            table=table,
            metadata_schema=metadata_schema,
            drop_columns=drop_columns,
            purge_expired_after=purge_expired_after,
            pool_min_size=pool_min_size,
            pool_max_size=pool_max_size,
            pool_idle_s=pool_idle_s,
            connect_timeout=connect_timeout,
            retry=retry,
            health_timeout=health_timeout,
            clock=clock,
            kind=DestinationKind.TIMESCALEDB,
        )
        self._extension = ExtensionCheck(
            name, self._pool, self._retry, fallback=fallback_to_plain_tables
        )

    async def check_ready(self) -> None:
        """Verify TimescaleDB at start-up (see :meth:`ExtensionCheck.info`); the sink
        also checks before its first write, when start-up could not reach it."""
        await self._extension.info()

    async def write(self, batch: SinkBatch) -> None:
        await self.check_ready()
        await super().write(batch)

    async def apply_schema_change(self, change: SchemaChange) -> None:
        await self.check_ready()
        await super().apply_schema_change(change)
