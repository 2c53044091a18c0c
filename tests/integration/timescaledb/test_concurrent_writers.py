"""Writers at once on TimescaleDB in mirror mode: the convergence property.

The local server serves one connection at a time and queues the others, so writers
here interleave batch by batch: each lets go of its connection after a batch (its
next write opens a new one), and none holds one while waiting for another's turn.
"""

from __future__ import annotations

import asyncpg
import pytest

from cdc_adapters.postgres import RetryPolicy
from cdc_adapters.timescaledb import TimescaleMirrorSink
from tests.integration.postgres.convergence import (
    ConcurrentWritersContract,
    converging_writers_test,
    one_batch_test,
)
from tests.integration.timescaledb.conftest import Names

QUEUED = RetryPolicy(attempts=30, initial_wait=0.05, max_wait=1.0, max_seconds=300)
"""Writers take turns on the server (and behind other clients of it): waiting for a
connection is expected here, not a failure."""


@pytest.fixture(scope="module")
async def names(timescaledb_dsn, timescaledb_schema):
    created = Names(timescaledb_schema)
    yield created
    connection = await asyncpg.connect(timescaledb_dsn)
    try:
        for schema in created.created:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture
def fresh_tables(timescaledb_dsn, names):
    """``fresh_tables()`` -> ``new_writer``: ``await new_writer()`` is one more sink on
    the same new tables, with its own (one-connection) pool."""

    def tables():
        schema, metadata = names.fresh()

        async def new_writer() -> TimescaleMirrorSink:
            return TimescaleMirrorSink(
                name="ts",
                dsn=timescaledb_dsn,
                schema=schema,
                metadata_schema=metadata,
                retry=QUEUED,
            )

        return new_writer

    return tables


class TestTimescaleMirrorConcurrentWriters(ConcurrentWritersContract):
    test_concurrent_writers_converge_on_the_rules = converging_writers_test(50)
    test_one_batch_in_any_order_folds_by_the_rules = one_batch_test(50)

    async def after_batch(self, sink):
        await sink.aclose()
