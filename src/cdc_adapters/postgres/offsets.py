"""The ``cdc_offsets`` table: positions per (destination, source partition).

The sinks upsert their row inside the transaction that writes the batch, so after any
crash the data and the position agree; :class:`PostgresOffsetStore` reads (and, for
destinations that cannot do that, writes) the same table.
"""

from __future__ import annotations

import builtins
from typing import Any

from cdc_adapters.postgres.errors import RetryPolicy, with_retries
from cdc_adapters.postgres.identifiers import qualified, quote
from cdc_adapters.postgres.pool import PoolHandle, SharedPool
from cdc_domain.events import SourcePosition
from cdc_domain.offsets import Checkpoint, OffsetRecord
from cdc_domain.ports import Clock

__all__ = ["PostgresOffsetStore", "commit_offset", "ensure_offsets_table"]

_TABLE = "cdc_offsets"


def _offsets(schema: str) -> str:
    return qualified(schema, _TABLE)


async def ensure_offsets_table(connection: Any, schema: str) -> None:
    await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    await connection.execute(
        f"CREATE TABLE IF NOT EXISTS {_offsets(schema)} ("
        "destination text NOT NULL, partition_id text NOT NULL, "
        "segment_id bigint NOT NULL, position bigint NOT NULL, event_index integer NOT NULL, "
        "snapshot text, events_processed bigint NOT NULL, "
        "updated_at timestamptz NOT NULL, PRIMARY KEY (destination, partition_id))"
    )


async def commit_offset(
    connection: Any, schema: str, destination: str, checkpoint: Checkpoint, clock: Clock | None
) -> None:
    """Upsert the destination's position, adding the batch's events to its total."""
    position = checkpoint.position
    await connection.execute(
        f"INSERT INTO {_offsets(schema)} AS o (destination, partition_id, segment_id, position, "
        "event_index, snapshot, events_processed, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now())) "
        "ON CONFLICT (destination, partition_id) DO UPDATE SET "
        "segment_id = excluded.segment_id, position = excluded.position, "
        "event_index = excluded.event_index, snapshot = excluded.snapshot, "
        "events_processed = o.events_processed + excluded.events_processed, "
        "updated_at = excluded.updated_at",
        destination,
        checkpoint.partition_id,
        position.segment_id,
        position.offset,
        position.index,
        position.snapshot,
        checkpoint.events,
        clock.now() if clock is not None else None,
    )


def _record(row: Any) -> OffsetRecord:
    return OffsetRecord(
        destination=row["destination"],
        partition_id=row["partition_id"],
        position=SourcePosition(
            row["segment_id"], row["position"], row["event_index"], row["snapshot"]
        ),
        events_processed=row["events_processed"],
        updated_at=row["updated_at"],
    )


class PostgresOffsetStore:
    """Offsets in PostgreSQL (or TimescaleDB), in ``<schema>.cdc_offsets``."""

    def __init__(
        self,
        *,
        dsn: str | None = None,
        pool: SharedPool = None,
        schema: str = "public",
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._owns_pool = not isinstance(pool, PoolHandle)
        self._pool = pool if isinstance(pool, PoolHandle) else PoolHandle(dsn, pool=pool)
        self._schema = schema
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._ready = False

    async def _connection_do(self, action: Any) -> Any:
        async def attempt() -> Any:
            pool = await self._pool.get()
            async with pool.acquire() as connection:
                if not self._ready:
                    await ensure_offsets_table(connection, self._schema)
                    self._ready = True
                return await action(connection)

        return await with_retries(self._retry, attempt, "offset store")

    async def load(self, destination: str, partition_id: str) -> OffsetRecord | None:
        async def action(connection: Any) -> Any:
            return await connection.fetchrow(
                f"SELECT * FROM {_offsets(self._schema)} "
                "WHERE destination = $1 AND partition_id = $2",
                destination,
                partition_id,
            )

        row = await self._connection_do(action)
        return _record(row) if row is not None else None

    async def commit(self, destination: str, checkpoint: Checkpoint) -> None:
        async def action(connection: Any) -> None:
            await commit_offset(connection, self._schema, destination, checkpoint, self._clock)

        await self._connection_do(action)

    async def list(self) -> builtins.list[OffsetRecord]:
        async def action(connection: Any) -> Any:
            return await connection.fetch(
                f"SELECT * FROM {_offsets(self._schema)} ORDER BY destination, partition_id"
            )

        return [_record(row) for row in await self._connection_do(action)]

    async def aclose(self) -> None:
        if self._owns_pool:
            await self._pool.aclose()
