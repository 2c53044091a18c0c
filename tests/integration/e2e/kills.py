"""``kill -9`` of the pipeline at random points while a workload runs, restarting it
each time, then every destination compared with Cassandra: shared by the suites that
run it on different process layouts."""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end
from tests.integration.e2e.workload import Workload, Writer, create_tables
from tests.support.processes import ended
from tests.support.waiting import eventually

KILLS = 12


async def kill_at_random_points(stack: Stack, *, reader_process: bool = False) -> None:
    """Twelve kills and restarts; afterwards nothing is lost and nothing applied twice,
    and no process the killed pipeline started outlives it."""
    create_tables(stack.session, stack.keyspace)
    rng = random.Random(3)
    done = threading.Event()
    writer = Writer(stack.session)

    def write() -> None:
        # Paced so the workload spans every kill and restart.
        writer.until(Workload(stack.keyspace, seed=5), 10_000, between=lambda _: time.sleep(0.3))
        done.set()

    with stack.links():
        pipeline = stack.pipeline(max_batch_events=500, reader_process=reader_process)
        thread = threading.Thread(target=write, name="workload")
        thread.start()
        spawned: set[int] = set()
        try:
            for _ in range(KILLS):
                pipeline.start()
                await asyncio.sleep(rng.uniform(0.2, 2.5))
                children = pipeline.children()
                spawned |= children
                pipeline.kill()
                await eventually(
                    functools.partial(ended, children),
                    within=60,
                    what=f"the killed pipeline's children {sorted(children)} ending",
                )
        finally:
            thread.join()
        assert done.is_set()
        pipeline.start()
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert pipeline.stop() == 0, pipeline.tail()
    assert pipeline.starts == KILLS + 1
    assert spawned or not reader_process, "no kill found a reader process running"
    assert await stack.history_problems() == {}
    await stack.assert_mirrors_equal()
    assert stack.dead_letters() == []
