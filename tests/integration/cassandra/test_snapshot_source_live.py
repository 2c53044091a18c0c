"""The snapshot source against a live node: every column kind read with its real write
time and TTL, values decoded exactly as the commit log reader decodes them, and the
state a snapshot gives equal to the state the stream of the same writes gives."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
from cassandra_live import CdcCapture

from cdc_adapters.cassandra import CassandraSchemaSource, CassandraSnapshotSource
from cdc_adapters.cassandra.driver import MAX_TOKEN, MIN_TOKEN
from cdc_domain.events import ChangeEvent
from cdc_domain.mirror import MirrorState
from cdc_domain.snapshot_rows import snapshot_events
from cdc_domain.tokens import TokenRange

pytestmark = pytest.mark.integration

SERVER = tuple(int(p) for p in os.environ.get("CDC_TEST_CASSANDRA_VERSION", "5.0").split(".")[:2])
NOW = dt.datetime.now(dt.UTC)

STATEMENTS = [
    "INSERT INTO {ks}.kinds (a, b, ck, ck2, s, ss, v, n, d, ts, fl, l, st, m, u, fu)"
    " VALUES (1, 'x', 1, 'p', 10, {{1, 2}}, 'one', 100, 1.5, '2026-01-02 03:04:05.678Z',"
    " [1, 2], ['a', 'b'], {{'s1', 's2'}}, {{'k1': 1, 'k2': 2}}, {{street: 'main', zip: 1}},"
    " {{street: 'frozen', zip: 2}}) USING TIMESTAMP 1000",
    "UPDATE {ks}.kinds USING TIMESTAMP 2000 AND TTL 86400 SET v = 'two', l = l + ['c'],"
    " m['k3'] = 3, u.zip = 9 WHERE a = 1 AND b = 'x' AND ck = 1 AND ck2 = 'p'",
    "UPDATE {ks}.kinds USING TIMESTAMP 3000 SET st = st - {{'s1'}}, m['k1'] = 11"
    " WHERE a = 1 AND b = 'x' AND ck = 1 AND ck2 = 'p'",
    "INSERT INTO {ks}.kinds (a, b, ck, ck2) VALUES (1, 'x', 2, 'q') USING TIMESTAMP 4000",
    "INSERT INTO {ks}.kinds (a, b, ck, ck2, v) VALUES (1, 'x', 3, 'r', 'ttl') USING TTL 86400",
    "INSERT INTO {ks}.kinds (a, b, s, ss) VALUES (2, 'static only', 20, {{5}})"
    " USING TIMESTAMP 5000",
    "INSERT INTO {ks}.kinds (a, b, ck, ck2, n, l) VALUES (3, 'y', 1, 'p', 7, ['z'])",
    "UPDATE {ks}.kinds SET l = ['w'] + l WHERE a = 3 AND b = 'y' AND ck = 1 AND ck2 = 'p'",
    "DELETE n FROM {ks}.kinds WHERE a = 3 AND b = 'y' AND ck = 1 AND ck2 = 'p'",
]


@pytest.fixture(scope="module")
def kinds(ddl: Callable[[str], None]) -> str:
    ddl("CREATE TYPE {ks}.addr (street text, zip int)")
    ddl(
        "CREATE TABLE {ks}.kinds (a int, b text, ck int, ck2 text, s int STATIC,"
        " ss set<int> STATIC, v text, n bigint, d decimal, ts timestamp,"
        " fl frozen<list<int>>, l list<text>, st set<text>, m map<text, int>, u addr,"
        " fu frozen<addr>, PRIMARY KEY ((a, b), ck, ck2))"
        " WITH CLUSTERING ORDER BY (ck DESC, ck2 ASC) AND cdc = true"
    )
    return "kinds"


async def snapshot_of(
    schemas: CassandraSchemaSource, keyspace: str, table: str, **options: Any
) -> list[ChangeEvent]:
    await schemas.refresh()
    schema = await schemas.table(keyspace, table)
    assert schema is not None
    source = CassandraSnapshotSource(schemas, **options)
    events: list[ChangeEvent] = []
    for owned in await source.ring(keyspace):
        async for page in source.read(schema, owned.range):
            for row in page:
                events += snapshot_events(
                    row,
                    keyspace=keyspace,
                    table=table,
                    snapshot="live",
                    offset=0,
                    first_index=len(events),
                    captured_at=NOW,
                )
    return events


def state(events: list[ChangeEvent], schema: Any) -> dict[Any, dict[str, Any]]:
    mirror = MirrorState()
    mirror.apply_all(events, {schema.qualified_name: schema})
    return mirror.rows(schema.qualified_name)


async def test_a_snapshot_gives_the_state_the_stream_of_the_same_writes_gives(
    capture: CdcCapture, schemas: CassandraSchemaSource, keyspace: str, kinds: str
) -> None:
    stream = capture.run(*(s.format(ks=keyspace) for s in STATEMENTS), tables={kinds}, expect=9)
    snapshot = await snapshot_of(schemas, keyspace, kinds)
    schema = await schemas.table(keyspace, kinds)
    expected = state(stream, schema)
    assert state(snapshot, schema) == expected
    if SERVER >= (5, 0):
        assert state(stream + snapshot, schema) == expected  # nothing doubled, lists included
        assert state(snapshot + stream, schema) == expected
    else:
        # No element write times before 5.0: a list read cannot clear the stream's copies
        # of its elements, which then show twice (ADR 0011); everything else is exact.
        listed = ((1, "x"), (1, "p"))
        for combined in (state(stream + snapshot, schema), state(snapshot + stream, schema)):
            assert sorted(combined[listed].pop("l")) == sorted(expected[listed]["l"] * 2)
            assert combined == {
                k: {c: v for c, v in r.items() if (k, c) != (listed, "l")}
                for k, r in expected.items()
            }
    assert expected[((2, "static only"), ())] == {"s": 20, "ss": frozenset({5})}
    assert expected[((1, "x"), (2, "q"))] == {"s": 10, "ss": frozenset({1, 2})}
    assert expected[((1, "x"), (1, "p"))]["l"] == ["a", "b", "c"]
    assert expected[((3, "y"), (1, "p"))] == {"l": ["w", "z"]}


async def test_snapshot_events_carry_the_cells_write_times_and_ttls(
    schemas: CassandraSchemaSource, keyspace: str, kinds: str
) -> None:
    events = await snapshot_of(schemas, keyspace, kinds)
    row = {(e.timestamp_micros, e.ttl_seconds is not None): e for e in events
           if e.clustering_key == {"ck": 1, "ck2": "p"} and e.partition_key["a"] == 1}  # fmt: skip
    first = row[(1000, False)]
    if SERVER < (5, 0):
        # No WRITETIME on non-frozen collections and UDTs: their elements, and the list
        # read as an overwrite, take the row's lowest write time (ADR 0011).
        assert first.collections["l"].overwritten
        assert first.columns["l"] == ["a", "b", "c"]
        for delta in first.collections.values():
            assert {e.timestamp_micros for e in delta.elements} == {1000}
        assert {(e.key, e.value) for e in first.collections["m"].elements} == {
            ("k1", 11),
            ("k2", 2),
            ("k3", 3),
        }
        assert row[(2000, True)].columns == {"v": "two"}
        return
    assert first.columns == {
        "n": 100,
        "d": first.columns["d"],
        "ts": dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        "fl": [1, 2],
        "fu": first.columns["fu"],
    }
    assert [e.key for e in first.collections["st"].elements] == ["s2"]
    assert [(e.key, e.value) for e in first.collections["m"].elements] == [("k2", 2)]
    assert [(e.key, e.value) for e in first.collections["u"].elements] == [("street", "main")]
    ttl = row[(2000, True)]
    assert ttl.columns == {"v": "two"}
    assert [(e.key, e.value) for e in ttl.collections["m"].elements] == [("k3", 3)]
    assert [(e.key, e.value) for e in ttl.collections["u"].elements] == [("zip", 9)]
    assert ttl.expires_at is not None
    assert abs((ttl.expires_at - (NOW + dt.timedelta(seconds=86400))).total_seconds()) < 120
    assert [(e.key, e.value) for e in row[(3000, False)].collections["m"].elements] == [("k1", 11)]
    lists = row[(2001, True)]  # the list's newest element is 2000 (and had the TTL)
    assert lists.collections["l"].overwritten
    assert lists.columns["l"] == ["a", "b", "c"]
    static = [e for e in events if e.static and e.partition_key["a"] == 1]
    assert [(e.timestamp_micros, e.columns) for e in static] == [(1000, {"s": 10})]
    (marker,) = [e for e in events if e.clustering_key == {"ck": 2, "ck2": "q"}]
    assert (marker.timestamp_micros, marker.columns) == (0, {})


async def test_without_element_write_times_elements_take_the_rows_lowest(
    schemas: CassandraSchemaSource, keyspace: str, kinds: str
) -> None:
    """What Cassandra 4.x allows (no WRITETIME on non-frozen collections), on any server."""
    events = await snapshot_of(schemas, keyspace, kinds, element_times=False)
    schema = await schemas.table(keyspace, kinds)
    full = await snapshot_of(schemas, keyspace, kinds)
    assert state(events, schema) == state(full, schema)
    (first,) = [
        e
        for e in events
        if e.clustering_key == {"ck": 1, "ck2": "p"} and e.partition_key["a"] == 1
        if e.timestamp_micros == 1000
    ]
    assert {e.key for e in first.collections["m"].elements} == {"k1", "k2", "k3"}
    assert all(e.timestamp_micros == 1000 for e in first.collections["m"].elements)


async def test_the_ring_covers_every_token_once_and_pages_keep_statics_once(
    schemas: CassandraSchemaSource, cassandra_session: Any, keyspace: str
) -> None:
    cassandra_session.execute(
        f"CREATE TABLE {keyspace}.paged (p int, c int, s text STATIC, v int, PRIMARY KEY (p, c))"
    )
    insert = cassandra_session.prepare(
        f"INSERT INTO {keyspace}.paged (p, c, s, v) VALUES (?, ?, ?, ?)"
    )
    for p in range(12):
        for c in range(9):
            cassandra_session.execute(insert, (p, c, f"s{p}", c))
    source = CassandraSnapshotSource(schemas, page_rows=5)
    ring = await source.ring(keyspace)
    assert ring[0].range.start == MIN_TOKEN
    assert ring[-1].range.end == MAX_TOKEN
    assert all(a.range.end == b.range.start for a, b in itertools.pairwise(ring))
    assert all(r.primary for r in ring)  # one node owns every range
    await schemas.refresh()
    schema = await schemas.table(keyspace, "paged")
    assert schema is not None
    rows = []
    pages = 0
    async for page in source.read(schema, TokenRange(MIN_TOKEN, MAX_TOKEN)):
        pages += 1
        rows += page
    assert pages >= 108 // 5
    assert sorted(r.partition_key["p"] for r in rows if r.static) == list(range(12))
    assert len([r for r in rows if not r.static]) == 108
    estimate = await source.estimate(keyspace, "paged")
    assert estimate is None or estimate >= 0
