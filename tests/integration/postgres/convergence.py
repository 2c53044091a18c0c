"""Several writers, any order: the PostgreSQL and TimescaleDB mirrors against the rules.

Every deployment runs one agent per Cassandra node, so with replication factor 3 each
write reaches a mirror up to three times, from three processes, in any interleaving.
:class:`ConcurrentWritersContract` delivers a random stream (every kind of operation,
equal timestamps, TTLs, collections, statics, range deletions) through two or three
writers at once — separate sinks with their own pools, each given a shuffled copy with
duplicates — and asks the mirror's live view for exactly what the domain's rules
(:class:`~cdc_domain.mirror.MirrorState`) give for the set of events. It also checks
that data written with a TTL leaves the live view when it expires.

A subclass provides the fixture ``fresh_tables``: ``fresh_tables()`` names new, empty
tables and returns ``new_writer``, an async factory of sinks on them, each with a pool
of its own. It may override :meth:`after_batch` (the one-connection TimescaleDB server
needs each writer to let go of its connection between batches).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_domain.events import (
    ChangeEvent,
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
from tests.factories import table
from tests.support.waiting import eventually

SCHEMA = table(
    "items",
    keyspace="conv",
    partition={"id": "int"},
    clustering={"c1": "int", "c2": "text"},
    regular={
        "a": "text",
        "b": "int",
        "n": "varint",
        "fl": "frozen<list<int>>",
        "tags": "set<text>",
        "attrs": "map<text, int>",
        "log": "list<int>",
    },
    static={"s": "text"},
)
NAME = SCHEMA.qualified_name
CAPTURED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EXPIRED_TTL = 1
"""Timestamps here are a few microseconds after 1970: a one-second TTL has run out."""
LIVE_TTLS = (4_000_000_000, 5_000_000_000)
"""Expiring in 2096 and 2128: live now, and the later expiry wins a tie."""
CELLS = {
    "a": ["x", "y", "", None],
    "b": [-1, 0, 1, None],
    "n": [-1, 255, 256, None],
    "fl": [[1], [1, 2], [-1], None],
}
KEYS = [(1, "a"), (1, "b"), (2, "a")]
LIST_KEYS = [uuid.UUID(int=(i << 80) | (1 << 76) | i) for i in range(1, 4)]
RANGES = [
    ({"c1": 1}, {"c1": 1}, (True, True)),
    ({"c1": 1, "c2": "a"}, {}, (False, True)),
    ({}, {"c1": 2, "c2": "a"}, (True, False)),
    ({"c1": 1, "c2": "b"}, {"c1": 2}, (True, True)),
]
_positions = itertools.count(1)


def _event(pk: int, ck: tuple[int, str] | None, ts: int, **kwargs: Any) -> ChangeEvent:
    kwargs.setdefault("operation", Operation.UPDATE)
    return ChangeEvent.create(
        keyspace="conv",
        table="items",
        partition_key={"id": pk},
        clustering_key={"c1": ck[0], "c2": ck[1]} if ck else {},
        timestamp_micros=ts,
        captured_at=CAPTURED,
        position=SourcePosition(9, next(_positions)),
        **kwargs,
    )


def _delta(draw: st.DrawFn, column: str, ts: int) -> CollectionDelta:
    overwritten = draw(st.booleans())
    if column == "tags":
        kind, keys, values = "set", ["t1", "t2", "t3"], [None]
    elif column == "attrs":
        kind, keys, values = "map", ["k1", "k2"], [1, -1]
    else:
        kind, keys, values = "list", LIST_KEYS, [1, 2]
    written = draw(st.lists(st.sampled_from(keys), unique=True, max_size=2))
    elements = tuple(CollectionElement(k, draw(st.sampled_from(values)), ts) for k in written)
    removed = () if overwritten else tuple(draw(st.lists(st.sampled_from(keys), max_size=2)))
    if not elements and not removed and not overwritten:
        removed = (keys[0],)
    return CollectionDelta(kind, overwritten=overwritten, elements=elements, removed=removed)


KINDS = ["insert", "update", "row", "cells", "partition", "range", "static", "collection"]
TTLS = [None, EXPIRED_TTL, *LIVE_TTLS]


@st.composite
def changes(draw: st.DrawFn, like: ChangeEvent | None = None) -> ChangeEvent:
    """One change of any kind to a small space of rows. ``like`` makes it a rival: the
    same partition, row and timestamp, and half of the time a write of the same cells."""
    if like is None:
        ts = draw(st.integers(1, 8))
        pk = draw(st.sampled_from([1, 2]))
        ck = draw(st.sampled_from(KEYS))
        kind = draw(st.sampled_from(KINDS))
    else:
        ts, pk = like.timestamp_micros, like.partition_key["id"]
        ck = (
            (like.clustering_key["c1"], like.clustering_key["c2"])
            if like.clustering_key
            else draw(st.sampled_from(KEYS))
        )
        same = _kind_of(like) if draw(st.booleans()) else None
        kind = same or draw(st.sampled_from(KINDS))
    ttl = draw(st.sampled_from(TTLS))
    if kind in ("insert", "update"):
        if like is not None and like.scope is None and like.columns:
            names = [n for n in like.columns if n in CELLS]
        else:
            least = 0 if kind == "insert" else 1
            names = draw(st.lists(st.sampled_from(sorted(CELLS)), unique=True,
                                  min_size=least, max_size=3))  # fmt: skip
        columns = {n: draw(st.sampled_from(CELLS[n])) for n in names}
        if draw(st.integers(0, 3)) == 0:
            columns[draw(st.sampled_from(["tags", "attrs", "log"]))] = None
        operation = Operation.INSERT if kind == "insert" else Operation.UPDATE
        return _event(pk, ck, ts, operation=operation, columns=columns, ttl_seconds=ttl)
    if kind == "row":
        return _event(pk, ck, ts, operation=Operation.DELETE, scope=DeletionScope.ROW)
    if kind == "cells":
        names = draw(st.lists(st.sampled_from([*CELLS, "tags", "attrs", "log"]), min_size=1,
                              max_size=2, unique=True))  # fmt: skip
        return _event(pk, ck, ts, operation=Operation.DELETE, scope=DeletionScope.CELL,
                      deleted_columns=tuple(names))  # fmt: skip
    if kind == "partition":
        return _event(pk, None, ts, operation=Operation.DELETE, scope=DeletionScope.PARTITION)
    if kind == "range":
        start, end, inclusive = draw(st.sampled_from(RANGES))
        bounds = ClusteringRange(
            ClusteringBound(start, inclusive[0]), ClusteringBound(end, inclusive[1])
        )
        return _event(pk, None, ts, operation=Operation.DELETE, scope=DeletionScope.RANGE,
                      clustering_range=bounds)  # fmt: skip
    if kind == "static":
        if draw(st.integers(0, 3)) == 0:
            return _event(pk, None, ts, operation=Operation.DELETE, scope=DeletionScope.CELL,
                          deleted_columns=("s",), static=True)  # fmt: skip
        value = draw(st.sampled_from(["p", "q", None]))
        return _event(pk, None, ts, columns={"s": value}, static=True, ttl_seconds=ttl)
    if like is not None and like.collections:
        column = next(iter(like.collections))
    else:
        column = draw(st.sampled_from(["tags", "attrs", "log"]))
    return _event(pk, ck, ts, collections={column: _delta(draw, column, ts)}, ttl_seconds=ttl)


def _kind_of(event: ChangeEvent) -> str | None:
    """The kind of change that writes the cells ``event`` writes, if it writes any."""
    if event.static and event.columns:
        return "static"
    if event.collections:
        return "collection"
    if event.scope is None:
        return event.operation.value.lower()
    return None


@st.composite
def streams(draw: st.DrawFn) -> list[ChangeEvent]:
    """Changes, many with rivals: versions of one cell, marker or element at one
    timestamp, or a deletion at the very time of a write, which only Cassandra's
    tie-breaks tell apart."""
    base = draw(st.lists(changes(), min_size=1, max_size=12))
    rivals = draw(st.lists(st.sampled_from(base), max_size=12))
    return [*base, *(draw(changes(like=event)) for event in rivals)]


def expected(events: list[ChangeEvent]) -> dict[Any, Any]:
    """What Cassandra returns now after ``events``, in whatever order they came."""
    state = MirrorState()
    state.apply_all(events, {NAME: SCHEMA})
    return state.rows(NAME, now=dt.datetime.now(dt.UTC))


def deliveries(draw: st.DrawFn, events: list[ChangeEvent], node: int) -> list[SinkBatch]:
    """One writer's share: every event in an order of its own, some twice, in batches."""
    order = draw(st.permutations(events))
    repeats = draw(st.lists(st.sampled_from(events), max_size=3))
    delivered = [*order, *repeats]
    size = draw(st.integers(1, 3))
    return [
        SinkBatch(
            tuple(delivered[i : i + size]),
            {NAME: SCHEMA},
            Checkpoint(f"node{node}", SourcePosition(9, i), len(delivered[i : i + size])),
        )
        for i in range(0, len(delivered), size)
    ]


def _property_settings(examples: int) -> Any:
    """Hypothesis settings of both property tests: slow examples against a real server,
    each with fixtures built per test function."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


def converging_writers_test(examples: int) -> Any:
    """The property test, with its number of examples (a test class attribute)."""

    @pytest.mark.timeout(900)
    @_property_settings(examples)
    @given(events=streams(), data=st.data())
    async def test(self: Any, fresh_tables: Any, events: list[ChangeEvent], data: Any) -> None:
        new_writer = fresh_tables()
        writers = data.draw(st.integers(2, 3), label="writers")
        plans = [deliveries(data.draw, events, n) for n in range(writers)]
        sinks = [await new_writer() for _ in range(writers)]
        try:
            await asyncio.gather(
                *(self.run_writer(s, p) for s, p in zip(sinks, plans, strict=True))
            )
            assert await sinks[0].rows(SCHEMA) == expected(events)
        finally:
            for sink in sinks:
                await sink.aclose()

    return test


def one_batch_test(examples: int) -> Any:
    """The property for the batch fold alone: one writer, every event in one batch in
    any order (with several writers, another writer's delivery would hide a fold that
    picks the wrong version, since the statements settle ties correctly)."""

    @pytest.mark.timeout(900)
    @_property_settings(examples)
    @given(events=streams(), data=st.data())
    async def test(self: Any, fresh_tables: Any, events: list[ChangeEvent], data: Any) -> None:
        order = data.draw(st.permutations(events))
        repeats = data.draw(st.lists(st.sampled_from(events), max_size=3))
        delivered = (*order, *repeats)
        sink = await fresh_tables()()
        try:
            checkpoint = Checkpoint("node1", SourcePosition(9, 1), len(delivered))
            await sink.write(SinkBatch(delivered, {NAME: SCHEMA}, checkpoint))
            assert await sink.rows(SCHEMA) == expected(events)
        finally:
            await sink.aclose()

    return test


class ConcurrentWritersContract:
    """Mixin: writers at once, in any order, converge on the domain's state."""

    test_concurrent_writers_converge_on_the_rules = converging_writers_test(150)
    test_one_batch_in_any_order_folds_by_the_rules = one_batch_test(100)

    async def after_batch(self, sink: Any) -> None:
        """What a writer does between two batches (nothing, on a real server)."""

    async def run_writer(self, sink: Any, batches: list[SinkBatch]) -> None:
        for batch in batches:
            await sink.write(batch)
            await self.after_batch(sink)

    @pytest.mark.timeout(120)
    async def test_a_row_written_with_a_ttl_leaves_the_live_view_when_it_expires(
        self, fresh_tables
    ):
        """Cassandra hides a cell once its TTL has run out: rows written with a 2 s TTL
        are in the view, then gone; a permanent cell of another row stays, and so does
        a collection's element written without the TTL beside expiring ones."""
        now = (dt.datetime.now(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
            microseconds=1
        )
        expiring = [
            _event(1, KEYS[0], now, operation=Operation.INSERT, columns={"a": "x", "b": 1},
                   ttl_seconds=2),
            _event(1, KEYS[1], now, columns={"a": "kept"}),
            _event(1, KEYS[1], now + 1, columns={"b": 7}, ttl_seconds=2),
            _event(2, KEYS[0], now, collections={"tags": CollectionDelta("set", elements=(
                CollectionElement("stays", None, now),))}),
            _event(2, KEYS[0], now + 1, ttl_seconds=2, collections={"tags": CollectionDelta(
                "set", elements=(CollectionElement("goes", None, now + 1),))}),
            _event(2, None, now, columns={"s": "static"}, static=True, ttl_seconds=2),
        ]  # fmt: skip
        sink = await fresh_tables()()
        try:
            await sink.write(
                SinkBatch(
                    tuple(expiring), {NAME: SCHEMA}, Checkpoint("node1", SourcePosition(9, 1), 6)
                )
            )
            before = await sink.rows(SCHEMA)
            assert before[((1,), KEYS[0])] == {"a": "x", "b": 1}
            assert before[((2,), KEYS[0])] == {"tags": frozenset({"stays", "goes"}), "s": "static"}

            async def expired() -> bool:
                return ((1,), KEYS[0]) not in await sink.rows(SCHEMA)

            await eventually(expired, within=30, what="the 2 s TTL to expire")
            assert await sink.rows(SCHEMA) == {
                ((1,), KEYS[1]): {"a": "kept"},
                ((2,), KEYS[0]): {"tags": frozenset({"stays"})},
            }
            assert await sink.rows(SCHEMA) == expected(expiring)
        finally:
            await sink.aclose()
