"""Dead letters in PostgreSQL: one row per entry, the whole entry as a jsonb payload.

The payload is the entry through the domain's converter (lossless for every column
value), so what comes back is exactly what was stored; the columns beside it exist to
filter and order on.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from cdc_adapters.postgres.errors import RetryPolicy, with_retries
from cdc_adapters.postgres.identifiers import qualified, quote
from cdc_adapters.postgres.pool import PoolHandle, SharedPool
from cdc_domain.dead_letters import DeadLetterEvent, DeadLetterStatus, FailureReason
from cdc_domain.serialization import make_converter

__all__ = ["PostgresDeadLetterQueue"]


class PostgresDeadLetterQueue:
    """The DeadLetterQueue port on a ``<schema>.cdc_dead_letters`` table."""

    def __init__(
        self,
        *,
        dsn: str | None = None,
        pool: SharedPool = None,
        schema: str = "public",
        retry: RetryPolicy | None = None,
    ) -> None:
        self._pool = PoolHandle(dsn, pool=pool)
        self._schema = schema
        self._table = qualified(schema, "cdc_dead_letters")
        self._converter = make_converter()
        self._retry = retry or RetryPolicy()
        self._ready = False

    async def _run(self, action: Any) -> Any:
        async def attempt() -> Any:
            pool = await self._pool.get()
            async with pool.acquire() as connection:
                if not self._ready:
                    await self._ensure(connection)
                    self._ready = True
                return await action(connection)

        return await with_retries(self._retry, attempt, "dead letter queue")

    async def _ensure(self, connection: Any) -> None:
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self._schema)}")
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} ("
            "seq bigint GENERATED ALWAYS AS IDENTITY, dlq_id text PRIMARY KEY, "
            "reason text NOT NULL, destination text, status text NOT NULL, "
            "failed_at timestamptz NOT NULL, source_table text, payload jsonb NOT NULL)"
        )

    async def write(self, entries: Sequence[DeadLetterEvent]) -> None:
        rows = [
            (
                e.dlq_id,
                e.reason.value,
                e.destination,
                e.status.value,
                e.failed_at,
                e.table,
                self._converter.unstructure(e),
            )
            for e in entries
        ]
        if not rows:
            return

        async def action(connection: Any) -> None:
            await connection.executemany(
                f"INSERT INTO {self._table} (dlq_id, reason, destination, status, failed_at, "
                "source_table, payload) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (dlq_id) DO UPDATE SET reason = excluded.reason, "
                "destination = excluded.destination, status = excluded.status, "
                "failed_at = excluded.failed_at, source_table = excluded.source_table, "
                "payload = excluded.payload",
                rows,
            )

        await self._run(action)

    async def list(
        self,
        *,
        destination: str | None = None,
        reason: FailureReason | None = None,
        include_replayed: bool = False,
        limit: int | None = None,
    ) -> builtins.list[DeadLetterEvent]:
        async def action(connection: Any) -> Any:
            return await connection.fetch(
                f"SELECT payload FROM {self._table} "
                "WHERE ($1::text IS NULL OR destination = $1) "
                "AND ($2::text IS NULL OR reason = $2) "
                "AND ($3 OR status = $4) ORDER BY seq LIMIT $5",
                destination,
                reason.value if reason else None,
                include_replayed,
                DeadLetterStatus.PENDING.value,
                limit,
            )

        rows = await self._run(action)
        return [self._converter.structure(r["payload"], DeadLetterEvent) for r in rows]

    async def take_for_replay(
        self,
        *,
        destination: str | None = None,
        reason: FailureReason | None = None,
        limit: int | None = None,
    ) -> builtins.list[DeadLetterEvent]:
        return await self.list(destination=destination, reason=reason, limit=limit)

    async def mark_replayed(self, dlq_ids: Sequence[str]) -> None:
        replayed = DeadLetterStatus.REPLAYED.value

        async def action(connection: Any) -> None:
            await connection.execute(
                f"UPDATE {self._table} SET status = $2, "
                "payload = jsonb_set(payload, '{status}', to_jsonb($2::text)) "
                "WHERE dlq_id = ANY($1::text[]) AND status <> $2",
                list(dlq_ids),
                replayed,
            )

        await self._run(action)

    async def aclose(self) -> None:
        await self._pool.aclose()
