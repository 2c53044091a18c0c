"""Whether the database has TimescaleDB, checked before anything is written.

Its functions are called schema-qualified with the schema the extension lives in:
nothing guarantees that schema is on the session's ``search_path`` (a pooler or a
session reset may leave only ``pg_catalog`` there).
"""

from __future__ import annotations

from typing import Any

import attrs

from cdc_domain.errors import SinkError

__all__ = ["TimescaleInfo", "TimescaleMissingError", "timescaledb_info"]


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
