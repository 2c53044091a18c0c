"""Three agents' history sinks on the development TimescaleDB, which serves one
connection at a time and queues the others: each sink's own pool gives its connection
back once idle (``pool_idle_s``), so they take turns, and a sink whose connect waits in
the queue waits its turn (``connect_timeout``) instead of failing.

This module opens no connection of its own while the sinks write: one held open would
keep them all waiting.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from cdc_adapters.timescaledb import TimescaleHistorySink
from cdc_domain.events import Operation, SourcePosition
from cdc_domain.identity import write_id
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import SinkBatch
from tests.factories import replica_copy
from tests.integration.postgres.mirror_model import ITEMS, QUALIFIED, ev
from tests.integration.timescaledb.conftest import FAST_RETRY

WRITES = [ev(Operation.INSERT, n % 7, (n, "a"), 1_000 + n, columns={"b": n}) for n in range(60)]
BATCH = 6


async def deliver(sink: TimescaleHistorySink, node: str) -> None:
    """Every write as this node's copy, in batches, each committed with its offset."""
    copies = [replica_copy(w, node, SourcePosition(int(node[-1]), i)) for i, w in enumerate(WRITES)]
    for start in range(0, len(copies), BATCH):
        part = tuple(copies[start : start + BATCH])
        checkpoint = Checkpoint(node, part[-1].position, len(part))
        await sink.write(SinkBatch(part, {QUALIFIED: ITEMS}, checkpoint))


@pytest.mark.timeout(180)
async def test_agents_sharing_a_one_connection_server_take_turns(
    timescaledb_dsn: str, timescaledb_schema: str
) -> None:
    sinks = [
        TimescaleHistorySink(
            name="history",
            dsn=timescaledb_dsn,
            schema=timescaledb_schema,
            metadata_schema=timescaledb_schema,
            pool_min_size=0,
            pool_idle_s=0.05,
            connect_timeout=120,
            retry=FAST_RETRY,
        )
        for _ in range(3)
    ]
    try:
        await asyncio.gather(*(deliver(s, f"node{n}") for n, s in enumerate(sinks, start=1)))
        assert await sinks[0].write_ids(ITEMS) == sorted({write_id(w) for w in WRITES})
        absorbed = sum(sum(s.take_absorbed_copies().values()) for s in sinks)
        assert absorbed == 2 * len(WRITES)
    finally:
        for sink in sinks:
            await sink.aclose()
    connection = await asyncpg.connect(timescaledb_dsn)
    try:
        offsets = await connection.fetch(
            f'SELECT partition_id, position FROM "{timescaledb_schema}".cdc_offsets'
        )
    finally:
        await connection.close()
    assert {(r["partition_id"], r["position"]) for r in offsets} == {
        (f"node{n}", len(WRITES) - 1) for n in (1, 2, 3)
    }
