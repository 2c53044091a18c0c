"""Every kind of write, through CQL, and the change events the commit log yields for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cassandra_live import CdcCapture

from cdc_domain.events import DeletionScope, Operation

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def tables(ddl: Callable[[str], None]) -> None:
    ddl(
        "CREATE TABLE {ks}.t (pk int, ck int, s text static, a int, b text, l list<int>,"
        " st set<int>, m map<text, int>, PRIMARY KEY (pk, ck)) WITH cdc = true"
    )
    ddl("CREATE TABLE {ks}.other (pk int PRIMARY KEY, v text) WITH cdc = true")
    ddl("CREATE TABLE {ks}.plain (pk int PRIMARY KEY, v text)")
    ddl(
        "CREATE TABLE {ks}.counts (pk int PRIMARY KEY, hits counter, misses counter)"
        " WITH cdc = true"
    )


def test_insert_and_partial_update(capture: CdcCapture, keyspace: str) -> None:
    (insert,) = capture.run(f"INSERT INTO {keyspace}.t (pk, ck, a, b) VALUES (1, 1, 10, 'x')")
    assert insert.operation is Operation.INSERT
    assert (insert.partition_key, insert.clustering_key) == ({"pk": 1}, {"ck": 1})
    assert insert.columns == {"a": 10, "b": "x"}
    assert insert.ttl_seconds is None
    (update,) = capture.run(f"UPDATE {keyspace}.t SET b = 'y' WHERE pk = 1 AND ck = 1")
    assert update.operation is Operation.UPDATE
    assert update.columns == {"b": "y"}
    (nulling,) = capture.run(f"UPDATE {keyspace}.t SET a = 5, b = null WHERE pk = 1 AND ck = 1")
    assert nulling.operation is Operation.UPDATE
    assert nulling.columns == {"a": 5, "b": None}


def test_ttl_and_timestamp(capture: CdcCapture, keyspace: str) -> None:
    (insert,) = capture.run(
        f"INSERT INTO {keyspace}.t (pk, ck, a) VALUES (2, 1, 1) USING TTL 600 AND TIMESTAMP 12345"
    )
    assert insert.timestamp_micros == 12345
    assert insert.ttl_seconds == 600
    assert insert.expires_at is not None
    (update,) = capture.run(f"UPDATE {keyspace}.t USING TTL 60 SET b = 'z' WHERE pk = 2 AND ck = 1")
    assert update.operation is Operation.UPDATE
    assert update.ttl_seconds == 60
    lag = update.expires_at - update.captured_at
    assert 50 < lag.total_seconds() <= 61


def test_deletes(capture: CdcCapture, keyspace: str) -> None:
    (cells,) = capture.run(f"DELETE a, b FROM {keyspace}.t WHERE pk = 3 AND ck = 1")
    assert (cells.operation, cells.scope) == (Operation.DELETE, DeletionScope.CELL)
    assert set(cells.deleted_columns) == {"a", "b"}
    (row,) = capture.run(f"DELETE FROM {keyspace}.t WHERE pk = 3 AND ck = 2")
    assert (row.scope, row.clustering_key) == (DeletionScope.ROW, {"ck": 2})
    (ranged,) = capture.run(f"DELETE FROM {keyspace}.t WHERE pk = 3 AND ck >= 5 AND ck < 9")
    assert ranged.scope is DeletionScope.RANGE
    bounds = ranged.clustering_range
    assert (dict(bounds.start.values), bounds.start.inclusive) == ({"ck": 5}, True)
    assert (dict(bounds.end.values), bounds.end.inclusive) == ({"ck": 9}, False)
    (open_ended,) = capture.run(f"DELETE FROM {keyspace}.t WHERE pk = 3 AND ck > 20")
    assert dict(open_ended.clustering_range.end.values) == {}
    (partition,) = capture.run(f"DELETE FROM {keyspace}.t WHERE pk = 3")
    assert (partition.scope, partition.partition_key) == (DeletionScope.PARTITION, {"pk": 3})


def test_collections(capture: CdcCapture, keyspace: str) -> None:
    (full,) = capture.run(
        f"INSERT INTO {keyspace}.t (pk, ck, l, st, m) VALUES (4, 1, [1, 2], {{5}}, {{'a': 1}})"
    )
    assert full.columns == {"l": [1, 2], "st": frozenset({5}), "m": {"a": 1}}
    assert all(d.overwritten for d in full.collections.values())
    (append,) = capture.run(
        f"UPDATE {keyspace}.t SET l = l + [3], l = [0] + l, st = st + {{6}}, m['b'] = 2"
        " WHERE pk = 4 AND ck = 1"
    )
    assert append.operation is Operation.UPDATE
    assert append.columns == {}
    assert sorted(e.value for e in append.collections["l"].elements) == [0, 3]
    assert [e.key for e in append.collections["st"].elements] == [6]
    assert [(e.key, e.value) for e in append.collections["m"].elements] == [("b", 2)]
    (remove,) = capture.run(
        f"UPDATE {keyspace}.t SET st = st - {{5}}, m = m - {{'a'}} WHERE pk = 4 AND ck = 1"
    )
    assert remove.collections["st"].removed == (5,)
    assert remove.collections["m"].removed == ("a",)
    (by_index,) = capture.run(f"UPDATE {keyspace}.t SET l[0] = 42 WHERE pk = 4 AND ck = 1")
    assert [e.value for e in by_index.collections["l"].elements] == [42]
    (element_delete,) = capture.run(f"DELETE m['b'] FROM {keyspace}.t WHERE pk = 4 AND ck = 1")
    assert element_delete.operation is Operation.DELETE
    assert element_delete.collections["m"].removed == ("b",)
    (overwrite,) = capture.run(f"UPDATE {keyspace}.t SET l = [7] WHERE pk = 4 AND ck = 1")
    assert overwrite.collections["l"].overwritten
    assert overwrite.columns == {"l": [7]}


def test_static_columns(capture: CdcCapture, keyspace: str) -> None:
    (static,) = capture.run(f"UPDATE {keyspace}.t SET s = 'shared' WHERE pk = 5")
    assert static.static
    assert static.clustering_key == {}
    assert static.columns == {"s": "shared"}
    events = capture.run(
        f"INSERT INTO {keyspace}.t (pk, ck, s, a) VALUES (5, 1, 'both', 1)", expect=2
    )
    assert sorted((e.static, e.operation.value) for e in events) == [
        (False, "INSERT"),
        (True, "UPDATE"),
    ]


def test_batches_spanning_tables(capture: CdcCapture, keyspace: str) -> None:
    for kind in ("LOGGED", "UNLOGGED"):
        events = capture.run(
            f"BEGIN {'' if kind == 'LOGGED' else 'UNLOGGED '}BATCH"
            f" INSERT INTO {keyspace}.t (pk, ck, a) VALUES (6, 1, 1);"
            f" INSERT INTO {keyspace}.other (pk, v) VALUES (6, 'o');"
            f" INSERT INTO {keyspace}.plain (pk, v) VALUES (6, 'not cdc');"
            f" INSERT INTO {keyspace}.other (pk, v) VALUES (7, 'p');"
            " APPLY BATCH",
            expect=3,
        )
        assert sorted((e.table, e.partition_key["pk"]) for e in events) == [
            ("other", 6),
            ("other", 7),
            ("t", 6),
        ], kind
        # Same partition key, same keyspace: one mutation with one update per table.
        same_entry = {
            (e.position.segment_id, e.position.offset) for e in events if e.partition_key["pk"] == 6
        }
        assert len(same_entry) == 1, kind


def test_lightweight_transactions(capture: CdcCapture, keyspace: str) -> None:
    (insert,) = capture.run(
        f"INSERT INTO {keyspace}.t (pk, ck, a) VALUES (8, 1, 1) IF NOT EXISTS", tables={"t"}
    )
    assert insert.operation is Operation.INSERT
    assert insert.columns == {"a": 1}
    (update,) = capture.run(
        f"UPDATE {keyspace}.t SET a = 2 WHERE pk = 8 AND ck = 1 IF a = 1", tables={"t"}
    )
    assert update.columns == {"a": 2}


def test_counters(capture: CdcCapture, keyspace: str) -> None:
    (first,) = capture.run(f"UPDATE {keyspace}.counts SET hits = hits + 5 WHERE pk = 1")
    assert first.operation is Operation.UPDATE
    assert first.counters == {"hits": 5}
    (second,) = capture.run(
        f"UPDATE {keyspace}.counts SET hits = hits + 2, misses = misses - 1 WHERE pk = 1"
    )
    # The log holds running totals (7 and -1); the events carry the increments.
    assert second.counters == {"hits": 2, "misses": -1}
    assert second.counter_totals == {"hits": 7, "misses": -1}
    (deleted,) = capture.run(f"DELETE FROM {keyspace}.counts WHERE pk = 1")
    assert deleted.scope is DeletionScope.ROW or deleted.scope is DeletionScope.PARTITION


def test_composite_partition_key_and_clustering(
    capture: CdcCapture, keyspace: str, ddl: Callable[[str], None]
) -> None:
    ddl(
        "CREATE TABLE {ks}.composite (a text, b int, c uuid, d text, v int,"
        " PRIMARY KEY ((a, b, c), d)) WITH CLUSTERING ORDER BY (d DESC) AND cdc = true"
    )
    (event,) = capture.run(
        f"INSERT INTO {keyspace}.composite (a, b, c, d, v)"
        " VALUES ('ä', -1, 123e4567-e89b-12d3-a456-426614174000, '', 3)"
    )
    assert list(event.partition_key) == ["a", "b", "c"]
    assert event.partition_key["a"] == "ä"
    assert event.partition_key["b"] == -1
    assert str(event.partition_key["c"]) == "123e4567-e89b-12d3-a456-426614174000"
    assert event.clustering_key == {"d": ""}
    assert event.columns == {"v": 3}


def test_range_delete_on_a_descending_clustering_column(
    capture: CdcCapture, keyspace: str, ddl: Callable[[str], None]
) -> None:
    ddl(
        "CREATE TABLE {ks}.lines (o int, line int, v int, PRIMARY KEY (o, line))"
        " WITH CLUSTERING ORDER BY (line DESC) AND cdc = true"
    )
    (ranged,) = capture.run(
        f"DELETE FROM {keyspace}.lines WHERE o = 1 AND line > 3 AND line <= 6", tables={"lines"}
    )
    bounds = ranged.clustering_range
    assert bounds is not None
    # In clustering order the larger value comes first along a DESC column.
    assert (dict(bounds.start.values), bounds.start.inclusive) == ({"line": 6}, True)
    assert (dict(bounds.end.values), bounds.end.inclusive) == ({"line": 3}, False)
    assert bounds.descending == ("line",)
    assert [line for line in range(1, 9) if bounds.contains({"line": line})] == [4, 5, 6]
