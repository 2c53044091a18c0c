"""Snapshot rows become events carrying their real write times; together with the stream,
in any order, they give the state Cassandra holds."""

import datetime as dt
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_domain.events import (
    ChangeEvent,
    CollectionDelta,
    CollectionElement,
    DeletionScope,
    Operation,
    SourcePosition,
)
from cdc_domain.mirror import MirrorState
from cdc_domain.snapshot_rows import (
    SnapshotCell,
    SnapshotCollection,
    SnapshotElement,
    SnapshotRow,
    snapshot_events,
)
from cdc_domain.tokens import RingRange, TokenRange, TokenRangeError, split_ring

READ_AT = dt.datetime(2026, 3, 1, 12, 0, 0, 700_000, tzinfo=dt.UTC)
CAPTURED = dt.datetime(2026, 3, 1, 12, 0, 1, tzinfo=dt.UTC)


def row(cells=None, collections=None, *, key=1, ck=None, static=False, identity=None):
    return SnapshotRow(
        partition_key={"id": key},
        clustering_key={} if ck is None else {"ck": ck},
        cells=cells or {},
        collections=collections or {},
        identity=identity or f"{key}/{ck}",
        read_at=READ_AT,
        static=static,
    )


def events_of(snapshot_row, offset=3, first_index=0):
    return snapshot_events(
        snapshot_row,
        keyspace="shop",
        table="orders",
        snapshot="s1",
        offset=offset,
        first_index=first_index,
        captured_at=CAPTURED,
    )


def test_cells_sharing_a_write_time_and_ttl_make_one_event_the_oldest_an_insert():
    events = events_of(
        row(
            {
                "a": SnapshotCell("x", 10),
                "b": SnapshotCell(2, 10),
                "c": SnapshotCell(3, 20, ttl=50),
                "d": SnapshotCell(4, 20),
            }
        )
    )
    assert [(e.operation, e.timestamp_micros, e.ttl_seconds, e.columns) for e in events] == [
        (Operation.INSERT, 10, None, {"a": "x", "b": 2}),
        (Operation.UPDATE, 20, None, {"d": 4}),
        (Operation.UPDATE, 20, 50, {"c": 3}),
    ]
    assert [e.position for e in events] == [SourcePosition(-1, 3, i, "s1") for i in range(3)]
    assert all(e.is_snapshot for e in events)


def test_a_ttl_counts_from_the_second_the_row_was_read():
    (event,) = events_of(row({"a": SnapshotCell("x", 10, ttl=60)}))
    assert event.expires_at == dt.datetime(2026, 3, 1, 12, 1, 0, tzinfo=dt.UTC)


def test_a_row_without_regular_cells_exists_by_an_insert_any_change_wins_over():
    (event,) = events_of(row(ck=2))
    assert (event.operation, event.timestamp_micros, event.columns) == (Operation.INSERT, 0, {})
    state = MirrorState()
    state.apply_all([event])
    assert state.rows("shop.orders") == {((1,), (2,)): {}}
    state.apply(_stream_delete(1, 2, ts=1))
    assert state.rows("shop.orders") == {}


def test_static_cells_are_an_update_of_the_static_row_and_never_a_row_of_their_own():
    events = events_of(row({"s": SnapshotCell(5, 7)}, static=True))
    assert [(e.operation, e.static, e.columns) for e in events] == [
        (Operation.UPDATE, True, {"s": 5})
    ]
    assert events_of(row(static=True)) == []


def test_set_map_and_udt_elements_keep_their_own_write_times():
    events = events_of(
        row(
            {"a": SnapshotCell(1, 10)},
            {
                "tags": SnapshotCollection(
                    "set", (SnapshotElement("x", None, 10), SnapshotElement("y", None, 30))
                ),
                "prefs": SnapshotCollection("map", (SnapshotElement("k", 2, 30, ttl=9),)),
            },
        )
    )
    assert [(e.timestamp_micros, e.ttl_seconds) for e in events] == [
        (10, None),
        (30, None),
        (30, 9),
    ]
    assert events[0].collections == {
        "tags": CollectionDelta("set", elements=(CollectionElement("x", None, 10),))
    }
    assert events[1].collections == {
        "tags": CollectionDelta("set", elements=(CollectionElement("y", None, 30),))
    }
    assert events[2].collections == {
        "prefs": CollectionDelta("map", elements=(CollectionElement("k", 2, 30, 9),))
    }


def test_a_list_is_an_overwrite_just_after_its_newest_element_keeping_its_order():
    visits = SnapshotCollection(
        "list",
        (SnapshotElement(0, "c", 50), SnapshotElement(1, "a", 20), SnapshotElement(2, "b", 40)),
    )
    (event,) = events_of(row(collections={"visits": visits}))
    delta = event.collections["visits"]
    assert (event.timestamp_micros, delta.overwritten) == (51, True)
    assert event.columns == {"visits": ["c", "a", "b"]}
    assert delta.value() == ["c", "a", "b"]
    assert all(isinstance(e.key, uuid.UUID) and e.key.version == 1 for e in delta.elements)
    assert events_of(row(collections={"visits": visits})) == [event]  # same keys every read


def test_a_list_read_replaces_the_stream_copies_of_its_elements_and_keeps_later_appends():
    stream_key = uuid.uuid1()
    before_read = _stream_append(stream_key, "a", ts=20)
    later_key = uuid.UUID(int=stream_key.int + (10**9 << 64))  # a later cell time
    after_read = _stream_append(later_key, "z", ts=90)
    visits = SnapshotCollection("list", (SnapshotElement(0, "a", 20),))
    (snapshot,) = events_of(row(collections={"visits": visits}))
    for order in ([before_read, snapshot, after_read], [after_read, snapshot, before_read]):
        state = MirrorState()
        state.apply_all(order)
        assert state.rows("shop.orders") == {((1,), ()): {"visits": ["a", "z"]}}


def test_element_times_unknown_take_the_rows_lowest_simple_cell_time():
    events = events_of(
        row(
            {"a": SnapshotCell(1, 40), "b": SnapshotCell(2, 70)},
            {"tags": SnapshotCollection("set", (SnapshotElement("x", None, None),))},
        )
    )
    assert events[0].timestamp_micros == 40
    assert events[0].collections["tags"].elements == (CollectionElement("x", None, 40),)
    (alone,) = events_of(
        row(collections={"tags": SnapshotCollection("set", (SnapshotElement("x", None, None),))})
    )
    assert alone.timestamp_micros == 0


def test_event_ids_are_the_same_for_the_same_cells_wherever_they_are_read():
    first = events_of(row({"a": SnapshotCell(1, 10)}), offset=1, first_index=0)
    again = events_of(row({"a": SnapshotCell(1, 10)}), offset=7, first_index=40)
    other = events_of(row({"a": SnapshotCell(1, 11)}))
    assert first[0].event_id == again[0].event_id != other[0].event_id


def test_token_ranges_split_evenly_and_parse_from_the_command_line():
    assert TokenRange(0, 10).split(3) == [TokenRange(0, 3), TokenRange(3, 6), TokenRange(6, 10)]
    assert TokenRange(0, 2).split(5) == [TokenRange(0, 1), TokenRange(1, 2)]
    assert TokenRange.parse("-5:9") == TokenRange.parse("(-5,9]") == TokenRange(-5, 9)
    for bad in ("5:5", "a:b", "9:-5"):
        try:
            TokenRange.parse(bad)
        except TokenRangeError:
            continue
        raise AssertionError(f"{bad} parsed")


def test_a_ring_is_read_by_its_primary_ranges_unless_all_are_asked_for():
    ring = [RingRange(TokenRange(10, 20), False), RingRange(TokenRange(0, 10), True)]
    assert split_ring(ring, 2) == [TokenRange(0, 5), TokenRange(5, 10)]
    assert split_ring(ring, 1, all_ranges=True) == [TokenRange(0, 10), TokenRange(10, 20)]
    assert split_ring(ring, 1, all_ranges=True, within=TokenRange(5, 15)) == [
        TokenRange(5, 10),
        TokenRange(10, 15),
    ]


# -- stitching: a snapshot taken at any point, plus the stream, in any order -----------

COLUMNS = ("a", "b")
write = st.tuples(
    st.sampled_from(["set", "set", "delete_row", "add", "remove", "null"]),
    st.integers(1, 2),  # key
    st.sampled_from(COLUMNS),
    st.integers(0, 2),  # value or element
)


class Cassandra:
    """Just enough of a node to answer a snapshot: per row, each cell's value and write
    time, set elements with theirs, the row marker, and row deletions."""

    def __init__(self):
        self.rows = {}

    def apply(self, kind, key, column, value, ts):
        found = self.rows.setdefault(key, {"cells": {}, "tags": {}, "marker": None, "deleted": -1})
        if kind == "delete_row":
            found["deleted"] = max(found["deleted"], ts)
        elif kind == "set":
            found["marker"] = ts
            found["cells"][column] = (value, ts)
        elif kind == "null":
            found["cells"][column] = (None, ts)
        elif kind == "add":
            found["tags"][value] = (True, ts)
        else:
            found["tags"][value] = (False, ts)

    def snapshot(self):
        rows = []
        for key, found in sorted(self.rows.items()):
            floor = found["deleted"]
            cells = {
                c: SnapshotCell(v, t)
                for c, (v, t) in found["cells"].items()
                if v is not None and t > floor
            }
            tags = tuple(
                SnapshotElement(e, None, t)
                for e, (live, t) in sorted(found["tags"].items())
                if live and t > floor
            )
            marker = found["marker"] is not None and found["marker"] > floor
            if not (cells or tags or marker):
                continue
            rows.append(
                row(cells, {"tags": SnapshotCollection("set", tags)} if tags else {}, key=key)
            )
        return rows


def _stream_event(kind, key, column, value, ts, index):
    common = {
        "keyspace": "shop",
        "table": "orders",
        "partition_key": {"id": key},
        "timestamp_micros": ts,
        "captured_at": CAPTURED,
        "position": SourcePosition(1, index),
    }
    if kind == "delete_row":
        return ChangeEvent.create(operation=Operation.DELETE, scope=DeletionScope.ROW, **common)
    if kind == "set":
        return ChangeEvent.create(operation=Operation.INSERT, columns={column: value}, **common)
    if kind == "null":
        return ChangeEvent.create(operation=Operation.UPDATE, columns={column: None}, **common)
    element = (CollectionElement(value, None, ts),) if kind == "add" else ()
    removed = (value,) if kind == "remove" else ()
    delta = CollectionDelta("set", elements=element, removed=removed)
    return ChangeEvent.create(operation=Operation.UPDATE, collections={"tags": delta}, **common)


@settings(max_examples=1500, deadline=None)
@given(
    writes=st.lists(write, min_size=1, max_size=25),
    data=st.data(),
)
def test_a_snapshot_at_any_point_stitches_with_the_stream_in_any_order(writes, data):
    """The stream has every write after its position; the snapshot is taken later (so
    it reflects some of those writes too). Whatever order the two arrive in, the result
    is Cassandra's final state."""
    writes = _created_by_insert(writes)
    node = Cassandra()
    stream = [_stream_event(*w, ts=i + 1, index=i) for i, w in enumerate(writes)]
    position = data.draw(st.integers(0, len(writes)), label="stream position")
    taken = data.draw(st.integers(position, len(writes)), label="snapshot taken after")
    snapshot = []
    for i, w in enumerate(writes):
        if i == taken:
            snapshot = [e for r in node.snapshot() for e in events_of(r)]
        node.apply(*w, ts=i + 1)
    if taken == len(writes):
        snapshot = [e for r in node.snapshot() for e in events_of(r)]
    arrivals = data.draw(st.permutations(stream[position:] + snapshot), label="arrival order")
    state = MirrorState()
    state.apply_all(arrivals)
    expected = {}
    for snapshot_row in node.snapshot():
        values = {k: c.value for k, c in snapshot_row.cells.items()}
        if snapshot_row.collections:
            values["tags"] = frozenset(e.key for e in snapshot_row.collections["tags"].elements)
        expected[((snapshot_row.partition_key["id"],), ())] = values
    assert state.rows("shop.orders") == expected


def _created_by_insert(writes):
    """Rows come into being by INSERT, as the snapshot assumes of the row marker it
    cannot read (see :mod:`cdc_domain.snapshot_rows`): a write to a row with no live
    marker becomes one."""
    alive = set()
    result = []
    for kind, key, column, value in writes:
        if kind == "delete_row":
            alive.discard(key)
        elif key not in alive:
            kind = "set"
        if kind == "set":
            alive.add(key)
        result.append((kind, key, column, value))
    return result


def _stream_append(key, value, ts):
    return ChangeEvent.create(
        operation=Operation.UPDATE,
        keyspace="shop",
        table="orders",
        partition_key={"id": 1},
        collections={
            "visits": CollectionDelta("list", elements=(CollectionElement(key, value, ts),))
        },
        timestamp_micros=ts,
        captured_at=CAPTURED,
        position=SourcePosition(1, ts),
    )


def _stream_delete(key, ck, ts):
    return ChangeEvent.create(
        operation=Operation.DELETE,
        scope=DeletionScope.ROW,
        keyspace="shop",
        table="orders",
        partition_key={"id": key},
        clustering_key={"ck": ck},
        timestamp_micros=ts,
        captured_at=CAPTURED,
        position=SourcePosition(1, ts),
    )
