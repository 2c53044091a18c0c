"""Writers killed mid-stream on the WASM TimescaleDB: no loss, no duplicate.

Each writer has its own one-connection pool, killed by dropping the connection
(``pool.terminate()``) and cancelling the task: a query cancel would need a second
connection, which this one-connection server queues behind the first. This module
therefore holds no other connection while it runs.
"""

from __future__ import annotations

import pytest

from cdc_adapters.postgres import PostgresOffsetStore, create_pool
from tests.integration.postgres.crash_driver import (
    DESTINATION,
    PARTITION,
    Round,
    deliver_with_crashes,
    stream,
)
from tests.integration.postgres.mirror_model import ITEMS, reference
from tests.integration.timescaledb.conftest import FAST_RETRY, SINKS


@pytest.mark.parametrize("mode", ["history", "mirror"])
async def test_killed_writers_lose_nothing_and_repeat_nothing(
    timescaledb_dsn, timescaledb_schema, mode
):
    events = stream(400, 11)
    schema, metadata = f"{timescaledb_schema}_{mode}", f"{timescaledb_schema}_{mode}_m"

    async def new_round():
        pool = await create_pool(timescaledb_dsn, min_size=1, max_size=1)
        sink = SINKS[mode](
            name=DESTINATION,
            pool=pool,
            schema=schema,
            metadata_schema=metadata,
            retry=FAST_RETRY,
        )

        def kill(task):
            pool.terminate()
            task.cancel()

        async def close():
            await pool.close()

        return Round(sink, PostgresOffsetStore(pool=pool, schema=metadata), kill, close)

    async def check(sink, delivered):
        if mode == "mirror":
            assert await sink.rows(ITEMS) == reference(events[:delivered])
        else:
            assert await sink.event_ids(ITEMS) == [e.event_id for e in events[:delivered]]

    crashes = await deliver_with_crashes(
        new_round, events, size=20, seed=3, check=check, max_kill_delay=0.05
    )
    assert crashes > 0
    final = await new_round()
    assert (await final.offsets.load(DESTINATION, PARTITION)).events_processed == len(events)
    async with final.sink._pool._pool.acquire() as connection:
        for name in (schema, metadata):
            await connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    await final.close()
