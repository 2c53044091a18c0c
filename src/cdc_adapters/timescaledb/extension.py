"""Whether the database has TimescaleDB, checked before anything is written.

Its functions are called schema-qualified with the schema the extension lives in:
nothing guarantees that schema is on the session's ``search_path`` (a pooler or a
session reset may leave only ``pg_catalog`` there).
"""

from __future__ import annotations

from typing import Any

import attrs

from cdc_adapters.postgres.errors import RetryPolicy, with_retries
from cdc_adapters.postgres.pool import PoolHandle
from cdc_domain.errors import SinkError

__all__ = ["ExtensionCheck", "TimescaleInfo", "TimescaleMissingError", "timescaledb_info"]


class TimescaleMissingError(SinkError):
    """The database has no ``timescaledb`` extension and plain tables were not allowed."""


@attrs.frozen(slots=True)
class TimescaleInfo:
    version: str
    schema: str


async def timescaledb_info(connection: Any, *, install: bool = True) -> TimescaleInfo | None:
    """The extension's version and schema, creating it when available but not created."""
    row = await connection.fetchrow(
        "SELECT extversion, extnamespace::regnamespace::text AS schema "
        "FROM pg_catalog.pg_extension WHERE extname = 'timescaledb'"
    )
    if row is None and install:
        available = await connection.fetchval(
            "SELECT count(*) FROM pg_catalog.pg_available_extensions WHERE name = 'timescaledb'"
        )
        if available:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            return await timescaledb_info(connection, install=False)
    return TimescaleInfo(row["extversion"], row["schema"]) if row is not None else None


class ExtensionCheck:
    """The start-up check both TimescaleDB sinks make, through the sink's own pool (a
    one-connection server must never be asked for a second connection) and only until
    it passes: its answer does not change while the sink runs."""

    def __init__(self, name: str, pool: PoolHandle, retry: RetryPolicy, *, fallback: bool):
        self._name = name
        self._pool = pool
        self._retry = retry
        self._fallback = fallback
        self._checked = False
        self._info: TimescaleInfo | None = None

    async def info(self) -> TimescaleInfo | None:
        """The extension, or None for plain tables (the allowed fallback).

        Raises TimescaleMissingError (saying what to do) when the extension is missing
        and plain tables were not allowed, TransientError when the database stays
        unreachable through the retries.
        """
        if not self._checked:

            async def attempt() -> TimescaleInfo | None:
                pool = await self._pool.get()
                async with pool.acquire() as connection:
                    return await timescaledb_info(connection)

            info = await with_retries(self._retry, attempt, f"{self._name} start-up")
            if info is None and not self._fallback:
                raise TimescaleMissingError(
                    f"{self._name}: the database has no 'timescaledb' extension (and it is "
                    "not available to CREATE EXTENSION). Install TimescaleDB, or set "
                    "fallback_to_plain_tables: true to write to plain tables instead."
                )
            self._info, self._checked = info, True
        return self._info
