"""The history holds each Cassandra write once, however many agents deliver it.

With replication factor 3 an agent per node reads every write from its own commit log:
copies with their own event ids and positions. Here 2-3 writers (history sinks, as the
agents of several nodes have) deliver a random stream concurrently, each its own
shuffled mix of replicas' copies with re-deliveries, in batches of random sizes.

On the WASM TimescaleDB the writers share its one connection, so their transactions
interleave batch by batch; on PostgreSQL (the same sink on plain tables) each has
connections of its own and their transactions truly overlap, where copies of one write
inserted at once meet in the unique index.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_adapters.postgres import create_pool
from cdc_adapters.timescaledb import TimescaleHistorySink
from cdc_domain.events import (
    ChangeEvent,
    CollectionDelta,
    CollectionElement,
    DeletionScope,
    Operation,
    SourcePosition,
)
from cdc_domain.identity import write_id
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import SinkBatch
from tests.factories import replica_copy
from tests.integration.postgres.mirror_model import ITEMS, QUALIFIED, ev, range_delete
from tests.integration.timescaledb.conftest import FAST_RETRY, Names

ROWS = [(1, "a"), (1, "b"), (2, "a")]
texts = st.text("ab\\N é", max_size=3)
ints = st.integers(-(2**31), 2**31 - 1)
stamps = st.integers(1, 4)  # few: equal timestamps are common
ttls = st.none() | st.integers(1, 10**6)
columns = st.fixed_dictionaries({}, optional={"a": st.none() | texts, "b": st.none() | ints})


def _list_key(n: int) -> uuid.UUID:
    return uuid.UUID(int=(n << 76) | (1 << 12) | 1)


@st.composite
def deltas(draw: st.DrawFn, ts: int) -> dict[str, CollectionDelta]:
    found: dict[str, CollectionDelta] = {}
    if draw(st.booleans()):
        added = draw(st.lists(texts, max_size=2, unique=True))
        removed = draw(st.lists(texts, max_size=2, unique=True))
        found["tags"] = CollectionDelta(
            "set",
            overwritten=draw(st.booleans()),
            elements=tuple(CollectionElement(x, None, ts) for x in added),
            removed=tuple(removed),
        )
    if draw(st.booleans()):
        entries = draw(st.dictionaries(texts, ints, max_size=2))
        found["attrs"] = CollectionDelta(
            "map", elements=tuple(CollectionElement(k, v, ts) for k, v in entries.items())
        )
    if draw(st.booleans()) or not found:
        values = draw(st.lists(ints, min_size=1, max_size=2))
        found["log"] = CollectionDelta(
            "list",
            elements=tuple(
                CollectionElement(_list_key(ts * 10 + i), v, ts) for i, v in enumerate(values)
            ),
        )
    return found


@st.composite
def writes(draw: st.DrawFn) -> ChangeEvent:
    """One Cassandra write to ``sem.items``, of any kind the history keeps."""
    kind = draw(
        st.sampled_from(
            ["insert", "update", "static", "collections", "row", "partition", "cells", "range"]
        )
    )
    pk, ck, ts = draw(st.integers(1, 2)), draw(st.sampled_from(ROWS)), draw(stamps)
    if kind == "insert":
        return ev(Operation.INSERT, pk, ck, ts, columns=draw(columns), ttl_seconds=draw(ttls))
    if kind == "update":
        changed = draw(
            st.fixed_dictionaries({"a": st.none() | texts}, optional={"b": st.none() | ints})
            | st.fixed_dictionaries({"b": st.none() | ints})
        )
        return ev(Operation.UPDATE, pk, ck, ts, columns=changed, ttl_seconds=draw(ttls))
    if kind == "static":
        value = draw(st.none() | texts)
        return ev(Operation.UPDATE, pk, None, ts, static=True, columns={"s": value})
    if kind == "collections":
        return ev(
            Operation.UPDATE, pk, ck, ts, collections=draw(deltas(ts)), ttl_seconds=draw(ttls)
        )
    if kind == "row":
        return ev(Operation.DELETE, pk, ck, ts)
    if kind == "partition":
        return ev(Operation.DELETE, pk, None, ts, scope=DeletionScope.PARTITION)
    if kind == "cells":
        gone = draw(st.lists(st.sampled_from(["a", "b"]), min_size=1, unique=True))
        return ev(
            Operation.DELETE, pk, ck, ts, scope=DeletionScope.CELL, deleted_columns=tuple(gone)
        )
    low, high = sorted(draw(st.lists(st.integers(1, 2), min_size=2, max_size=2)))
    inclusive = (draw(st.booleans()), draw(st.booleans()))
    return range_delete(pk, ts, {"c1": low}, {"c1": high}, inclusive)


def streams(stream: list[ChangeEvent], writers: int, rng: random.Random) -> list[list[ChangeEvent]]:
    """What each writer delivers: every write at least once, as the copies of one to
    three nodes (each node's copy has its own event id and position), shuffled, with
    some delivered twice."""
    copies = [
        [replica_copy(w, f"node{n}", SourcePosition(100 + n, 10 * i + n)) for n in range(3)]
        for i, w in enumerate(stream)
    ]
    delivered = []
    for _ in range(writers):
        mine = [c for of_write in copies for c in rng.sample(of_write, rng.randint(1, 3))]
        mine += rng.choices(mine, k=rng.randint(0, len(mine) // 2))
        rng.shuffle(mine)
        delivered.append(mine)
    return delivered


async def deliver(
    sink: TimescaleHistorySink, node: str, events: list[ChangeEvent], rng: random.Random
) -> None:
    start = 0
    while start < len(events):
        part = events[start : start + rng.randint(1, 8)]
        start += len(part)
        checkpoint = Checkpoint(node, part[-1].position, len(part))
        await sink.write(SinkBatch(tuple(part), {QUALIFIED: ITEMS}, checkpoint))
        await asyncio.sleep(0)  # let the other writers in between batches


async def check_each_write_held_once(
    pool: Any, names: Names, stream: list[ChangeEvent], writers: int, seed: int, **options: Any
) -> None:
    rng = random.Random(seed)
    data, metadata = names.fresh()
    sinks = [
        TimescaleHistorySink(
            name="history",
            pool=pool,
            schema=data,
            metadata_schema=metadata,
            retry=FAST_RETRY,
            **options,
        )
        for _ in range(writers)
    ]
    delivered = streams(stream, writers, rng)
    await asyncio.gather(
        *(
            deliver(sink, f"agent{n}", events, random.Random(rng.random()))
            for n, (sink, events) in enumerate(zip(sinks, delivered, strict=True))
        )
    )
    expected = sorted({write_id(w) for w in stream})
    assert await sinks[0].write_ids(ITEMS) == expected
    absorbed = sum(sum(s.take_absorbed_copies().values()) for s in sinks)
    assert absorbed == sum(map(len, delivered)) - len(expected)


EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@EXAMPLES
@given(
    stream=st.lists(writes(), min_size=1, max_size=25),
    writers=st.integers(2, 3),
    seed=st.integers(0, 2**32),
)
async def test_concurrent_writers_on_timescaledb_hold_each_write_once(
    ts_pool, ts_names, stream, writers, seed
):
    await check_each_write_held_once(ts_pool, ts_names, stream, writers, seed)


@pytest.fixture(scope="module")
async def pg_pool(postgres_database_dsn):
    pool = await create_pool(postgres_database_dsn, min_size=1, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def pg_names():
    return Names("writers")


@EXAMPLES
@given(
    stream=st.lists(writes(), min_size=1, max_size=25),
    writers=st.integers(2, 3),
    seed=st.integers(0, 2**32),
)
async def test_writers_with_connections_of_their_own_hold_each_write_once(
    pg_pool, pg_names, stream, writers, seed
):
    await check_each_write_held_once(
        pg_pool, pg_names, stream, writers, seed, fallback_to_plain_tables=True
    )
