import datetime as dt

import pytest

from cdc_domain.events import (
    ChangeEvent,
    ClusteringBound,
    ClusteringRange,
    CollectionDelta,
    CollectionElement,
    DeletionScope,
    EventValidationError,
    Operation,
    SourcePosition,
)
from tests.factories import CAPTURED, event

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z in microseconds


def test_ttl_passes_through_and_implies_the_expiry():
    created = event(Operation.INSERT, ts=T0, ttl_seconds=3600)
    assert created.ttl_seconds == 3600
    assert created.expires_at == dt.datetime(2023, 11, 14, 23, 13, 20, tzinfo=dt.UTC)


def test_cassandras_own_expiry_wins_over_the_computed_one():
    local = dt.datetime(2023, 11, 14, 23, 13, 21, tzinfo=dt.UTC)
    created = event(ts=T0, ttl_seconds=3600, local_expiry=local)
    assert created.expires_at == local


def test_no_ttl_means_no_expiry():
    created = event(ts=T0)
    assert created.ttl_seconds is None
    assert created.expires_at is None


@pytest.mark.parametrize("ttl", [0, -5])
def test_ttl_must_be_positive(ttl):
    with pytest.raises(EventValidationError, match="ttl"):
        event(ttl_seconds=ttl)


def test_delete_needs_a_scope_and_others_must_not_have_one():
    with pytest.raises(EventValidationError, match="scope"):
        ChangeEvent.create(
            operation=Operation.DELETE,
            keyspace="k",
            table="t",
            partition_key={"id": 1},
            timestamp_micros=1,
            captured_at=CAPTURED,
            position=SourcePosition(1, 1),
        )
    with pytest.raises(EventValidationError, match="scope"):
        event(Operation.UPDATE, scope=DeletionScope.ROW)


def test_range_delete_needs_its_range():
    with pytest.raises(EventValidationError, match="range"):
        event(Operation.DELETE, scope=DeletionScope.RANGE)
    ranged = event(
        Operation.DELETE,
        scope=DeletionScope.RANGE,
        clustering_range=ClusteringRange(
            ClusteringBound({"day": 1}), ClusteringBound({"day": 5}, False)
        ),
    )
    assert ranged.clustering_range.end.inclusive is False


def test_cell_delete_names_its_columns():
    with pytest.raises(EventValidationError, match="columns"):
        event(Operation.DELETE, scope=DeletionScope.CELL)
    assert event(
        Operation.DELETE, scope=DeletionScope.CELL, deleted_columns=("a",)
    ).deleted_columns == ("a",)


def test_naive_capture_time_is_refused():
    with pytest.raises(EventValidationError, match="timezone"):
        ChangeEvent.create(
            operation=Operation.INSERT,
            keyspace="k",
            table="t",
            partition_key={"id": 1},
            timestamp_micros=1,
            captured_at=dt.datetime(2026, 1, 1),  # noqa: DTZ001 - the point of the test
            position=SourcePosition(1, 1),
        )


def test_partition_key_and_names_are_required():
    with pytest.raises(EventValidationError):
        ChangeEvent.create(
            operation=Operation.INSERT,
            keyspace="k",
            table="t",
            partition_key={},
            timestamp_micros=1,
            captured_at=CAPTURED,
            position=SourcePosition(1, 1),
        )
    with pytest.raises(EventValidationError):
        ChangeEvent.create(
            operation=Operation.INSERT,
            keyspace="",
            table="t",
            partition_key={"id": 1},
            timestamp_micros=1,
            captured_at=CAPTURED,
            position=SourcePosition(1, 1),
        )


def test_null_column_is_present_with_none():
    assert event(columns={"a": None}).columns == {"a": None}


def test_touched_columns_cover_sets_deletes_collections_and_counters():
    created = event(
        columns={"a": 1},
        collections={"tags": CollectionDelta("set", elements=(CollectionElement("x", None, 1),))},
        counters={"hits": 2},
    )
    assert created.touched_columns == ("a", "tags", "hits")


def test_static_events_are_keyed_by_partition_only():
    regular = event(clustering_key={"day": 1})
    static = event(clustering_key={"day": 1}, static=True)
    assert regular.key != static.key
    assert static.key == ("shop", "orders", (1,), (), True)


def test_positions_order_by_segment_then_offset_then_index():
    assert SourcePosition(1, 100) < SourcePosition(2, 0)
    assert SourcePosition(1, 100, 0) < SourcePosition(1, 100, 1)
    assert SourcePosition(-1, 5, snapshot="s1") < SourcePosition(0, 0)


def test_collection_delta_values_keep_their_shape():
    import uuid

    first, second = uuid.uuid1(), uuid.uuid1()
    as_list = CollectionDelta(
        "list", True, (CollectionElement(second, "b", 1), CollectionElement(first, "a", 1))
    )
    assert as_list.value() == ["a", "b"]
    assert CollectionDelta("set", elements=(CollectionElement(1, None, 1),)).value() == frozenset(
        {1}
    )
    assert CollectionDelta("map", elements=(CollectionElement("k", 2, 1),)).value() == {"k": 2}


def test_an_expiry_past_what_a_datetime_holds_is_none_not_a_crash():
    far = event(ts=2**62, ttl_seconds=60)
    assert far.ttl_seconds == 60
    assert far.expires_at is None
