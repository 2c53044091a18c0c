"""Cassandra's rules as the PostgreSQL mirror applies them, beyond the contract's table:
clustering ranges, partitions, static columns and collections element by element,
checked against the reference state (``MirrorState``)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_domain.events import CollectionDelta, DeletionScope, Operation
from cdc_domain.mirror import MirrorState
from tests.integration.postgres.mirror_model import (
    ITEMS,
    QUALIFIED,
    batch_of,
    ev,
    list_append,
    map_put,
    range_delete,
    reference,
    set_add,
    set_remove,
)
from tests.support.waiting import eventually

U, INS, D = Operation.UPDATE, Operation.INSERT, Operation.DELETE


@pytest.fixture
async def mirror(make_pg_sink):
    sink, _ = await make_pg_sink(QUALIFIED)
    yield sink
    await sink.aclose()


async def deliver(sink, *batches):
    for events in batches:
        await sink.write(batch_of(list(events)))
    return await sink.rows(QUALIFIED)


async def test_a_late_column_write_neither_undoes_a_newer_one_nor_clobbers_others(mirror):
    newer_a = ev(U, 1, (1, "x"), 5, columns={"a": "five"})
    newer_b = ev(U, 1, (1, "x"), 7, columns={"b": 7})
    late = ev(U, 1, (1, "x"), 3, columns={"a": "three", "b": 3})
    rows = await deliver(mirror, [newer_a, newer_b], [late])
    assert rows == {((1,), (1, "x")): {"a": "five", "b": 7}}


async def test_a_deletion_wins_a_timestamp_tie(mirror):
    events = [ev(U, 1, (1, "x"), 5, columns={"a": "v"}), ev(D, 1, (1, "x"), 5)]
    assert await deliver(mirror, events[1:], events[:1]) == {}


async def test_a_partition_deletion_covers_rows_written_before_it_even_when_late(mirror):
    before = ev(INS, 2, (1, "x"), 4, columns={"a": "old"})
    after = ev(INS, 2, (2, "y"), 12, columns={"a": "new"})
    drop = ev(D, 2, None, 10, scope=DeletionScope.PARTITION)
    static_old = ev(U, 2, None, 3, columns={"s": "gone"}, static=True)
    rows = await deliver(mirror, [drop], [after, before, static_old])
    assert rows == reference([before, after, drop, static_old])
    assert rows == {((2,), (2, "y")): {"a": "new"}}


@pytest.mark.parametrize(
    ("start", "end", "inclusive"),
    [
        ({"c1": 1}, {"c1": 1}, (True, True)),
        ({"c1": 1, "c2": "b"}, {}, (False, True)),
        ({}, {"c1": 2, "c2": "b"}, (True, False)),
        ({"c1": 1, "c2": "a"}, {"c1": 2}, (True, True)),
    ],
)
async def test_range_deletions_cover_exactly_their_bounds(mirror, start, end, inclusive):
    writes = [
        ev(INS, 3, (c1, c2), 5, columns={"b": c1 * 10 + i})
        for i, (c1, c2) in enumerate([(1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (3, "a")])
    ]
    late = [ev(U, 3, (1, "c"), 6, columns={"a": "newer than the range"})]
    cut = range_delete(3, 6, start, end, inclusive)
    rows = await deliver(mirror, [cut], writes[:3], writes[3:] + late)
    assert rows == reference([*writes, *late, cut])


async def test_static_columns_show_on_every_row_and_alone(mirror):
    events = [
        ev(U, 4, None, 5, columns={"s": "shared"}, static=True),
        ev(INS, 4, (1, "x"), 6, columns={"a": "one"}),
        ev(INS, 4, (2, "y"), 6, columns={"a": "two"}),
        ev(U, 5, None, 5, columns={"s": "alone"}, static=True),
    ]
    rows = await deliver(mirror, events[2:], events[:2])
    assert rows == reference(events)
    assert rows[((5,), ())] == {"s": "alone"}


async def test_collection_elements_apply_in_any_order(mirror):
    events = [
        ev(U, 6, (1, "x"), 10, collections={"tags": set_add(10, "a", "b")}),
        ev(U, 6, (1, "x"), 11, collections={"tags": set_add(11, "c")}),
        ev(U, 6, (1, "x"), 12, collections={"tags": set_remove("a")}),
        ev(U, 6, (1, "x"), 13, collections={"attrs": map_put(13, x=1, y=2)}),
        ev(U, 6, (1, "x"), 14, collections={"log": list_append(14, 1, 2)}),
        ev(U, 6, (1, "x"), 15, collections={"log": list_append(15, 3)}),
    ]
    # Different elements in any order; the one removed is removed after it was added.
    rows = await deliver(mirror, [events[5], events[1]], [events[0], events[4]], events[2:4])
    assert rows == reference(events)
    assert rows[((6,), (1, "x"))]["log"] == [1, 2, 3]


async def test_an_overwrite_replaces_a_collection_and_hides_older_elements(mirror):
    replaced = CollectionDelta("set", overwritten=True, elements=set_add(20, "only").elements)
    overwrite = ev(U, 7, (1, "x"), 20, collections={"tags": replaced})
    older_add = ev(U, 7, (1, "x"), 15, collections={"tags": set_add(15, "stale")})
    newer_add = ev(U, 7, (1, "x"), 25, collections={"tags": set_add(25, "fresh")})
    rows = await deliver(mirror, [overwrite], [older_add], [newer_add])
    assert rows == reference([older_add, overwrite, newer_add])
    assert rows[((7,), (1, "x"))]["tags"] == frozenset({"only", "fresh"})


async def test_an_overwrite_arriving_after_a_newer_element_change_keeps_it(mirror):
    """Elements are cells of their own: the overwrite's tombstone (at 19) hides only the
    elements older than it, so "fresh" (25) stays, as in Cassandra."""
    replaced = CollectionDelta("set", overwritten=True, elements=set_add(20, "only").elements)
    overwrite = ev(U, 7, (1, "x"), 20, collections={"tags": replaced})
    newer_add = ev(U, 7, (1, "x"), 25, collections={"tags": set_add(25, "fresh")})
    rows = await deliver(mirror, [newer_add], [overwrite])
    assert rows == reference([overwrite, newer_add])
    assert rows[((7,), (1, "x"))]["tags"] == frozenset({"only", "fresh"})


async def test_a_late_older_change_to_the_same_element_loses_to_the_newer_one(mirror):
    """Each element keeps its own timestamp: a removal at 20 arriving after an add at 30
    of the same element changes nothing, as in Cassandra."""
    added = ev(U, 8, (1, "x"), 30, collections={"tags": set_add(30, "a", "b")})
    older_removal = ev(U, 8, (1, "x"), 20, collections={"tags": set_remove("a")})
    rows = await deliver(mirror, [added], [older_removal])
    assert rows == reference([older_removal, added])
    assert rows[((8,), (1, "x"))]["tags"] == frozenset({"a", "b"})


@pytest.mark.parametrize("deletion_first", [True, False])
async def test_a_row_deletion_between_elements_hides_exactly_the_older_ones(mirror, deletion_first):
    """A row deletion at 20 hides the elements written before it and no other, whatever
    arrives first: the map keeps y (30) and loses x (10), the list keeps 3 (30)."""
    older = ev(U, 9, (1, "x"), 10, collections={
        "attrs": map_put(10, x=1), "log": list_append(10, 1, 2)})  # fmt: skip
    newer = ev(U, 9, (1, "x"), 30, collections={
        "attrs": map_put(30, y=2), "log": list_append(30, 3)})  # fmt: skip
    deletion = ev(D, 9, (1, "x"), 20)
    batches = [[deletion], [newer, older]] if deletion_first else [[older], [newer], [deletion]]
    rows = await deliver(mirror, *batches)
    assert rows == reference([older, newer, deletion])
    assert rows[((9,), (1, "x"))] == {"attrs": {"y": 2}, "log": [3]}


LIVE_TTL, LATER_TTL = 4_000_000_000, 5_000_000_000  # expiring in 2096 and 2128
ORDERS = ["together", "together, reversed", "apart", "apart, reversed"]


def in_order(how, first, second):
    """Two events delivered in one of four ways: one batch or two, either order."""
    pair = [first, second] if "reversed" not in how else [second, first]
    return [pair] if how.startswith("together") else [[pair[0]], [pair[1]]]


def _set(ts, value, ttl=None, column="a"):
    return ev(U, 10, (1, "x"), ts, columns={column: value}, ttl_seconds=ttl)


TIES = {
    # Equal timestamps, one cell: an expiring version beats a plain one, the later
    # expiry beats the earlier, a tombstone beats an expiring version; the value last.
    "expiring beats plain": (_set(5, "a", LIVE_TTL), _set(5, "z"), {"a": "a"}),
    "later expiry wins": (_set(5, "a", LATER_TTL), _set(5, "z", LIVE_TTL), {"a": "a"}),
    "tombstone beats expiring": (_set(5, None), _set(5, "z", LIVE_TTL), None),
    "greater int bytes": (_set(5, -1, column="b"), _set(5, 1, column="b"), {"b": -1}),
    # Row markers: the later expiry wins (an expired marker would hide the row).
    "marker, later expiry": (
        ev(INS, 10, (1, "x"), 5, ttl_seconds=LIVE_TTL),
        ev(INS, 10, (1, "x"), 5, ttl_seconds=1),
        {},
    ),
    "marker, expiring beats plain": (
        ev(INS, 10, (1, "x"), 5, ttl_seconds=1),
        ev(INS, 10, (1, "x"), 5),
        None,
    ),
    # Elements: a removal beats an add; the greater serialized value wins.
    "element removal beats add": (
        ev(U, 10, (1, "x"), 5, collections={"tags": set_remove("e")}),
        ev(U, 10, (1, "x"), 5, collections={"tags": set_add(5, "e", "f")}),
        {"tags": frozenset({"f"})},
    ),
    "element, greater value": (
        ev(U, 10, (1, "x"), 5, collections={"attrs": map_put(5, k=-1)}),
        ev(U, 10, (1, "x"), 5, collections={"attrs": map_put(5, k=1)}),
        {"attrs": {"k": -1}},
    ),
    "element, expiring beats plain": (
        ev(U, 10, (1, "x"), 5, ttl_seconds=1, collections={"attrs": map_put(5, k=1)}),
        ev(U, 10, (1, "x"), 5, collections={"attrs": map_put(5, k=2, j=3)}),
        {"attrs": {"j": 3}},
    ),
    # A deletion at the very time of a write hides it, at every level.
    "row deletion at the same time": (ev(D, 10, (1, "x"), 5), _set(5, "z"), None),
    "range deletion at the same time": (
        range_delete(10, 5, {"c1": 1}, {"c1": 1}),
        _set(5, "z"),
        None,
    ),
    "partition deletion at the same time": (
        ev(D, 10, None, 5, scope=DeletionScope.PARTITION),
        _set(5, "z"),
        None,
    ),
    "collection deletion at the same time": (
        ev(D, 10, (1, "x"), 5, scope=DeletionScope.CELL, deleted_columns=("tags",)),
        ev(U, 10, (1, "x"), 5, collections={"tags": set_add(5, "e")}),
        None,
    ),
}


@pytest.mark.parametrize("how", ORDERS)
@pytest.mark.parametrize("case", list(TIES))
async def test_equal_timestamps_are_settled_as_cassandra_settles_them(make_pg_sink, case, how):
    """Each pair has one timestamp; the winner is the first of the pair, whichever
    arrives first, alone or in one batch. ``None``: the row is not shown at all."""
    winner, loser, row = TIES[case]
    sink, _ = await make_pg_sink(QUALIFIED)
    try:
        rows = await deliver(sink, *in_order(how, winner, loser))
    finally:
        await sink.aclose()
    now = dt.datetime.now(dt.UTC)
    state = MirrorState()
    state.apply_all([winner, loser], {QUALIFIED: ITEMS})
    assert rows == state.rows(QUALIFIED, now)
    assert rows.get(((10,), (1, "x"))) == row


# Events over two partitions, three rows each, a static column and every deletion
# scope, with distinct timestamps (with equal ones Cassandra itself breaks ties by
# value, which the reference does not model).
_KEYS = [(1, "a"), (1, "b"), (2, "a")]


def _event(kind: int, pk: int, row: int, ts: int):
    ck = _KEYS[row]
    if kind == 0:
        return ev(INS, pk, ck, ts, columns={"a": f"a{ts}", "b": ts})
    if kind == 1:
        return ev(U, pk, ck, ts, columns={"b": ts})
    if kind == 2:
        return ev(D, pk, ck, ts)
    if kind == 3:
        return ev(D, pk, ck, ts, scope=DeletionScope.CELL, deleted_columns=("a",))
    if kind == 4:
        return ev(D, pk, None, ts, scope=DeletionScope.PARTITION)
    if kind == 5:
        return range_delete(pk, ts, {"c1": 1}, {"c1": 1})
    return ev(U, pk, None, ts, columns={"s": f"s{ts}"}, static=True)


_specs = st.lists(
    st.tuples(st.integers(0, 6), st.integers(1, 2), st.integers(0, 2)), min_size=1, max_size=12
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=_specs, data=st.data())
async def test_any_order_with_duplicates_converges_on_ranges_partitions_and_statics(
    make_pg_sink, specs, data
):
    events = [_event(kind, pk, row, 10 + i) for i, (kind, pk, row) in enumerate(specs)]
    order = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=4))
    size = data.draw(st.integers(1, 4))
    delivered = [*order, *repeats]
    sink, _ = await make_pg_sink(QUALIFIED)
    try:
        for i in range(0, len(delivered), size):
            await sink.write(batch_of(delivered[i : i + size]))
        assert await sink.rows(QUALIFIED) == reference(events)
    finally:
        await sink.aclose()


async def test_purging_tombstones_forgets_only_deletions_older_than_the_cutoff(mirror):
    old_drop = ev(D, 9, None, 10, scope=DeletionScope.PARTITION)
    old_row = ev(D, 9, (1, "x"), 11)
    recent_row = ev(D, 9, (2, "y"), 5_000_000)
    await deliver(mirror, [old_drop, old_row, recent_row])
    cutoff = dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)  # 1,000,000 micros
    assert await mirror.purge_tombstones(QUALIFIED, cutoff) == 2
    assert await mirror.purge_tombstones(QUALIFIED, cutoff) == 0
    # The recent deletion still hides an older late write; the forgotten ones cannot.
    late = [ev(U, 9, (2, "y"), 4_000_000, columns={"a": "hidden"})]
    late.append(ev(U, 9, (1, "x"), 9, columns={"a": "back"}))
    assert await deliver(mirror, late) == {((9,), (1, "x")): {"a": "back"}}


async def _stored(sink, layout_table="items"):
    """Keys of the rows the mirror table itself holds, hidden or not."""
    pool = await sink._pool.get()
    schema = sink._latest[QUALIFIED].layout.schema
    rows = await pool.fetch(f'SELECT id, c1, c2 FROM "{schema}"."{layout_table}"')
    return {(r["id"], r["c1"], r["c2"]) for r in rows}


async def test_purging_expired_rows_deletes_only_rows_whose_every_value_expired(mirror):
    """Timestamps a few microseconds after 1970 with a one-second TTL expired long ago.
    Only the row made of such data alone goes; a row with a permanent value, one with a
    deletion, one expiring in 2096 and one with an expiring collection element next to a
    permanent one stay."""
    expired = ev(INS, 11, (1, "a"), 5, columns={"a": "x"}, ttl_seconds=1)
    with_permanent = [
        ev(INS, 11, (1, "b"), 5, columns={"a": "x"}, ttl_seconds=1),
        ev(U, 11, (1, "b"), 6, columns={"b": 2}),
    ]
    with_deletion = [ev(U, 11, (1, "c"), 5, columns={"a": "x"}, ttl_seconds=1)]
    with_deletion.append(ev(D, 11, (1, "c"), 6, scope=DeletionScope.CELL, deleted_columns=("b",)))
    later = ev(U, 11, (1, "d"), 5, columns={"a": "x"}, ttl_seconds=LIVE_TTL)
    elements = [
        ev(U, 11, (1, "e"), 5, ttl_seconds=1, collections={"tags": set_add(5, "gone")}),
        ev(U, 11, (1, "e"), 6, collections={"tags": set_add(6, "kept")}),
    ]
    events = [expired, *with_permanent, *with_deletion, later, *elements]
    shown = await deliver(mirror, events)
    assert shown == reference(events, now=dt.datetime.now(dt.UTC))
    assert await _stored(mirror) == {(11, 1, k) for k in "abcde"}
    now = dt.datetime.now(dt.UTC)
    assert await mirror.purge_expired(QUALIFIED, now) == 1
    assert await mirror.purge_expired(QUALIFIED, now) == 0
    assert await _stored(mirror) == {(11, 1, k) for k in "bcde"}
    assert await mirror.rows(QUALIFIED) == shown


async def test_with_purge_expired_after_set_the_sink_purges_by_itself(make_pg_sink):
    """``purge_expired_after`` (seconds): expired rows older than that are deleted after
    a write, at most once per that time."""
    sink, _ = await make_pg_sink(QUALIFIED, purge_expired_after=1)
    try:
        await deliver(sink, [ev(INS, 12, (1, "a"), 5, columns={"a": "x"}, ttl_seconds=1)])
        assert await _stored(sink) == {(12, 1, "a")}

        async def purged() -> bool:
            await deliver(sink, [ev(U, 12, (2, "b"), 7, columns={"a": "y"})])
            return await _stored(sink) == {(12, 2, "b")}

        await eventually(purged, within=30, what="the periodic purge")
    finally:
        await sink.aclose()
