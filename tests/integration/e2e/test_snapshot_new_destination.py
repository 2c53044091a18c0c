"""A destination added to the configuration later (TimescaleDB, after PostgreSQL and
ClickHouse were snapshotted and streamed for a while) is snapshotted at the next start
and then streams, ending equal to Cassandra; the other two are not snapshotted again."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.e2e.conftest import Stack
from tests.integration.e2e.harness import Pipeline, durable_end
from tests.integration.e2e.snapshot_checks import recorded, snapshot_state
from tests.integration.e2e.snapshot_data import Preload, SnapshotWorkload
from tests.integration.e2e.workload import Writer

ROWS = 10_000


async def snapshot_then_stream(pipeline: Pipeline, writer: Writer, workload: SnapshotWorkload):
    while snapshot_state(pipeline) in (None, "running"):
        assert pipeline.alive(), pipeline.tail()
        writer.run(workload.during())
        await asyncio.sleep(0.05)
    assert snapshot_state(pipeline) == "finished", pipeline.get("/snapshot")
    for _ in range(10):
        writer.run(workload.after())
    snapshot = pipeline.get("/snapshot")["snapshot"]
    written = pipeline.metric("cdc_snapshot_events_written_total", "destination")
    return snapshot, written


@pytest.mark.timeout(600)  # 47 s measured (2 cores shared with other test runs)
async def test_a_destination_added_later_is_snapshotted_alone_then_streams(stack: Stack) -> None:
    preload = Preload(stack.keyspace, ROWS, seed=7)
    preload.create(stack.session)
    preload.load(stack.session)
    workload = SnapshotWorkload(preload, seed=9)
    writer = Writer(stack.session)
    with stack.links():
        first = stack.pipeline(snapshot="initial", timescaledb_dsn=None)
        first.start()
        snapshot, written = await snapshot_then_stream(first, writer, workload)
        assert {d for t in snapshot["tables"] for d in t["destinations"]} == {"pg", "ch"}
        assert set(written) == {"pg", "ch"}
        first.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert first.stop() == 0, first.tail()
        before = await recorded(stack)
        assert before["ts"] == {}
        second = stack.pipeline(snapshot="initial")
        second.start()
        snapshot, written = await snapshot_then_stream(second, writer, workload)
        assert {d for t in snapshot["tables"] for d in t["destinations"]} == {"ts"}
        assert set(written) == {"ts"}
        second.wait_caught_up(durable_end(stack.reference_cdc_raw))
        assert second.stop() == 0, second.tail()
    after = await recorded(stack)
    assert {n: after[n] for n in ("pg", "ch")} == {n: before[n] for n in ("pg", "ch")}
    assert all(p.finished for p in after["ts"].values())
    await stack.assert_mirrors_equal()
    assert await stack.history_differences() == {}
    assert stack.dead_letters() == []
