"""SIGTERM while a large batch is in flight: the pipeline finishes it, commits and exits
0; a restart then delivers the rest and nothing is lost."""

from __future__ import annotations

import asyncio

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end
from tests.integration.e2e.workload import Workload, Writer, create_tables


async def test_sigterm_during_a_large_batch_exits_cleanly_and_loses_nothing(stack: Stack) -> None:
    create_tables(stack.session, stack.keyspace)
    with stack.links():
        # Written before the pipeline starts: its first batches are full (10,000 events).
        Writer(stack.session).until(Workload(stack.keyspace, seed=13), 12_000)
        pipeline = stack.pipeline(max_batch_events=10_000)
        pipeline.start()
        await asyncio.sleep(1.0)  # the first 10,000-event batches are being written
        assert pipeline.stop() == 0, pipeline.tail()
        assert '"clean": true' in pipeline.log.read_text()
        pipeline.start()
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert pipeline.stop() == 0, pipeline.tail()
    assert await stack.history_problems() == {}
    await stack.assert_mirrors_equal()
    assert stack.dead_letters() == []
