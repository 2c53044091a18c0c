"""The change source on the live node: roll-over, restarts, DDL mid-stream, unknown tables.

Each test reads a private view of cdc_raw (hard links, see cdc_view.py), so deleting
consumed segments never touches the files other readers of the live directory use.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from typing import Any

from cdc_view import CdcRawView
from live_source import Consumer, live_source

from cdc_adapters.cassandra import CassandraSchemaSource
from cdc_domain.dead_letters import FailureReason
from cdc_domain.events import SourcePosition


def _ids(events) -> list[int]:
    return [e.partition_key["id"] for e in events]


async def test_a_stream_over_several_segments_arrives_in_order_and_is_freed(
    cassandra_session: Any, keyspace: str, cdc_view: CdcRawView, schemas: CassandraSchemaSource
) -> None:
    cassandra_session.execute(
        f"CREATE TABLE {keyspace}.rollover (id int PRIMARY KEY, payload blob) WITH cdc = true"
    )
    insert = cassandra_session.prepare(
        f"INSERT INTO {keyspace}.rollover (id, payload) VALUES (?, ?)"
    )
    count = 3000  # ~12 MiB of commit log: three 4 MiB segments at least
    payload = bytes(range(256)) * 16
    for row_id in range(count):
        cassandra_session.execute(insert, (row_id, payload))
    consumer = Consumer(live_source(cdc_view, schemas, f"{keyspace}.rollover"), cdc_view)
    events = await consumer.until(lambda got: len(got) >= count, within=60)
    assert _ids(events) == list(range(count))  # complete, once each, in write order
    segments = sorted({e.position.segment_id for e in events})
    assert len(segments) >= 3
    assert all(e.columns["payload"] == payload for e in events)

    end = consumer.after
    assert end is not None
    await consumer.source.acknowledge(end)
    for segment_id in segments[:-1]:
        linked = cdc_view.view / f"CommitLog-7-{segment_id}.log"
        assert not linked.exists(), f"consumed segment {segment_id} was not freed"
        assert not linked.with_name(linked.stem + "_cdc.idx").exists()
    assert consumer.source.stats.segments_deleted >= len(segments) - 1
    await consumer.source.aclose()


async def test_stopping_anywhere_redelivers_nothing_committed_and_loses_nothing(
    cassandra_session: Any, keyspace: str, cdc_view: CdcRawView, schemas: CassandraSchemaSource
) -> None:
    cassandra_session.execute(
        f"CREATE TABLE {keyspace}.restart (id int PRIMARY KEY, v text) WITH cdc = true"
    )
    insert = cassandra_session.prepare(f"INSERT INTO {keyspace}.restart (id, v) VALUES (?, ?)")
    count = 4000
    padding = "p" * 1500

    def write() -> None:
        for row_id in range(count):
            cassandra_session.execute(insert, (row_id, padding))

    writer = threading.Thread(target=write)
    writer.start()
    rng = random.Random(20261126)
    committed: SourcePosition | None = None
    delivered: Counter[int] = Counter()
    stops = 0
    while stops < 20 or writer.is_alive():
        source = live_source(cdc_view, schemas, f"{keyspace}.restart")
        consumer = Consumer(source, cdc_view)
        consumer.after = committed
        for _ in range(rng.randint(1, 4)):
            batch = await consumer.step(rng.randint(1, 400))
            assert all(committed is None or e.position > committed for e in batch.events)
            delivered.update(_ids(batch.events))
            # A stop after reading but before committing: the batch comes again.
            if batch.end is not None and rng.random() < 0.8:
                committed = batch.end
            if batch.end is None:
                await asyncio.sleep(0.05)
        await source.aclose()
        stops += 1
    writer.join()
    final = Consumer(live_source(cdc_view, schemas, f"{keyspace}.restart"), cdc_view)
    final.after = committed
    await final.until(lambda got: set(range(count)) <= set(delivered) | set(_ids(got)), 60)
    delivered.update(_ids(final.events))
    assert committed is None or all(e.position > committed for e in final.events)
    assert set(delivered) == set(range(count))
    assert stops >= 20
    await final.source.aclose()


async def test_add_and_drop_column_mid_stream_lose_nothing(
    cassandra_session: Any, keyspace: str, cdc_view: CdcRawView, schemas: CassandraSchemaSource
) -> None:
    table = f"{keyspace}.evolving"
    cassandra_session.execute(
        f"CREATE TABLE {table} (id int PRIMARY KEY, a int, b text) WITH cdc = true"
    )
    per_phase = 300

    def write() -> None:
        for row_id in range(per_phase):
            cassandra_session.execute(
                f"INSERT INTO {table} (id, a, b) VALUES (%s, %s, %s)",
                (row_id, row_id, f"b{row_id}"),
            )
        cassandra_session.execute(f"ALTER TABLE {table} ADD c bigint")
        for row_id in range(per_phase, 2 * per_phase):
            cassandra_session.execute(
                f"INSERT INTO {table} (id, a, b, c) VALUES (%s, %s, %s, %s)",
                (row_id, row_id, f"b{row_id}", row_id * 2),
            )
        cassandra_session.execute(f"ALTER TABLE {table} DROP b")
        for row_id in range(2 * per_phase, 3 * per_phase):
            cassandra_session.execute(
                f"INSERT INTO {table} (id, a, c) VALUES (%s, %s, %s)", (row_id, row_id, row_id * 2)
            )

    following = Consumer(live_source(cdc_view, schemas, table), cdc_view)
    writer = threading.Thread(target=write)
    writer.start()
    while writer.is_alive():  # the head of the log, while the DDL happens
        if (await following.step(50)).end is None:
            await asyncio.sleep(0.02)
    writer.join()
    total = 3 * per_phase
    await following.until(lambda got: len(got) >= total, 60)
    # A reader that starts after the drop decodes the older mutations too.
    await following.source.aclose()
    lagging = Consumer(live_source(cdc_view, schemas, table), cdc_view)
    await lagging.until(lambda got: len(got) >= total, 60)
    await lagging.source.aclose()

    for consumer in (following, lagging):
        assert not [f for f in consumer.failures if keyspace in str(f.schema_details)]
        assert sorted(_ids(consumer.events)) == list(range(total))
        for event in consumer.events:
            row_id = event.partition_key["id"]
            expected: dict[str, Any] = {"a": row_id}
            if row_id < 2 * per_phase:
                expected["b"] = f"b{row_id}"
            if row_id >= per_phase:
                expected["c"] = row_id * 2
            assert event.columns == expected, row_id
        for batch in consumer.batches:
            for event in batch.events:
                schema = batch.schemas[event.qualified_table]
                assert set(event.columns) <= set(schema.column_names), (event, schema)


async def test_mutations_of_a_table_never_seen_are_unknown_table_dead_letters(
    cassandra_session: Any, keyspace: str, cdc_view: CdcRawView, schemas: CassandraSchemaSource
) -> None:
    cassandra_session.execute(
        f"CREATE TABLE {keyspace}.gone (id int PRIMARY KEY, v text) WITH cdc = true"
    )
    table_id = cassandra_session.execute(
        "SELECT id FROM system_schema.tables WHERE keyspace_name = %s AND table_name = 'gone'",
        (keyspace,),
    ).one()[0]
    for row_id in range(3):
        cassandra_session.execute(
            f"INSERT INTO {keyspace}.gone (id, v) VALUES (%s, 'x')", (row_id,)
        )
    cassandra_session.execute(f"DROP TABLE {keyspace}.gone")
    cassandra_session.execute(
        f"CREATE TABLE {keyspace}.after_gone (id int PRIMARY KEY) WITH cdc = true"
    )
    cassandra_session.execute(f"INSERT INTO {keyspace}.after_gone (id) VALUES (7)")
    consumer = Consumer(live_source(cdc_view, schemas, f"{keyspace}.*"), cdc_view)
    events = await consumer.until(lambda got: any(e.table == "after_gone" for e in got))
    unknown = [f for f in consumer.failures if f.schema_details.get("table_id") == str(table_id)]
    assert len(unknown) == 3
    for failure in unknown:
        assert failure.reason is FailureReason.UNKNOWN_TABLE
        assert failure.raw is not None
        assert table_id.bytes in failure.raw
        assert failure.position is not None
        assert failure.schema_details["segment_id"] == failure.position.segment_id
    assert [e.partition_key for e in events if e.table == "after_gone"] == [{"id": 7}]
    assert consumer.source.stats.unknown_tables >= 3
    await consumer.source.aclose()


async def test_the_schema_source_sees_a_ddl_as_soon_as_the_change_source_decodes_after_it(
    cassandra_session: Any, keyspace: str, cdc_view: CdcRawView, schemas: CassandraSchemaSource
) -> None:
    """One catalog per agent: the use case and dead letter replay ask the schema source,
    and must see the columns the events they handle were decoded with."""
    cassandra_session.execute(
        f"CREATE TABLE {keyspace}.shared (id int PRIMARY KEY, a text) WITH cdc = true"
    )
    cassandra_session.execute(f"INSERT INTO {keyspace}.shared (id, a) VALUES (1, 'x')")
    consumer = Consumer(live_source(cdc_view, schemas, f"{keyspace}.shared"), cdc_view)
    await consumer.until(lambda got: len(got) >= 1)
    before = await schemas.table(keyspace, "shared")
    assert before is not None
    assert set(before.column_names) == {"id", "a"}

    cassandra_session.execute(f"ALTER TABLE {keyspace}.shared ADD b int")
    cassandra_session.execute(f"INSERT INTO {keyspace}.shared (id, b) VALUES (2, 5)")
    events = await consumer.until(lambda got: len(got) >= 2)

    after = await schemas.table(keyspace, "shared")
    assert after is not None
    assert set(after.column_names) == {"id", "a", "b"}
    assert events[-1].columns == {"b": 5}
    await consumer.source.aclose()
