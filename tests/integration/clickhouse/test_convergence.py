"""Out-of-order delivery, clustering tables and crashes: the mirror always converges to
the reference state (:class:`MirrorState`)."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_adapters.clickhouse import ClickHouseOffsetStore
from cdc_adapters.local import SystemClock
from cdc_domain.events import (
    ClusteringBound,
    ClusteringRange,
    CollectionDelta,
    CollectionElement,
    DeletionScope,
    Operation,
    SourcePosition,
)
from cdc_domain.mirror import MirrorState
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import SinkBatch
from tests.factories import event, table

WIDE = table(
    "readings",
    keyspace="wide",
    partition={"id": "int"},
    clustering={"n": "int"},
    regular={"v": "text", "tags": "set<text>"},
    static={"owner": "text"},
)


def _wide(op, key, n, ts, i, **kwargs):
    clustering = {} if kwargs.get("static") or "clustering_range" in kwargs else {"n": n}
    if kwargs.get("scope") is DeletionScope.PARTITION:
        clustering = {}
    return event(
        op, keyspace="wide", table="readings", key=key, ts=ts,
        clustering_key=clustering, position=SourcePosition(3, i), **kwargs,
    )  # fmt: skip


def _tags(ts, *add, removed=(), overwritten=False):
    elements = tuple(CollectionElement(t, None, ts) for t in add)
    return {"tags": CollectionDelta("set", overwritten, elements, tuple(removed))}


WIDE_HISTORY = (
    _wide(Operation.INSERT, 1, 1, 10, 1, columns={"v": "a"}, collections=_tags(10, "x", "y")),
    _wide(Operation.INSERT, 1, 2, 11, 2, columns={"v": "b"}),
    _wide(Operation.UPDATE, 1, 0, 12, 3, columns={"owner": "ann"}, static=True),
    _wide(Operation.UPDATE, 1, 1, 13, 4, collections=_tags(13, "z", removed=("x",))),
    _wide(
        Operation.DELETE,
        1,
        0,
        14,
        5,
        scope=DeletionScope.RANGE,
        clustering_range=ClusteringRange(ClusteringBound({"n": 2}), ClusteringBound({"n": 5})),
    ),
    _wide(Operation.INSERT, 1, 3, 9, 6, columns={"v": "late, under the range"}),
    _wide(Operation.INSERT, 2, 1, 20, 7, columns={"v": "c"}),
    _wide(Operation.DELETE, 2, 0, 25, 8, scope=DeletionScope.PARTITION),
    _wide(Operation.INSERT, 2, 2, 30, 9, columns={"v": "after the partition delete"}),
    _wide(Operation.UPDATE, 1, 1, 16, 10, collections=_tags(16, "w", overwritten=True)),
    _wide(Operation.DELETE, 1, 2, 15, 11, scope=DeletionScope.CELL, deleted_columns=("v",)),
)


def _expected(events, schema=WIDE):
    state = MirrorState()
    state.apply_all(events)
    return state.rows(schema.qualified_name)


def _batch(events, schema=WIDE):
    position = events[-1].position if events else SourcePosition(0, 0)
    return SinkBatch(
        tuple(events), {schema.qualified_name: schema}, Checkpoint("node1", position, len(events))
    )


async def test_clustering_tables_follow_the_reference(make_sink):
    sink, read_back = await make_sink()
    await sink.write(_batch(WIDE_HISTORY))
    assert await read_back(WIDE) == _expected(WIDE_HISTORY)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(len(WIDE_HISTORY))),
    repeats=st.lists(st.integers(0, len(WIDE_HISTORY) - 1), max_size=4),
    size=st.integers(1, 4),
)
async def test_clustering_tables_converge_in_any_order(make_sink, order, repeats, size):
    sink, read_back = await make_sink()
    delivered = [WIDE_HISTORY[i] for i in order] + [WIDE_HISTORY[i] for i in repeats]
    for i in range(0, len(delivered), size):
        await sink.write(_batch(delivered[i : i + size]))
    assert await read_back(WIDE) == _expected(WIDE_HISTORY)


ORDERS = table("orders", keyspace="crash", regular={"status": "text", "total": "int"})


def _stream(seed: int, count: int = 120):
    rng = random.Random(seed)
    events = []
    for i in range(count):
        key, ts = rng.randrange(15), rng.randrange(1, 1000)
        kind = rng.random()
        if kind < 0.15:
            kwargs = {"scope": DeletionScope.ROW}
            op = Operation.DELETE
        else:
            op = Operation.INSERT if kind < 0.4 else Operation.UPDATE
            kwargs = {"columns": {rng.choice(["status", "total"]): rng.randrange(100)}}
            if "status" in kwargs["columns"]:
                kwargs["columns"]["status"] = f"s{kwargs['columns']['status']}"
        events.append(
            event(op, keyspace="crash", key=key, ts=ts, position=SourcePosition(4, i), **kwargs)
        )
    return events


@pytest.mark.parametrize("seed", range(4))
async def test_a_writer_killed_at_random_points_converges_after_replay(
    make_sink, server_url, namespace, seed
):
    """The writer is cancelled at a random moment (inside an insert, between the row and
    partition inserts, between the write and the offset commit), then a new process
    replays from the committed offset; the end state is the reference state."""
    events = _stream(seed)
    rng = random.Random(seed)
    sink, read_back = await make_sink()
    location = {"database": f"{namespace}crash_offsets", "table": f"seed_{seed}"}

    async def run(sink) -> None:
        store = ClickHouseOffsetStore(url=server_url, clock=SystemClock(), **location)
        try:
            record = await store.load("clickhouse", "node1")
            start = 0 if record is None else record.position.offset + 1
            for i in range(start, len(events), 10):
                chunk = events[i : i + 10]
                await sink.write(_batch(chunk, ORDERS))
                await store.commit(
                    "clickhouse", Checkpoint("node1", chunk[-1].position, len(chunk))
                )
        finally:
            await store.aclose()

    for _ in range(3):
        task = asyncio.create_task(run(sink))
        await asyncio.sleep(rng.uniform(0.0, 0.05))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sink, _ = await make_sink(database_prefix=sink.database_for(""))  # a new process
    await run(sink)
    assert await read_back(ORDERS) == _expected(events, ORDERS)
    store = ClickHouseOffsetStore(url=server_url, clock=SystemClock(), **location)
    record = await store.load("clickhouse", "node1")
    await store.aclose()
    assert record.position == events[-1].position
