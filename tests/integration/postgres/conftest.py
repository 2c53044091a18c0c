"""PostgreSQL fixtures: one pool per test module on that module's own database, and
sinks over fresh schemas so every test starts empty."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cdc_adapters.postgres import PostgresSink, RetryPolicy, create_pool
from cdc_domain.schema import TableSchema

FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.05, max_wait=0.2, max_seconds=5)


def fresh_names() -> tuple[str, str]:
    """(schema template, metadata schema), unique per call."""
    suffix = uuid.uuid4().hex[:10]
    return f"t{suffix}_{{keyspace}}", f"m{suffix}"


@pytest.fixture(scope="module")
async def pg_pool(postgres_database_dsn: str) -> AsyncIterator[Any]:
    pool = await create_pool(postgres_database_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def make_pg_sink(pg_pool: Any):
    """``await make(table=...)`` -> (sink, read_back) over fresh schemas."""

    async def make(table: str = "contract.orders", **options: Any):
        schema, metadata = fresh_names()
        sink = PostgresSink(
            name="pg",
            pool=pg_pool,
            schema=schema,
            metadata_schema=metadata,
            retry=FAST_RETRY,
            **options,
        )

        async def read_back(schema: TableSchema | None = None):
            return await sink.rows(schema or table)

        return sink, read_back

    return make
