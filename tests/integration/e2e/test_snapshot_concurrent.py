"""100,000 rows that tables held before CDC was turned on, snapshotted into all three
destinations (``source.snapshot: initial``) while a workload updates, deletes and
rewrites some of the same rows; afterwards every destination equals Cassandra row by
row (TimescaleDB's history replayed), and the history holds every streamed change once
beside the snapshot's."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import durable_end
from tests.integration.e2e.snapshot_checks import snapshot_state
from tests.integration.e2e.snapshot_data import Preload, SnapshotWorkload
from tests.integration.e2e.workload import Writer

ROWS = 100_000


@pytest.mark.timeout(1200)  # 158 s measured (2 cores shared with other test runs)
async def test_existing_rows_reach_every_destination_while_a_workload_changes_them(
    stack: Stack,
) -> None:
    preload = Preload(stack.keyspace, ROWS)
    preload.create(stack.session)
    preload.load(stack.session)
    workload = SnapshotWorkload(preload)
    writer = Writer(stack.session)
    with stack.links():
        pipeline = stack.pipeline(snapshot="initial")
        pipeline.start()
        waves = 0
        while snapshot_state(pipeline) in (None, "running"):
            assert pipeline.alive(), pipeline.tail()
            writer.run(workload.during())
            waves += 1
            await asyncio.sleep(0.05)
        assert snapshot_state(pipeline) == "finished", pipeline.get("/snapshot")
        assert waves >= 5  # the workload really ran while the snapshot did
        for _ in range(20):
            writer.run(workload.after())
        pipeline.wait_caught_up(durable_end(stack.reference_cdc_raw), timeout=600)
        snapshot = pipeline.get("/snapshot")["snapshot"]
        assert pipeline.stop() == 0, pipeline.tail()
    # Every preloaded row, less those deleted before their range was read.
    assert sum(t["rows"] for t in snapshot["tables"]) >= ROWS * 0.9
    assert all(d["finished"] for t in snapshot["tables"] for d in t["destinations"].values())
    await stack.assert_mirrors_equal()
    assert await stack.history_problems() == {}
    assert await stack.history_differences() == {}
    assert stack.dead_letters() == []
