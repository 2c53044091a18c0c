"""``kill -9`` of the pipeline at random points while the workload runs, twelve times,
restarting it each time: nothing is lost and nothing is applied twice. PostgreSQL and
ClickHouse end equal to Cassandra; TimescaleDB holds every change exactly once (its
event ids are unique, and are exactly the captured ones)."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end
from tests.integration.e2e.workload import Workload, Writer, create_tables

KILLS = 12


@pytest.mark.timeout(300)  # 26 s measured
async def test_kill_9_at_random_points_loses_and_duplicates_nothing(stack: Stack) -> None:
    create_tables(stack.session, stack.keyspace)
    rng = random.Random(3)
    done = threading.Event()
    writer = Writer(stack.session)

    def write() -> None:
        # Paced so the workload spans every kill and restart.
        writer.until(Workload(stack.keyspace, seed=5), 10_000, between=lambda _: time.sleep(0.3))
        done.set()

    with stack.links():
        pipeline = stack.pipeline(max_batch_events=500)
        thread = threading.Thread(target=write, name="workload")
        thread.start()
        try:
            for _ in range(KILLS):
                pipeline.start()
                await asyncio.sleep(rng.uniform(0.2, 2.5))
                pipeline.kill()
        finally:
            thread.join()
        assert done.is_set()
        pipeline.start()
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert pipeline.stop() == 0, pipeline.tail()
    assert pipeline.starts == KILLS + 1
    assert await stack.history_problems() == {}
    await stack.assert_mirrors_equal()
    assert stack.dead_letters() == []
