"""The mixed workload with ``ALTER TABLE ADD``, ``ALTER TABLE DROP`` and a new CDC table
executed while it runs (the pipeline captures ``ks.*``): every destination follows, and
ends equal to Cassandra, written under whichever schema each change was made with."""

from __future__ import annotations

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end
from tests.integration.e2e.workload import Workload, Writer, create_tables, evolving


@pytest.mark.timeout(240)  # 20 s measured
async def test_columns_added_and_dropped_and_a_table_created_mid_workload(stack: Stack) -> None:
    ks = stack.keyspace
    create_tables(stack.session, ks)
    workload = Workload(ks, seed=11)
    evolve = evolving(stack.session, workload, at=(3000, 5000, 7000))

    with stack.links():
        pipeline = stack.pipeline()
        pipeline.start()
        Writer(stack.session).until(workload, 10_000, between=evolve)
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert pipeline.stop() == 0, pipeline.tail()
    assert await stack.history_problems() == {}
    await stack.assert_mirrors_equal()
    assert stack.dead_letters() == []
    applied = (stack.workdir / "schema_history.jsonl").read_text()
    for change in ("loyalty", "note", "reviews"):
        assert change in applied
