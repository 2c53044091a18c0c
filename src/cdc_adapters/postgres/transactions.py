"""A batch and its offset in one transaction: how the PostgreSQL and TimescaleDB sinks
make a destination and its position agree after any crash."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from cdc_adapters.postgres.errors import RetryPolicy, with_retries
from cdc_adapters.postgres.offsets import commit_offset
from cdc_adapters.postgres.pool import PoolHandle
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import Clock

__all__ = ["ddl_transaction", "write_with_offset"]

Step = Callable[[Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def ddl_transaction(connection: Any, key: str) -> AsyncIterator[None]:
    """A transaction for DDL in ``key``'s name (``cdc:<schema>``), one writer at a
    time. The transaction begins only once the lock is held: one begun before would
    resolve names against the catalog as it was before the holder's DDL, so its
    ``CREATE ... IF NOT EXISTS`` would fail on what the holder had just created.

    The lock is released here whatever happens, also after a cancelled wait for it
    (which the server may have granted all the same; unlocking a lock not held only
    warns): the pool does not reset sessions (:mod:`.pool`). A connection that cannot
    release it is terminated, which does."""
    try:
        await connection.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
        async with connection.transaction():
            yield
    finally:
        try:
            await connection.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
        except BaseException:
            connection.terminate()
            raise


class _Rollback(Exception):
    """Ends a trial write (used to find poison events) without committing it."""


async def write_with_offset(
    pool: PoolHandle,
    *,
    retry: RetryPolicy,
    what: str,
    ensure: Step,
    apply: Step,
    metadata_schema: str,
    destination: str,
    checkpoint: Checkpoint | None,
    clock: Clock | None,
    trial: bool = False,
) -> None:
    """``ensure`` (DDL, outside the transaction), then ``apply`` and the checkpoint
    together; a ``trial`` write is rolled back, to learn only whether it would succeed."""

    async def attempt() -> None:
        connections = await pool.get()
        async with connections.acquire() as connection:
            await ensure(connection)
            try:
                async with connection.transaction():
                    await apply(connection)
                    if checkpoint is not None:
                        await commit_offset(
                            connection, metadata_schema, destination, checkpoint, clock
                        )
                    if trial:
                        raise _Rollback
            except _Rollback:
                return

    await with_retries(retry, attempt, what)
