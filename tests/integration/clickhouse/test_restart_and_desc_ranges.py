"""Two regressions of clustering tables: a writer that dies between its row insert and its
partition insert (the partition state must never land ahead of the rows it shows), and
range deletions on a table with a ``DESC`` clustering column (Cassandra's bounds follow
the clustering order: the start bound holds the larger value)."""

from __future__ import annotations

import contextlib

import attrs
import pytest

from cdc_domain.events import (
    ClusteringBound,
    ClusteringRange,
    DeletionScope,
    Operation,
    SourcePosition,
)
from cdc_domain.mirror import MirrorState
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import SinkBatch
from cdc_domain.schema import ClusteringOrder
from tests.factories import event, table

ORDERS = table(
    "orders",
    keyspace="restart",
    partition={"id": "int"},
    clustering={"n": "int"},
    regular={"status": "text", "amount": "int"},
    static={"tier": "text", "email": "text"},
)


def _order(op, key, n, ts, i, schema=ORDERS, **kwargs):
    wide = kwargs.get("static") or "clustering_range" in kwargs
    name = schema.clustering[0].name
    clustering = {} if wide or kwargs.get("scope") is DeletionScope.PARTITION else {name: n}
    return event(
        op, keyspace=schema.keyspace, table=schema.table, key=key, ts=ts,
        clustering_key=clustering, position=SourcePosition(5, i), **kwargs,
    )  # fmt: skip


def _batch(events, schema=ORDERS):
    return SinkBatch(
        tuple(events),
        {schema.qualified_name: schema},
        Checkpoint("node1", events[-1].position, len(events)),
    )


def _expected(events, schema=ORDERS):
    state = MirrorState()
    state.apply_all(events)
    return state.rows(schema.qualified_name)


FIRST = (  # rows and a static row, written in full by the first process
    *(_order(Operation.INSERT, 1, n, 10, n, columns={"status": "new", "amount": n})
      for n in (1, 2, 3)),
    _order(Operation.INSERT, 1, 0, 10, 4, columns={"tier": "silver", "email": "a@x"}, static=True),
    _order(Operation.INSERT, 2, 1, 10, 5, columns={"status": "new", "amount": 7}),
)  # fmt: skip
SECOND = (  # an unlogged batch: regular and static writes to one partition, and deletions
    _order(Operation.INSERT, 1, 4, 20, 6, columns={"status": "batched", "amount": 4}),
    _order(Operation.INSERT, 1, 5, 20, 7, columns={"status": "batched", "amount": 5}),
    _order(Operation.UPDATE, 1, 0, 20, 8, columns={"tier": "batched"}, static=True),
    _order(
        Operation.DELETE, 1, 0, 21, 9, scope=DeletionScope.RANGE,
        clustering_range=ClusteringRange(ClusteringBound({"n": 1}), ClusteringBound({"n": 2})),
    ),
    _order(Operation.DELETE, 2, 0, 22, 10, scope=DeletionScope.PARTITION),
)  # fmt: skip


class _Killed(Exception):
    """The process dies here: nothing after it runs."""


@pytest.mark.parametrize("dies_at_insert", [1, 2, 3])
@pytest.mark.parametrize("replay_size", [len(SECOND), 1])
async def test_a_writer_dying_between_its_inserts_converges_after_replay(
    make_sink, dies_at_insert, replay_size
):
    """The second batch needs a row insert and a partition insert; the writer dies at
    one of them (the first lands, the second does not) or after both. A new process,
    its cache empty, replays the batch: rows must show the new statics and lose the
    rows the deletions cover, whichever insert had landed."""
    sink, read_back = await make_sink()  # the state cache and the key filter are on
    await sink.write(_batch(FIRST))
    inserts = 0
    real_insert = sink._client.insert

    async def insert(*args, **kwargs):
        nonlocal inserts
        inserts += 1
        if inserts == dies_at_insert:
            raise _Killed
        return await real_insert(*args, **kwargs)

    sink._client.insert = insert  # type: ignore[method-assign]
    with contextlib.suppress(_Killed):
        await sink.write(_batch(SECOND))
    restarted, _ = await make_sink(database_prefix=sink.database_for(""))
    for i in range(0, len(SECOND), replay_size):
        await restarted.write(_batch(SECOND[i : i + replay_size]))
    assert await read_back(ORDERS) == _expected((*FIRST, *SECOND))


ITEMS = table(
    "items",
    keyspace="desc",
    partition={"id": "int"},
    clustering={"line": "int"},
    regular={"sku": "text"},
)
ITEMS = attrs.evolve(
    ITEMS,
    columns=tuple(
        attrs.evolve(c, clustering_order=ClusteringOrder.DESC) if c.name == "line" else c
        for c in ITEMS.columns
    ),
)


def _item(op, order, line, ts, i, **kwargs):
    return _order(op, order, line, ts, i, schema=ITEMS, **kwargs)


def _desc_range(order, ts, i, start, end, *, descending=("line",)):
    """``start``/``end`` as (value, inclusive) in Cassandra's DESC order (start >= end)."""
    rng = ClusteringRange(
        ClusteringBound({"line": start[0]} if start else {}, start[1] if start else True),
        ClusteringBound({"line": end[0]} if end else {}, end[1] if end else True),
        descending,
    )
    return _item(Operation.DELETE, order, 0, ts, i, scope=DeletionScope.RANGE, clustering_range=rng)


WRITES = tuple(
    _item(Operation.INSERT, order, line, 10, order * 10 + line, columns={"sku": f"s{line}"})
    for order in (1, 2, 3, 4)
    for line in range(1, 9)
)
DELETES = (
    _desc_range(1, 20, 100, (6, True), (3, False)),  # line > 3 AND line <= 6
    _desc_range(2, 20, 101, (6, False), (3, True)),  # line >= 3 AND line < 6
    _desc_range(3, 20, 102, None, (5, False)),  # line > 5
    _desc_range(4, 20, 103, (2, True), None),  # line <= 2
)


def test_the_reference_deletes_what_cassandra_deletes():
    rows = _expected((*WRITES, *DELETES), ITEMS)
    lines = {order: sorted(ck[0] for (pk, ck) in rows if pk == (order,)) for order in (1, 2, 3, 4)}
    assert lines == {
        1: [1, 2, 3, 7, 8],
        2: [1, 2, 6, 7, 8],
        3: [1, 2, 3, 4, 5],
        4: [3, 4, 5, 6, 7, 8],
    }


@pytest.mark.parametrize("carries_descending", [True, False])
@pytest.mark.parametrize("together", [True, False])
async def test_range_deletions_follow_a_desc_clustering_order(
    make_sink, carries_descending, together
):
    """Whether or not the event's range names its DESC columns (ranges stored before
    it did have no ``descending``), the table's clustering order decides; rows written
    under the tombstones later stay hidden, rows written after it show."""
    sink, read_back = await make_sink()
    deletes = DELETES
    if not carries_descending:
        deletes = tuple(
            attrs.evolve(e, clustering_range=attrs.evolve(e.clustering_range, descending=()))
            for e in DELETES
        )
    late = (
        _item(Operation.INSERT, 1, 5, 15, 200, columns={"sku": "late, under the range"}),
        _item(Operation.INSERT, 2, 4, 25, 201, columns={"sku": "after the range"}),
    )
    history = (*WRITES, *deletes, *late)
    if together:
        await sink.write(_batch(history, ITEMS))
    else:
        for chunk in (WRITES, deletes, late):
            await sink.write(_batch(chunk, ITEMS))
    assert await read_back(ITEMS) == _expected((*WRITES, *DELETES, *late), ITEMS)
