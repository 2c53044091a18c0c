"""Writers at once on PostgreSQL: the convergence property, and three writers over
overlapping rows that must never deadlock."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from cdc_adapters.postgres import PostgresSink, RetryPolicy
from cdc_adapters.postgres.errors import with_retries
from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    ClusteringRange,
    DeletionScope,
    Operation,
    SourcePosition,
)
from cdc_domain.mirror import MirrorState
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import SinkBatch
from tests.factories import table
from tests.integration.postgres.conftest import FAST_RETRY, fresh_names
from tests.integration.postgres.convergence import (
    CAPTURED,
    KEYS,
    RANGES,
    SCHEMA,
    ConcurrentWritersContract,
)


@pytest.fixture
def fresh_tables(postgres_database_dsn):
    """``fresh_tables()`` -> ``new_writer``: ``await new_writer()`` is one more sink on
    the same new tables, with its own pool."""

    def tables():
        schema, metadata = fresh_names()

        async def new_writer() -> PostgresSink:
            return PostgresSink(
                name="pg",
                dsn=postgres_database_dsn,
                schema=schema,
                metadata_schema=metadata,
                retry=FAST_RETRY,
                pool_max_size=2,
            )

        return new_writer

    return tables


class TestPostgresConcurrentWriters(ConcurrentWritersContract):
    pass


OTHER = table("other", keyspace="conv", partition={"id": "int"}, regular={"v": "int"})
NO_RETRY = RetryPolicy(attempts=1)


def _overlapping_stream(count: int, seed: int) -> list[ChangeEvent]:
    """Writes and row deletions over a few hundred rows of two tables and their static
    rows, each touched many times, and a rare partition or range deletion (which locks
    its table: if every batch had one, writers could not overlap). Batches then touch
    overlapping but different sets of rows, which is what deadlocks writers that lock
    rows in orders of their own."""
    rng = random.Random(seed)
    events = []
    for i in range(count):
        ts = rng.randrange(1, 10**6)
        pk, ck = rng.randrange(40), rng.choice(KEYS)
        roll = rng.random()
        common = {"timestamp_micros": ts, "captured_at": CAPTURED,
                  "position": SourcePosition(9, i), "partition_key": {"id": pk}}  # fmt: skip
        if roll < 0.25:
            events.append(ChangeEvent.create(
                operation=Operation.UPDATE, keyspace="conv", table="other",
                columns={"v": rng.randrange(100)}, **common))  # fmt: skip
        elif roll < 0.252:
            events.append(ChangeEvent.create(
                operation=Operation.DELETE, keyspace="conv", table="items",
                scope=DeletionScope.PARTITION, **common))  # fmt: skip
        elif roll < 0.254:
            start, end, inclusive = rng.choice(RANGES)
            bounds = ClusteringRange(
                ClusteringBound(start, inclusive[0]), ClusteringBound(end, inclusive[1])
            )
            events.append(ChangeEvent.create(
                operation=Operation.DELETE, keyspace="conv", table="items",
                scope=DeletionScope.RANGE, clustering_range=bounds, **common))  # fmt: skip
        elif roll < 0.45:
            events.append(ChangeEvent.create(
                operation=Operation.DELETE, keyspace="conv", table="items",
                scope=DeletionScope.ROW, clustering_key={"c1": ck[0], "c2": ck[1]},
                **common))  # fmt: skip
        elif roll < 0.55:
            events.append(ChangeEvent.create(
                operation=Operation.UPDATE, keyspace="conv", table="items", static=True,
                columns={"s": rng.choice("pq")}, **common))  # fmt: skip
        else:
            events.append(ChangeEvent.create(
                operation=Operation.INSERT, keyspace="conv", table="items",
                clustering_key={"c1": ck[0], "c2": ck[1]},
                columns={"a": rng.choice("xyz"), "b": rng.randrange(-5, 5)}, **common))  # fmt: skip
    return events


@pytest.mark.timeout(300)
async def test_three_writers_over_overlapping_rows_never_deadlock(postgres_database_dsn):
    """Three writers, each with the whole stream in an order of its own and batches of
    its own, write the same rows of two tables at once; without retries, so a single
    deadlock (or any other conflict between them) would fail its writer."""
    events = _overlapping_stream(4000, seed=5)
    schema, metadata = fresh_names()
    schemas = {SCHEMA.qualified_name: SCHEMA, OTHER.qualified_name: OTHER}
    sinks = [
        PostgresSink(name="pg", dsn=postgres_database_dsn, schema=schema,
                     metadata_schema=metadata, retry=NO_RETRY, pool_max_size=1)
        for _ in range(3)
    ]  # fmt: skip

    async def writer(node: int, sink: PostgresSink) -> None:
        order = random.Random(node).sample(events, len(events))
        size = 30 + 10 * node
        for start in range(0, len(order), size):
            part = tuple(order[start : start + size])
            checkpoint = Checkpoint(f"node{node}", SourcePosition(9, start), len(part))
            await sink.write(SinkBatch(part, schemas, checkpoint))

    try:
        await asyncio.gather(*(writer(n, s) for n, s in enumerate(sinks)))
        state = MirrorState()
        state.apply_all(events, schemas)
        for table_schema in schemas.values():
            assert await sinks[0].rows(table_schema) == state.rows(table_schema.qualified_name)
    finally:
        for sink in sinks:
            await sink.aclose()


@pytest.mark.parametrize(
    "error", [asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError]
)
async def test_a_deadlock_or_serialization_failure_is_retried(error):
    """Should a conflict between writers still happen (a writer of another design on
    the same tables, say), the transaction is tried again, not failed."""
    attempts = []

    async def conflicting_once() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise error("conflict")
        return "done"

    assert await with_retries(FAST_RETRY, conflicting_once, "write") == "done"
    assert len(attempts) == 2
