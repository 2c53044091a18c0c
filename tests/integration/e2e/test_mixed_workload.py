"""10,000+ statements of every kind, written while the pipeline streams into all three
destinations: afterwards each destination holds exactly what Cassandra holds."""

from __future__ import annotations

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end
from tests.integration.e2e.workload import Workload, Writer, create_tables


async def test_every_destination_equals_cassandra_after_a_mixed_workload(stack: Stack) -> None:
    create_tables(stack.session, stack.keyspace)
    with stack.links():
        pipeline = stack.pipeline()
        pipeline.start()
        writer = Writer(stack.session)
        writer.until(Workload(stack.keyspace), 10_000)
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert pipeline.stop() == 0, pipeline.tail()
    assert await stack.history_problems() == {}
    await stack.assert_mirrors_equal()
    assert stack.dead_letters() == []
