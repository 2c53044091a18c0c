"""TimescaleDB fixtures. The local server (PGlite in WASM) serves one connection at a
time, so everything in a module (sinks, stores, read-backs) shares one pool of one
connection; a second pool would wait for the first to close."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cdc_adapters.postgres import RetryPolicy, create_pool
from cdc_adapters.timescaledb import TimescaleHistorySink, TimescaleMirrorSink
from cdc_domain.schema import TableSchema

FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.05, max_wait=0.2, max_seconds=5)
SINKS = {"history": TimescaleHistorySink, "mirror": TimescaleMirrorSink}


class Names:
    """Fresh schema names under the module's schema, dropped when the module ends."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.created: list[str] = []
        self._counter = itertools.count()

    def fresh(self) -> tuple[str, str]:
        """(schema template, metadata schema)."""
        n = next(self._counter)
        data, metadata = f"{self.base}_d{n}", f"{self.base}_m{n}"
        self.created += [data, metadata]
        return data, metadata


@pytest.fixture(scope="module")
async def ts_pool(timescaledb_schema: str, timescaledb_dsn: str) -> AsyncIterator[Any]:
    pool = await create_pool(timescaledb_dsn, min_size=1, max_size=1)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def ts_names(timescaledb_schema: str, ts_pool: Any) -> AsyncIterator[Names]:
    names = Names(timescaledb_schema)
    yield names
    async with ts_pool.acquire() as connection:
        for schema in names.created:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def make_ts_sink(ts_pool: Any, ts_names: Names):
    """``await make(mode=...)`` -> (sink, read_back) over fresh schemas."""

    async def make(mode: str = "history", table: str = "contract.orders", **options: Any):
        schema, metadata = ts_names.fresh()
        sink = SINKS[mode](
            name="ts",
            pool=ts_pool,
            schema=schema,
            metadata_schema=metadata,
            retry=FAST_RETRY,
            **options,
        )

        async def read_back(schema: TableSchema | None = None):
            if mode == "mirror":
                return await sink.rows(schema or table)
            return await sink.event_ids(schema or table)

        return sink, read_back

    return make
