import datetime as dt
import uuid

import attrs
import pytest
from hypothesis import given
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
from tests.factories import event, replica_copy, table

TABLE = "shop.orders"


def state_of(*events):
    state = MirrorState()
    state.apply_all(events)
    return state.rows(TABLE)


def test_insert_then_partial_update_keeps_untouched_columns():
    assert state_of(
        event(Operation.INSERT, ts=1, columns={"a": 1, "b": 2}),
        event(Operation.UPDATE, ts=2, columns={"a": 10}),
    ) == {((1,), ()): {"a": 10, "b": 2}}


def test_older_update_does_not_undo_a_newer_one_column_by_column():
    rows = state_of(
        event(ts=5, columns={"a": "t5"}),
        event(ts=7, columns={"b": "t7"}),
        event(ts=3, columns={"a": "t3", "b": "t3"}),
    )
    assert rows == {((1,), ()): {"a": "t5", "b": "t7"}}


def test_delete_is_not_resurrected_by_a_late_older_upsert():
    assert (
        state_of(
            event(Operation.DELETE, ts=9, scope=DeletionScope.ROW),
            event(Operation.INSERT, ts=4, columns={"a": 1}),
        )
        == {}
    )


def test_newer_write_after_delete_brings_only_its_columns_back():
    rows = state_of(
        event(Operation.INSERT, ts=1, columns={"a": 1, "b": 2}),
        event(Operation.DELETE, ts=5, scope=DeletionScope.ROW),
        event(Operation.UPDATE, ts=6, columns={"a": 3}),
    )
    assert rows == {((1,), ()): {"a": 3}}


def test_a_tie_goes_to_the_deletion_as_in_cassandra():
    assert (
        state_of(
            event(Operation.INSERT, ts=5, columns={"a": 1}),
            event(Operation.DELETE, ts=5, scope=DeletionScope.ROW),
        )
        == {}
    )


def test_cell_delete_and_null_both_remove_the_column():
    rows = state_of(
        event(Operation.INSERT, ts=1, columns={"a": 1, "b": 2, "c": 3}),
        event(Operation.DELETE, ts=2, scope=DeletionScope.CELL, deleted_columns=("a",)),
        event(ts=2, columns={"b": None}),
    )
    assert rows == {((1,), ()): {"c": 3}}


def test_insert_keeps_a_row_alive_without_columns():
    assert state_of(event(Operation.INSERT, ts=1)) == {((1,), ()): {}}
    assert state_of(event(Operation.UPDATE, ts=1, columns={"a": None})) == {}


def test_partition_delete_removes_every_row_older_than_it():
    rows = state_of(
        event(ts=1, clustering_key={"day": 1}, columns={"a": 1}),
        event(ts=3, clustering_key={"day": 2}, columns={"a": 2}),
        event(Operation.DELETE, ts=2, scope=DeletionScope.PARTITION),
    )
    assert rows == {((1,), (2,)): {"a": 2}}


def test_range_delete_covers_its_bounds():
    rows = state_of(
        *(event(ts=1, clustering_key={"day": d}, columns={"a": d}) for d in range(1, 6)),
        event(
            Operation.DELETE,
            ts=2,
            scope=DeletionScope.RANGE,
            clustering_range=ClusteringRange(
                ClusteringBound({"day": 2}), ClusteringBound({"day": 4}, inclusive=False)
            ),
        ),
    )
    assert sorted(k[1] for k in rows) == [(1,), (4,), (5,)]


def test_static_columns_show_on_every_row_of_their_partition():
    rows = state_of(
        event(ts=1, clustering_key={"day": 1}, columns={"a": 1}),
        event(ts=1, static=True, columns={"owner": "x"}),
    )
    assert rows == {((1,), (1,)): {"a": 1, "owner": "x"}}
    assert state_of(event(ts=1, static=True, columns={"owner": "x"})) == {
        ((1,), ()): {"owner": "x"}
    }


def test_collection_overwrite_replaces_and_adds_merge():
    first, second, third = uuid.uuid1(), uuid.uuid1(), uuid.uuid1()
    rows = state_of(
        event(
            ts=10,
            collections={
                "tags": CollectionDelta(
                    "list",
                    True,
                    (CollectionElement(first, "a", 10), CollectionElement(second, "b", 10)),
                )
            },
        ),
        event(
            ts=11,
            collections={
                "tags": CollectionDelta("list", False, (CollectionElement(third, "c", 11),))
            },
        ),
    )
    assert rows == {((1,), ()): {"tags": ["a", "b", "c"]}}


def test_a_late_element_add_older_than_an_overwrite_is_dropped():
    rows = state_of(
        event(
            ts=10,
            collections={
                "tags": CollectionDelta("set", True, (CollectionElement("new", None, 10),))
            },
        ),
        event(
            ts=5,
            collections={
                "tags": CollectionDelta("set", False, (CollectionElement("old", None, 5),))
            },
        ),
    )
    assert rows == {((1,), ()): {"tags": frozenset({"new"})}}


def test_element_removal_wins_over_older_adds():
    rows = state_of(
        event(
            ts=1,
            collections={
                "m": CollectionDelta(
                    "map", False, (CollectionElement("k1", 1, 1), CollectionElement("k2", 2, 1))
                )
            },
        ),
        event(ts=2, collections={"m": CollectionDelta("map", removed=("k1",))}),
    )
    assert rows == {((1,), ()): {"m": {"k2": 2}}}


@pytest.mark.parametrize("how", ["deleted", "null"])
@pytest.mark.parametrize("deletion_first", [True, False])
def test_a_collection_deletion_hides_older_elements_whatever_arrives_first(how, deletion_first):
    """``DELETE tags`` (a cell deletion) and ``SET tags = null`` beside other columns (a
    null in ``columns``) are both a collection tombstone: elements up to it are gone."""
    add = event(ts=5, collections={"tags": CollectionDelta("set", elements=(
        CollectionElement("old", None, 5),))})  # fmt: skip
    newer = event(ts=9, collections={"tags": CollectionDelta("set", elements=(
        CollectionElement("new", None, 9),))})  # fmt: skip
    if how == "deleted":
        deletion = event(
            Operation.DELETE, ts=7, scope=DeletionScope.CELL, deleted_columns=("tags",)
        )
    else:
        deletion = event(ts=7, columns={"a": 1, "tags": None})
    events = [deletion, add, newer] if deletion_first else [add, newer, deletion]
    assert state_of(*events)[((1,), ())]["tags"] == frozenset({"new"})


def test_counters_add_up_and_a_redelivered_event_counts_once():
    increment = event(ts=1, counters={"hits": 2})
    assert state_of(increment, increment, event(ts=2, counters={"hits": 3})) == {
        ((1,), ()): {"hits": 5}
    }


def test_replica_copies_of_a_counter_write_add_once():
    increment = event(ts=1, counters={"hits": 2}, counter_totals={"hits": 2})
    copies = [
        replica_copy(increment, "n2", SourcePosition(7, 70)),
        replica_copy(increment, "n3", SourcePosition(9, 90)),
    ]
    assert len({e.event_id for e in (increment, *copies)}) == 3
    assert state_of(increment, *copies, event(ts=2, counters={"hits": 3})) == {
        ((1,), ()): {"hits": 5}
    }


history = [
    event(Operation.INSERT, ts=1, columns={"a": 1, "b": 1}),
    event(ts=4, columns={"a": 4}),
    event(ts=3, columns={"b": 3}),
    event(Operation.DELETE, ts=6, scope=DeletionScope.ROW, key=2),
    event(Operation.INSERT, ts=5, columns={"a": 5}, key=2),
    event(ts=7, columns={"a": 7}, key=3),
    event(Operation.DELETE, ts=8, scope=DeletionScope.CELL, deleted_columns=("a",), key=3),
    event(ts=2, columns={"c": 2}),
]


@given(st.permutations(history), st.lists(st.sampled_from(history), max_size=6))
def test_any_order_with_duplicates_gives_the_in_order_state(order, duplicates):
    assert state_of(*order, *duplicates) == state_of(*history)


def test_range_delete_follows_a_descending_clustering_order():
    rows = state_of(
        *(event(ts=1, clustering_key={"day": d}, columns={"a": d}) for d in range(1, 6)),
        event(
            Operation.DELETE,
            ts=2,
            scope=DeletionScope.RANGE,
            clustering_range=ClusteringRange(
                ClusteringBound({"day": 4}), ClusteringBound({"day": 2}), descending=("day",)
            ),
        ),
    )
    assert sorted(k[1] for k in rows) == [(1,), (5,)]


SCORES = table("orders", regular={"a": "int", "t": "text", "v": "varint"})


def typed_state(*events, schema=SCORES):
    state = MirrorState()
    state.apply_all(events, {TABLE: schema})
    return state.rows(TABLE)


@given(st.permutations([("t", "b"), ("t", "a"), ("a", -1), ("a", 1), ("v", 1), ("v", 128)]))
def test_equal_timestamps_are_settled_by_the_greater_serialized_value(writes):
    rows = typed_state(*(event(ts=5, columns={name: value}) for name, value in writes))
    # -1 is 0xffffffff and beats 1; varint 1 is 0x01 and beats 128, 0x0080.
    assert rows == {((1,), ()): {"t": "b", "a": -1, "v": 1}}


def test_at_equal_timestamps_an_expiring_cell_beats_a_plain_one_and_the_later_expiry_wins():
    soon = event(ts=5, columns={"t": "soon"}, ttl_seconds=10)
    later = event(ts=5, columns={"t": "later"}, ttl_seconds=20)
    plain = event(ts=5, columns={"t": "zzz plain"})
    for order in ((soon, later, plain), (plain, later, soon), (later, plain, soon)):
        assert typed_state(*order) == {((1,), ()): {"t": "later"}}


def test_a_row_only_a_dropped_column_kept_alive_is_not_shown():
    before = table("orders", regular={"a": "int", "gone": "text"})
    after = attrs.evolve(
        before,
        columns=tuple(c for c in before.columns if c.name != "gone"),
        dropped_columns=tuple(c for c in before.columns if c.name == "gone"),
    )
    state = MirrorState()
    state.apply_all(
        [
            event(ts=1, key=1, columns={"gone": "only this"}),
            event(ts=1, key=2, columns={"gone": "x", "a": 2}),
            event(Operation.INSERT, ts=1, key=3, columns={"gone": "marker"}),
        ],
        {TABLE: before},
    )
    state.define(after)
    assert state.rows(TABLE) == {((2,), ()): {"a": 2}, ((3,), ()): {}}


def test_a_cell_or_row_written_with_a_ttl_is_gone_once_it_expires():
    written = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    micros = int(written.timestamp() * 1_000_000)
    state = MirrorState()
    state.apply_all(
        [
            event(Operation.INSERT, key=1, ts=micros, columns={"a": 1}, ttl_seconds=10),
            event(Operation.INSERT, key=2, ts=micros, columns={"a": 2}),
            event(key=2, ts=micros + 1, columns={"b": 2}, ttl_seconds=10),
        ]
    )
    before = state.rows(TABLE, written + dt.timedelta(seconds=9))
    after = state.rows(TABLE, written + dt.timedelta(seconds=11))
    assert before == {((1,), ()): {"a": 1}, ((2,), ()): {"a": 2, "b": 2}}
    assert after == {((2,), ()): {"a": 2}}
    assert state.rows(TABLE) == before  # without a time, expiry is not judged
