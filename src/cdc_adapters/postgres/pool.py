"""Connection pools: created on first use, with the codecs this adapter relies on.

jsonb travels in binary form (it must: composite row types containing jsonb can only
be sent in binary) and ``interval`` as (months, days, microseconds), which keeps a CQL
duration's months and days apart instead of folding them into a ``timedelta``.

Every statement is prepared once per connection, however long: the mirror's upsert
is larger than asyncpg's default limit for its statement cache (15 KiB), past which it
would be parsed, described and its types looked up again for every batch (3 ms each,
measured: ADR 0004).

A connection goes back to the pool without asyncpg's default reset (``RESET ALL``,
``UNLISTEN *``, ``CLOSE ALL``, ``pg_advisory_unlock_all()``): that is one more round
trip per batch (1-3 ms per release on this machine, against 20-50 ms for a batch of
1,000), and this adapter leaves nothing for it to undo. It sets no session state,
listens to nothing, keeps no cursors, and its one session lock is released by its
holder (:func:`~cdc_adapters.postgres.transactions.ddl_transaction`); asyncpg still
rolls back a transaction left open.

A pool given ``idle_s`` keeps no connection it does not use: one idle that long is
closed. A server that serves one connection at a time (the development TimescaleDB:
it queues every other connection until the open one closes) needs that for several
agents to take turns; their connects wait in its queue for up to ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, TypeAlias

import asyncpg
import orjson

from cdc_domain.health import HealthReport, HealthStatus

__all__ = ["PoolHandle", "SharedPool", "create_pool"]

_ASYNCPG_IDLE_S = 300.0


def _encode_jsonb(value: Any) -> bytes:
    """orjson where it can (every history row and collection carries a document or two,
    and it encodes them about ten times faster than ``json``); ``json`` for what it
    refuses, integers past 64 bits (``varint``)."""
    try:
        return b"\x01" + orjson.dumps(value)
    except orjson.JSONEncodeError:
        return b"\x01" + json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


def _identity(value: Any) -> Any:
    return value


async def _init_connection(connection: Any) -> None:
    await connection.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",
    )
    await connection.set_type_codec(
        "interval", schema="pg_catalog", encoder=_identity, decoder=_identity, format="tuple"
    )


async def _keep_session(connection: Any) -> None:
    """The pool's reset: nothing (see the module doc)."""


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    connect_timeout: float = 10.0,
    command_timeout: float | None = 120.0,
    idle_s: float | None = None,
) -> asyncpg.Pool:
    """An asyncpg pool whose connections carry this adapter's codecs.

    For the WASM TimescaleDB server (a single backend that serves one connection at a
    time) use ``max_size=1``, and ``min_size=0`` with ``idle_s`` when several clients
    share it. ``idle_s`` None keeps asyncpg's own rule (connections above ``min_size``
    idle for five minutes are closed).
    """
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_inactive_connection_lifetime=_ASYNCPG_IDLE_S if idle_s is None else idle_s,
        timeout=connect_timeout,
        command_timeout=command_timeout,
        init=_init_connection,
        reset=_keep_session,
        max_cacheable_statement_size=0,
        server_settings={"plan_cache_mode": "force_generic_plan"},
    )


class PoolHandle:
    """A pool made on first use (constructing an adapter does no I/O), or one the caller
    owns and shares (several adapters on one database, or a one-connection server)."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout: float = 10.0,
        idle_s: float | None = None,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise ValueError("give either a dsn or a pool")
        self._dsn = dsn
        self._pool = pool
        self._owned = pool is None
        self._sizes = (min_size, max_size)
        self._connect_timeout = connect_timeout
        self._idle_s = idle_s
        self._lock = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                assert self._dsn is not None
                self._pool = await create_pool(
                    self._dsn,
                    min_size=self._sizes[0],
                    max_size=self._sizes[1],
                    connect_timeout=self._connect_timeout,
                    idle_s=self._idle_s,
                )
        return self._pool

    async def aclose(self) -> None:
        if self._owned and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


SharedPool: TypeAlias = "PoolHandle | asyncpg.Pool | None"
"""What an adapter may be given instead of a dsn: another adapter's handle (shared, not
closed by it), a pool the caller owns, or None to make its own from the dsn."""


def own_or_shared(
    dsn: str | None,
    pool: SharedPool,
    *,
    min_size: int,
    max_size: int,
    connect_timeout: float = 10.0,
    idle_s: float | None = None,
) -> tuple[PoolHandle, bool]:
    """The handle an adapter uses, and whether the adapter owns it (closes it): a
    ``PoolHandle`` passed in is shared with its owner; anything else makes a new one."""
    if isinstance(pool, PoolHandle):
        return pool, False
    handle = PoolHandle(
        dsn,
        pool=pool,
        min_size=min_size,
        max_size=max_size,
        connect_timeout=connect_timeout,
        idle_s=idle_s,
    )
    return handle, True


async def pool_health(name: str, pool: PoolHandle, limit_s: float) -> HealthReport:
    """``SELECT 1`` through the adapter's own pool: a one-connection server must never
    be asked for a second connection just to be checked."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit_s):
            connections = await pool.get()
            async with connections.acquire() as connection:
                await connection.fetchval("SELECT 1")
    except Exception as exc:
        return HealthReport(name, HealthStatus.DOWN, None, f"{type(exc).__name__}: {exc}")
    return HealthReport(name, HealthStatus.UP, round((time.perf_counter() - started) * 1000, 3))
