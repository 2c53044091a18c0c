"""SIGTERM while a large batch is in flight: the pipeline finishes it, commits and exits
0; a restart then delivers the rest and nothing is lost."""

from __future__ import annotations

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end
from tests.integration.e2e.workload import Workload, Writer, create_tables

FULL = 10_000


@pytest.mark.timeout(240)  # 7 to 18 s measured
async def test_sigterm_during_a_large_batch_exits_cleanly_and_loses_nothing(stack: Stack) -> None:
    create_tables(stack.session, stack.keyspace)
    with stack.links():
        # Written before the pipeline starts: its first batches are full (10,000 events).
        Writer(stack.session).until(Workload(stack.keyspace, seed=13), 12_000)
        pipeline = stack.pipeline(max_batch_events=FULL)
        pipeline.start()

        def a_full_batch_in_flight() -> bool:
            """A destination read the first full batch, and one has not written it yet:
            that one is reading or writing it (all start at once)."""
            read = sum(pipeline.metric("cdc_events_read_total", by="table").values())
            written = pipeline.metric("cdc_events_written_total", by="destination")
            names = pipeline.positions()
            return read >= FULL and any(written.get(name, 0) < FULL for name in names)

        pipeline.wait_until(a_full_batch_in_flight, 60, "a full batch in flight")
        assert pipeline.stop() == 0, pipeline.tail()
        assert '"clean": true' in pipeline.log.read_text()
        pipeline.start()
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert pipeline.stop() == 0, pipeline.tail()
    assert await stack.history_problems() == {}
    await stack.assert_mirrors_equal()
    assert stack.dead_letters() == []
