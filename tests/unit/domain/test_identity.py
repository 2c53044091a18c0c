"""Write ids: one per Cassandra write, whichever node's copy of it was read."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import uuid
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
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
from cdc_domain.identity import write_id
from cdc_domain.values import UdtValue
from tests.factories import event, replica_copy
from tests.strategies import aware_datetimes, change_events, positions


def _streamed(position: SourcePosition) -> SourcePosition:
    return attrs.evolve(position, snapshot=None)


# What the commit log gives: events and positions of no snapshot.
streamed_events = change_events().map(lambda e: attrs.evolve(e, position=_streamed(e.position)))
stream_positions = positions.map(_streamed)


@given(streamed_events, stream_positions, stream_positions, aware_datetimes)
def test_every_replicas_copy_of_a_write_has_its_id(original, here, there, captured):
    copies = [replica_copy(original, "n2", here, captured), replica_copy(original, "n3", there)]
    assert {write_id(c) for c in copies} == {write_id(original)}


def _other_value(value):
    return ("not", value)


MUTATIONS = {
    "timestamp": lambda e: attrs.evolve(e, timestamp_micros=e.timestamp_micros + 1),
    "keyspace": lambda e: attrs.evolve(e, keyspace=e.keyspace + "x"),
    "table": lambda e: attrs.evolve(e, table=e.table + "x"),
    "partition key": lambda e: attrs.evolve(
        e, partition_key={n: _other_value(v) for n, v in e.partition_key.items()}
    ),
    "clustering key": lambda e: attrs.evolve(
        e, static=False, clustering_key={**e.clustering_key, "zz_ck": 1}
    ),
    "static": lambda e: attrs.evolve(e, static=not e.static, clustering_key={}),
    "a column set to null": lambda e: attrs.evolve(e, columns={**e.columns, "zz_col": None}),
    "a column's value": lambda e: attrs.evolve(e, columns={**e.columns, "zz_col": 1}),
    "a deleted column": lambda e: attrs.evolve(e, deleted_columns=(*e.deleted_columns, "zz_gone")),
    "ttl": lambda e: attrs.evolve(e, ttl_seconds=(e.ttl_seconds or 0) + 1),
    "expiry": lambda e: attrs.evolve(
        e,
        expires_at=(e.expires_at or dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        + dt.timedelta(seconds=1),
    ),
    "operation": lambda e: attrs.evolve(
        e,
        operation=Operation.UPDATE if e.operation is Operation.INSERT else Operation.INSERT,
        scope=None,
        clustering_range=None,
    ),
    "scope": lambda e: attrs.evolve(
        e,
        operation=Operation.DELETE,
        scope=DeletionScope.PARTITION if e.scope is DeletionScope.ROW else DeletionScope.ROW,
    ),
    "range": lambda e: attrs.evolve(
        e,
        clustering_range=ClusteringRange(
            ClusteringBound({"zz_ck": 1}, inclusive=False), ClusteringBound()
        ),
    ),
    "a collection element": lambda e: attrs.evolve(
        e,
        collections={
            **e.collections,
            "zz_set": CollectionDelta("set", elements=(CollectionElement("x", None, 1),)),
        },
    ),
    "a counter total": lambda e: attrs.evolve(e, counter_totals={**e.counter_totals, "zz_hits": 1}),
    "a counter increment": lambda e: attrs.evolve(e, counters={**e.counters, "zz_hits": 1}),
}


@given(streamed_events, st.sampled_from(sorted(MUTATIONS)))
def test_any_change_to_what_was_written_makes_another_write(original, mutation):
    changed = MUTATIONS[mutation](original)
    assert changed != original
    assert write_id(changed) != write_id(original)


def _read_by_snapshot(e: ChangeEvent, name: str = "s1") -> ChangeEvent:
    return attrs.evolve(e, position=SourcePosition(-1, 3, 0, name))


def _less_ttl(e: ChangeEvent) -> ChangeEvent:
    """The same cells read later: every TTL lower, the expiry a second off."""
    collections = {
        name: attrs.evolve(
            delta,
            elements=tuple(
                attrs.evolve(x, ttl_seconds=x.ttl_seconds and x.ttl_seconds + 7)
                for x in delta.elements
            ),
        )
        for name, delta in e.collections.items()
    }
    expires = e.expires_at and e.expires_at + dt.timedelta(seconds=1)
    return attrs.evolve(
        e,
        ttl_seconds=e.ttl_seconds and e.ttl_seconds + 7,
        expires_at=expires,
        collections=collections,
    )


@given(streamed_events, stream_positions)
def test_a_snapshots_reading_of_a_write_is_not_the_write(original, here):
    """A history keeps both: what the stream saw written, and what a snapshot found."""
    read = _read_by_snapshot(original)
    assert write_id(read) != write_id(original)
    assert write_id(_read_by_snapshot(replica_copy(original, "n2", here))) == write_id(read)


@given(streamed_events, st.sampled_from(sorted(set(MUTATIONS) - {"ttl", "expiry"})))
def test_a_snapshots_reading_is_named_by_what_it_read_but_its_ttls(original, mutation):
    """Read again later (a resumed range, another snapshot), the same cells have less
    TTL left: the same reading. Any other difference is another one."""
    read = _read_by_snapshot(original)
    again = _read_by_snapshot(_less_ttl(original), name="s2")
    assert write_id(again) == write_id(read)
    assert write_id(_read_by_snapshot(MUTATIONS[mutation](original))) != write_id(read)


def test_distinct_writes_have_distinct_ids():
    writes = [
        event(key=key, ts=ts, columns={"status": status})
        for key, ts, status in itertools.product((1, 2), (10, 11), ("a", "b", None))
    ]
    writes.append(event(key=1, ts=10))
    assert len({write_id(w) for w in writes}) == len(writes)


SAME_IN_PYTHON = [
    1,
    1.0,
    True,
    "1",
    b"1",
    Decimal("1"),
    Decimal("1.0"),
    [1],
    (1,),
    frozenset({1}),
    {"a": 1},
    {1: 1},
    UdtValue((("a", 1),)),
    uuid.UUID(int=1),
    None,
]


def test_values_count_by_their_type_not_by_python_equality():
    ids = {write_id(event(columns={"status": value})) for value in SAME_IN_PYTHON}
    assert len(ids) == len(SAME_IN_PYTHON)


def test_a_counters_increment_does_not_count_where_its_total_is_known():
    """The increment is the reader's arithmetic: one that resumed past the shard's
    previous total leaves it out, and its copy is still the same write."""
    known = event(counters={"hits": 2}, counter_totals={"hits": 7})
    unknown = attrs.evolve(known, counters={})
    assert write_id(known) == write_id(unknown)
    assert write_id(attrs.evolve(known, counter_totals={"hits": 8})) != write_id(known)
    alone = event(counters={"hits": 2})
    assert write_id(alone) != write_id(attrs.evolve(alone, counters={"hits": 3}))


def test_a_value_without_a_json_form_still_gets_an_id():
    """Dead letters are made of whatever failed; building one must not fail too."""
    odd = event(columns={"status": dt.datetime(2026, 1, 1)})  # noqa: DTZ001 - the point
    assert write_id(odd) == write_id(replica_copy(odd, "n2", SourcePosition(9, 9)))


_IN_A_FRESH_PROCESS = """
import datetime as dt
from cdc_domain.events import ChangeEvent, CollectionDelta, CollectionElement, Operation
from cdc_domain.events import SourcePosition
from cdc_domain.identity import write_id
names = [f"name{i}" for i in range(40)]
print(write_id(ChangeEvent.create(
    operation=Operation.UPDATE, keyspace="k", table="t", partition_key={"id": 1},
    columns={"tags": frozenset(names), "by": {frozenset(names[:3]): 1, "x": 2}},
    collections={"s": CollectionDelta("set", elements=tuple(
        CollectionElement(n, None, 5) for n in names))},
    timestamp_micros=5, captured_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    position=SourcePosition(1, 1),
)))
"""


def test_the_id_does_not_depend_on_the_process_hash_seed():
    """Each node's agent is its own process, with its own string hash seed, and a
    set's iteration order follows it."""
    found = set()
    for seed in ("1", "2", "3"):
        result = subprocess.run(
            [sys.executable, "-c", _IN_A_FRESH_PROCESS],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        found.add(result.stdout.strip())
    assert len(found) == 1


@pytest.mark.parametrize("field", ["event_id", "position", "captured_at"])
def test_what_only_the_reading_node_knows_is_not_part_of_the_write(field):
    original: ChangeEvent = event(columns={"status": "a"})
    other = {
        "event_id": "elsewhere:1:2:3",
        "position": SourcePosition(99, 1),
        "captured_at": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    }
    assert write_id(attrs.evolve(original, **{field: other[field]})) == write_id(original)


def test_a_list_shaped_like_a_tagged_value_is_not_that_value():
    lookalikes = [frozenset({1}), ["$set", [1]], ("$set", (1,)), {"$set": [1]}, [[1]], [(1,)]]
    ids = {write_id(event(columns={"status": value})) for value in lookalikes}
    assert len(ids) == len(lookalikes)
