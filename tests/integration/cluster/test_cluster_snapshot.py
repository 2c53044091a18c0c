"""Rows three tables held before CDC was turned on, snapshotted by three agents at once
(``source.snapshot: initial``), each reading the token ranges its node is the primary
replica of, while a workload changes some of the same rows. Each destination's recorded
progress shows every range of the ring read by exactly one agent; afterwards every
destination equals Cassandra read at ``ALL``."""

from __future__ import annotations

import asyncio

import pytest

from cdc_adapters.local import SqliteOffsetStore, SystemClock
from cdc_adapters.postgres import PostgresOffsetStore, create_pool
from cdc_domain.snapshot_progress import SnapshotProgress
from cdc_domain.tokens import TokenRange
from tests.integration.cluster.stack import ClusterStack
from tests.integration.e2e.snapshot_checks import snapshot_state
from tests.integration.e2e.snapshot_data import TABLES, Preload, SnapshotWorkload
from tests.integration.e2e.workload import Writer

ROWS = 20_000
RING = TokenRange(-(2**63), 2**63 - 1)


async def ranges_read(stack: ClusterStack) -> dict[tuple[str, str], list[TokenRange]]:
    """Per (destination, table), the ranges every agent recorded as read, all agents'
    together (a range read by two agents appears twice)."""
    found: dict[tuple[str, str], list[TokenRange]] = {}
    pool = await create_pool(stack.timescaledb_dsn, min_size=1, max_size=1)
    try:
        for agent in stack.agents:
            progress = SnapshotProgress(f"node{agent.node.number}")
            stores = {
                "pg": PostgresOffsetStore(dsn=stack.postgres_dsn, schema="public"),
                "ch": SqliteOffsetStore(str(agent.workdir / "offsets.db"), SystemClock()),
                "ts": PostgresOffsetStore(pool=pool, schema=stack.timescaledb_schema),
            }
            for destination, store in stores.items():
                try:
                    for table, recorded in (await progress.load(store, destination)).items():
                        assert recorded.finished, (agent.node, destination, table)
                        found.setdefault((destination, table), []).extend(recorded.ranges)
                finally:
                    await store.aclose()
    finally:
        await pool.close()
    return found


def gaps_and_overlaps(ranges: list[TokenRange]) -> list[str]:
    """Where ``ranges`` fail to tile the ring exactly once."""
    problems, at = [], RING.start
    for piece in sorted(ranges):
        if piece.start != at:
            problems.append(f"{'overlap' if piece.start < at else 'gap'} at {at}: {piece}")
        at = max(at, piece.end)
    if at != RING.end:
        problems.append(f"the ring ends at {at}")
    return problems


@pytest.mark.timeout(900)
async def test_three_agents_snapshot_their_primary_ranges_once(
    cluster_stack: ClusterStack,
) -> None:
    stack = cluster_stack
    preload = Preload(stack.keyspace, ROWS)
    preload.create(stack.session)
    preload.load(stack.session)
    workload = SnapshotWorkload(preload)
    writer = Writer(stack.session)
    stack.configure(snapshot="initial")
    with stack.links():
        for agent in stack.agents:
            agent.pipeline.start()

        def states() -> list[str | None]:
            return [snapshot_state(agent.pipeline) for agent in stack.agents]

        waves = 0
        while any(state in (None, "running") for state in await asyncio.to_thread(states)):
            writer.run(workload.during())
            waves += 1
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(states) == ["finished"] * 3
        assert waves >= 3  # the workload really ran while the snapshots did
        for _ in range(10):
            writer.run(workload.after())
        stack.wait_all_caught_up(600)
        stack.stop_all()
    read = await ranges_read(stack)
    tables = {f"{stack.keyspace}.{t}" for t in TABLES}
    assert set(read) == {(d, t) for d in ("pg", "ch", "ts") for t in tables}
    problems = {key: found for key, ranges in read.items() if (found := gaps_and_overlaps(ranges))}
    assert not problems, f"ranges not read exactly once: {problems}"
    await stack.assert_converged()
