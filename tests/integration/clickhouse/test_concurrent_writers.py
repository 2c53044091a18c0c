"""Several agents write the same events, each in its own order, at the same time: the
mirror ends equal to the reference state of the set of events (issue: sinks that
converge with several writers and in any order).

Every Cassandra write reaches the mirror up to three times (replication factor 3, one
agent per node), interleaved, and a node may replay a write late. So each writer here
is a separate sink with its own shuffled copy of a random stream (with duplicates),
and the writers run concurrently. The stream mixes every operation the mirror knows:
inserts (row markers), updates, cell and row deletions, partition and range deletions
(on a table with a DESC clustering column), static cells, set, map and list elements
with their own removals and overwrites, TTLs that already expired or will not before
the check, and timestamps drawn from a handful so that ties are frequent, settled by
Cassandra's rule (deletion, then expiry, then value bytes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from cdc_domain.schema import ClusteringOrder
from tests.factories import CAPTURED, table
from tests.support.waiting import eventually

_TABLE = table(
    "readings",
    keyspace="writers",
    partition={"id": "int"},
    clustering={"day": "int", "seq": "text"},
    regular={
        "v": "text",
        "n": "int",
        "x": "double",
        "f": "frozen<list<int>>",
        "tags": "set<text>",
        "attrs": "map<text, int>",
        "log": "list<text>",
    },
    static={"owner": "text", "labels": "set<text>"},
)
SCHEMA = attrs.evolve(
    _TABLE,
    columns=tuple(
        attrs.evolve(c, clustering_order=ClusteringOrder.DESC) if c.name == "day" else c
        for c in _TABLE.columns
    ),
)
NOW = dt.datetime.now(dt.UTC)
BASE = int(NOW.timestamp() * 1_000_000)
STAMPS = [BASE + i * 1000 for i in range(4)]  # few timestamps: frequent ties
EXPIRIES = [None, None, NOW - dt.timedelta(days=2), NOW - dt.timedelta(days=1),
            NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=2)]  # fmt: skip
TEXTS = ["", "a", "b"]
INTS = [-1, 0, 1]
DOUBLES = [-0.0, 0.0, 1.5]
LIST_KEYS = [uuid.UUID(int=(t << 80) | (1 << 76) | n) for t in (1, 2) for n in (1, 2)]

ids = st.sampled_from([1, 2])
days = st.sampled_from([1, 2, 3])
seqs = st.sampled_from(["a", "b"])
stamps = st.sampled_from(STAMPS)
expiries = st.sampled_from(EXPIRIES)
REGULAR = {
    "v": st.sampled_from([None, *TEXTS]),
    "n": st.sampled_from([None, *INTS]),
    "x": st.sampled_from([None, *DOUBLES]),
    "f": st.sampled_from([None, [1], [1, 2], [-1]]),
}


@st.composite
def deltas(draw: st.DrawFn, column: str, ts: int) -> CollectionDelta:
    overwritten = draw(st.booleans())
    element_ts = draw(st.sampled_from([ts, *STAMPS]))
    if column == "attrs":
        kind, keys = "map", draw(st.lists(st.sampled_from(TEXTS), max_size=2, unique=True))
        values = [draw(st.sampled_from(INTS)) for _ in keys]
    elif column == "log":
        kind, keys = "list", draw(st.lists(st.sampled_from(LIST_KEYS), max_size=2, unique=True))
        values = [draw(st.sampled_from(TEXTS)) for _ in keys]
    else:
        kind, keys = "set", draw(st.lists(st.sampled_from(TEXTS), max_size=2, unique=True))
        values = [None for _ in keys]
    pool = LIST_KEYS if kind == "list" else TEXTS
    removed = () if overwritten else tuple(draw(st.lists(st.sampled_from(pool), max_size=1)))
    elements = tuple(CollectionElement(k, v, element_ts) for k, v in zip(keys, values, strict=True))
    return CollectionDelta(kind, overwritten, elements, removed)


@st.composite
def events(draw: st.DrawFn, index: int):
    kind = draw(st.sampled_from(["insert", "update", "update", "cells", "row", "partition",
                                 "range", "static", "static"]))  # fmt: skip
    ts, expires = draw(stamps), draw(expiries)
    common = {
        "keyspace": "writers",
        "table": "readings",
        "partition_key": {"id": draw(ids)},
        "timestamp_micros": ts,
        "captured_at": CAPTURED,
        "position": SourcePosition(1, index),
    }
    clustering = {"day": draw(days), "seq": draw(seqs)}
    if kind in ("insert", "update"):
        names = draw(st.lists(st.sampled_from(list(REGULAR)), max_size=3, unique=True))
        multicell = st.lists(st.sampled_from(["tags", "attrs", "log"]), max_size=2, unique=True)
        collections = {c: draw(deltas(c, ts)) for c in draw(multicell)}
        return _create(
            Operation.INSERT if kind == "insert" else Operation.UPDATE,
            common,
            clustering_key=clustering,
            columns={n: draw(REGULAR[n]) for n in names},
            collections=collections,
            local_expiry=expires,
        )
    if kind == "cells":
        names = st.sampled_from([*REGULAR, "tags", "log"])
        deleted = draw(st.lists(names, min_size=1, max_size=2, unique=True))
        return _create(Operation.DELETE, common, clustering_key=clustering,
                       scope=DeletionScope.CELL, deleted_columns=tuple(deleted))  # fmt: skip
    if kind == "row":
        return _create(Operation.DELETE, common, clustering_key=clustering, scope=DeletionScope.ROW)
    if kind == "partition":
        return _create(Operation.DELETE, common, scope=DeletionScope.PARTITION)
    if kind == "range":
        return _create(Operation.DELETE, common, scope=DeletionScope.RANGE,
                       clustering_range=draw(ranges()))  # fmt: skip
    columns = {"owner": draw(st.sampled_from([None, *TEXTS]))} if draw(st.booleans()) else {}
    labels = {"labels": draw(deltas("labels", ts))} if draw(st.booleans()) or not columns else {}
    return _create(Operation.UPDATE, common, static=True, columns=columns, collections=labels,
                   local_expiry=expires)  # fmt: skip


@st.composite
def ranges(draw: st.DrawFn) -> ClusteringRange:
    def bound() -> ClusteringBound:
        size = draw(st.integers(0, 2))
        values = {"day": draw(days), "seq": draw(seqs)}
        return ClusteringBound(dict(list(values.items())[:size]), draw(st.booleans()))

    return ClusteringRange(bound(), bound(), ("day",))


def _create(operation: Operation, common: dict, **kwargs):
    from cdc_domain.events import ChangeEvent

    return ChangeEvent.create(operation=operation, **common, **kwargs)


streams = st.integers(1, 30).flatmap(lambda n: st.tuples(*(events(i) for i in range(n))).map(list))


def _expected(stream) -> dict:
    state = MirrorState()
    state.apply_all(stream, {SCHEMA.qualified_name: SCHEMA})
    return state.rows(SCHEMA.qualified_name, now=dt.datetime.now(dt.UTC))


def _deliveries(stream, seed: int) -> list[list]:
    """One writer's batches: the stream shuffled, a few events twice, in batches of 1-5."""
    rng = random.Random(seed)
    copy = [*stream, *rng.sample(stream, k=min(len(stream), rng.randrange(4)))]
    rng.shuffle(copy)
    batches, i = [], 0
    while i < len(copy):
        size = rng.randrange(1, 6)
        batches.append(copy[i : i + size])
        i += size
    return batches


async def _write(sink, batches) -> None:
    for events_ in batches:
        checkpoint = Checkpoint("node", events_[-1].position, len(events_))
        await sink.write(SinkBatch(tuple(events_), {SCHEMA.qualified_name: SCHEMA}, checkpoint))
        await asyncio.sleep(0)


@pytest.mark.timeout(900)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams, writers=st.integers(2, 3), seed=st.integers(0, 2**16))
async def test_concurrent_writers_in_any_order_converge(make_sink, stream, writers, seed):
    first, read_back = await make_sink()
    sinks = [first]
    for _ in range(writers - 1):
        other, _ = await make_sink(database_prefix=first.database_for(""))
        sinks.append(other)
    await asyncio.gather(
        *(_write(sink, _deliveries(stream, seed + i)) for i, sink in enumerate(sinks))
    )
    assert await read_back(SCHEMA) == _expected(stream)


async def test_rows_written_with_a_ttl_disappear_from_the_view_once_it_runs_out(make_sink):
    """2 s after its write, a row written with TTL 2 is gone from the current-state view,
    and not before; a row without TTL stays, without its cell written with one.

    Expiry is kept in whole seconds, as Cassandra's local deletion time is, so the write
    timestamp here is the next whole second: the expiry is then exactly write time + TTL."""
    sink, read_back = await make_sink()
    now = (int(dt.datetime.now(dt.UTC).timestamp()) + 1) * 1_000_000
    common = {"keyspace": "writers", "table": "readings", "captured_at": CAPTURED}
    stream = [
        _create(Operation.INSERT, {**common, "timestamp_micros": now,
                                   "position": SourcePosition(2, 1), "partition_key": {"id": 1}},
                clustering_key={"day": 1, "seq": "a"}, columns={"v": "brief"}, ttl_seconds=2),
        _create(Operation.INSERT, {**common, "timestamp_micros": now,
                                   "position": SourcePosition(2, 2), "partition_key": {"id": 1}},
                clustering_key={"day": 2, "seq": "a"}, columns={"v": "kept"}),
        _create(Operation.UPDATE, {**common, "timestamp_micros": now,
                                   "position": SourcePosition(2, 3), "partition_key": {"id": 1}},
                clustering_key={"day": 2, "seq": "a"}, columns={"n": 7}, ttl_seconds=2),
    ]  # fmt: skip
    await _write(sink, [stream])
    before = await read_back(SCHEMA)
    assert before == {
        ((1,), (1, "a")): {"v": "brief"},
        ((1,), (2, "a")): {"v": "kept", "n": 7},
    }

    async def expired() -> bool:
        return await read_back(SCHEMA) == {((1,), (2, "a")): {"v": "kept"}}

    await eventually(expired, within=10, what="the rows written with TTL 2 expire")
    assert dt.datetime.now(dt.UTC).timestamp() >= now / 1_000_000 + 2
    assert _expected(stream) == {((1,), (2, "a")): {"v": "kept"}}


async def test_a_purge_deletes_what_has_been_dead_long_enough_and_nothing_else(
    make_sink, server_url
):
    """With ``purge_expired_after``, rows expired or deleted longer ago than that are
    deleted from the tables (not only hidden by the view); live ones, and dead ones
    newer than that, stay."""
    sink, read_back = await make_sink(purge_expired_after=5)
    now = dt.datetime.now(dt.UTC)
    old = int((now - dt.timedelta(minutes=10)).timestamp() * 1_000_000)
    recent = int(now.timestamp() * 1_000_000)

    def at(ts, day, **kwargs):
        common = {"keyspace": "writers", "table": "readings", "captured_at": CAPTURED,
                  "timestamp_micros": ts, "position": SourcePosition(3, day),
                  "partition_key": {"id": 1}}  # fmt: skip
        kwargs.setdefault("clustering_key", {"day": day, "seq": "a"})
        return _create(kwargs.pop("operation", Operation.INSERT), common, **kwargs)

    stream = [
        at(old, 1, columns={"v": "expired long ago"}, local_expiry=now - dt.timedelta(minutes=9)),
        at(old, 2, columns={"v": "deleted long ago"}),
        at(old + 1, 2, operation=Operation.DELETE, scope=DeletionScope.ROW),
        at(old, 3, columns={"v": "live"}),
        at(recent, 4, columns={"v": "just deleted"}),
        at(recent + 1, 4, operation=Operation.DELETE, scope=DeletionScope.ROW),
        at(old, 5, collections={"tags": CollectionDelta("set", elements=(
            CollectionElement("kept", None, old),))}),
    ]  # fmt: skip
    await _write(sink, [stream])
    database = sink.database_for("writers")

    async def days() -> list[int]:
        rows = await _query(server_url, f"SELECT day FROM `{database}`.readings__cdc_rows")
        return sorted(int(day) for (day,) in rows)

    await eventually(lambda: _purged(days), within=30, what="the purge")
    assert await days() == [3, 4, 5]
    assert await read_back(SCHEMA) == _expected(stream)


async def _purged(days) -> bool:
    return await days() == [3, 4, 5]


async def _query(url: str, sql: str) -> list[list[str]]:
    from cdc_adapters.clickhouse import ClickHouseClient

    client = ClickHouseClient(url)
    try:
        return await client.select(sql)
    finally:
        await client.aclose()
