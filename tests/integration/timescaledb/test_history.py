"""What is particular to TimescaleDB: hypertables, the history's content, the start-up
check for the extension, types through mirror mode, and crashes on the WASM server."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from cdc_adapters.postgres.values import from_json
from cdc_adapters.timescaledb import (
    TimescaleHistorySink,
    TimescaleMirrorSink,
    TimescaleMissingError,
)
from cdc_adapters.timescaledb.history import micros_to_datetime
from cdc_app import factories
from cdc_app.config import ConfigError, settings_from
from cdc_app.container import Container, running
from cdc_domain.events import ChangeEvent, Operation, SourcePosition
from cdc_domain.identity import write_id
from cdc_domain.ports import HealthChecked, OffsetCommittingSink, ReadinessChecked, SinkBatch
from cdc_domain.snapshot_rows import SnapshotCell, SnapshotRow, snapshot_events
from tests.contract.sink_contract import HISTORY, QUALIFIED, SCHEMA, batch, changes
from tests.factories import CAPTURED, replica_copy
from tests.integration.postgres import type_cases
from tests.integration.postgres.mirror_model import batch_of, reference
from tests.integration.timescaledb.conftest import FAST_RETRY

TYPES = "rt.types"


async def test_history_lands_in_a_hypertable_queryable_by_time_bucket(make_ts_sink, ts_pool):
    sink, _ = await make_ts_sink("history")
    await sink.write(batch(HISTORY))
    assert await sink.is_hypertable(QUALIFIED)
    extension = await sink.timescale()
    assert extension is not None
    table = f'"{sink._naming.schema_for("contract", "orders")}"."orders"'
    async with ts_pool.acquire() as connection:
        buckets = await connection.fetch(
            f"SELECT \"{extension.schema}\".time_bucket('10 microseconds', _cdc_time) AS b, "
            f"count(*) AS n FROM {table} GROUP BY b ORDER BY b"
        )
        deletes = await connection.fetchval(
            f"SELECT count(*) FROM {table} WHERE _cdc_op = 'DELETE'"
        )
    assert sum(r["n"] for r in buckets) == len(HISTORY)
    assert deletes == sum(e.operation is Operation.DELETE for e in HISTORY)


async def test_history_rows_keep_what_each_change_wrote(make_ts_sink, ts_pool):
    sink, _ = await make_ts_sink("history", table=TYPES)
    events = type_cases.events()
    schema = type_cases.schema()
    await sink.write(batch_of(events, schema))
    table = f'"{sink._naming.schema_for("rt", "types")}"."types"'
    async with ts_pool.acquire() as connection:
        rows = await connection.fetch(f"SELECT * FROM {table} ORDER BY _cdc_offset")
    types = {c.name: c.type for c in schema.columns}
    for row, event in zip(rows, events, strict=True):
        written = {n: from_json(types[n], v) for n, v in row["_cdc_columns"].items()}
        assert written == event.columns
        assert row["_cdc_writetime"] == event.timestamp_micros
        assert row["id"] == event.partition_key["id"]
        assert row["k_blob"] == event.clustering_key["k_blob"]


async def test_without_the_extension_start_up_fails_clearly_unless_plain_tables_are_allowed(
    postgres_database_dsn,
):
    """The project's PostgreSQL has no TimescaleDB: a real "extension missing" server."""
    for kind in (TimescaleHistorySink, TimescaleMirrorSink):
        strict = kind(name="ts", dsn=postgres_database_dsn, retry=FAST_RETRY)
        with pytest.raises(TimescaleMissingError, match="fallback_to_plain_tables"):
            await strict.check_ready()
        with pytest.raises(TimescaleMissingError):
            await strict.write(batch(HISTORY))
        await strict.aclose()
    relaxed = TimescaleHistorySink(
        name="ts",
        dsn=postgres_database_dsn,
        schema="plain_{keyspace}",
        metadata_schema="plain_meta",
        fallback_to_plain_tables=True,
        retry=FAST_RETRY,
    )
    await relaxed.write(batch(HISTORY))
    assert await relaxed.event_ids(QUALIFIED) == [e.event_id for e in HISTORY]
    await relaxed.check_ready()
    assert await relaxed.timescale() is None
    await relaxed.aclose()


async def test_the_container_stops_start_up_on_a_database_without_the_extension(
    postgres_database_dsn,
):
    settings = ts_settings(postgres_database_dsn, "mirror")
    with pytest.raises(TimescaleMissingError, match="fallback_to_plain_tables"):
        async with running(Container(settings=settings)):
            pass


def ts_settings(dsn: str, mode: str):
    return settings_from(
        {
            "source": {"type": "memory"},
            "destinations": [{"name": "ts", "type": "timescaledb", "mode": mode}],
            "timescaledb": {"dsn": dsn},
            "offsets": {"type": "memory"},
            "dead_letters": {"type": "memory"},
            "schema_history": {"type": "memory"},
        },
        {},
    )


@pytest.mark.parametrize(
    ("mode", "kind"), [("history", TimescaleHistorySink), ("mirror", TimescaleMirrorSink)]
)
def test_the_mode_picks_the_sink_and_each_sink_has_the_ports_the_app_asks_for(mode, kind):
    settings = ts_settings("postgresql://nowhere/db", mode)
    sink = factories.sink(settings.destinations[0], settings)  # no I/O until used
    assert type(sink) is kind
    assert isinstance(sink, OffsetCommittingSink)
    assert isinstance(sink, ReadinessChecked)
    assert isinstance(sink, HealthChecked)
    with pytest.raises(
        ConfigError, match=r"destinations\[0\]\.mode: expected one of: history, mirror"
    ):
        ts_settings("postgresql://nowhere/db", "replica")


async def test_every_type_round_trips_through_mirror_mode(make_ts_sink):
    sink, read_back = await make_ts_sink("mirror", table=TYPES)
    events = [*type_cases.events(), type_cases.nan_event()]
    await sink.write(batch_of(events, type_cases.schema()))
    rows = await read_back()
    nan_key = next(k for k in rows if k[0] == (99,))
    nan_row = rows.pop(nan_key)
    assert math.isnan(nan_row["c_float"])
    assert math.isnan(nan_row["c_double"])
    assert rows == reference(events[:-1], TYPES)


async def test_a_one_mebibyte_value_passes_the_wasm_server(make_ts_sink):
    """The launcher frames protocol messages itself; a 1 MiB parameter must get through."""
    sink, read_back = await make_ts_sink("mirror", table="contract.orders")
    big = "x" * (1 << 20)
    (event,) = changes((Operation.INSERT, 1, 10, {"columns": {"status": big}}))
    await sink.write(batch((event,)))
    assert (await read_back())[((1,), ())]["status"] == big


async def test_copies_of_a_write_from_other_nodes_are_absorbed_and_counted(make_ts_sink):
    sink, read_back = await make_ts_sink("history")
    await sink.write(batch(HISTORY[:5]))
    assert sink.take_absorbed_copies() == {}
    copies = [replica_copy(e, "node2", SourcePosition(2, i)) for i, e in enumerate(HISTORY)]
    await sink.write(batch(copies))
    await sink.write(batch(copies[-1:]))
    assert sink.take_absorbed_copies() == {QUALIFIED: 6}
    assert sink.take_absorbed_copies() == {}
    # One row per write, of the copy recorded first.
    assert await read_back() == [e.event_id for e in HISTORY[:5]] + [c.event_id for c in copies[5:]]
    assert await sink.write_ids(QUALIFIED) == sorted(write_id(e) for e in HISTORY)


def snapshot_of(key: int, cells: dict[str, SnapshotCell], read_at=CAPTURED) -> list[ChangeEvent]:
    """The events a snapshot makes of one row of the contract table."""
    row = SnapshotRow({"id": key}, {}, cells, {}, str(key), read_at)
    return snapshot_events(
        row,
        keyspace="contract",
        table="orders",
        snapshot="s1",
        offset=7,
        first_index=key * 10,
        captured_at=CAPTURED,
    )


async def test_snapshot_rows_are_recorded_as_snapshot_beside_the_streams_writes(
    make_ts_sink, ts_pool
):
    """What a snapshot read is no write that happened when it was recorded: its rows say
    SNAPSHOT, at the cells' real write times. A write the stream carried and the
    snapshot also read is two rows, the write and the reading; a range read again
    (less TTL left on the same cells) adds nothing."""
    sink, read_back = await make_ts_sink("history")

    def read(later: int = 0) -> list[ChangeEvent]:
        at = CAPTURED + dt.timedelta(seconds=later)
        return [
            *snapshot_of(1, {"status": SnapshotCell("new", 10), "total": SnapshotCell(5, 10)}, at),
            *snapshot_of(
                4, {"status": SnapshotCell("new", 40), "total": SnapshotCell(8, 50, 60 - later)}, at
            ),
        ]

    first = read()
    assert [e.operation for e in first] == [Operation.INSERT, Operation.INSERT, Operation.UPDATE]
    await sink.write(SinkBatch(tuple(first), {QUALIFIED: SCHEMA}, None))  # no checkpoint
    await sink.write(batch(HISTORY))  # HISTORY[0] is the write the snapshot read of row 1
    assert sink.take_absorbed_copies() == {}
    await sink.write(SinkBatch(tuple(read(later=5)), {QUALIFIED: SCHEMA}, None))
    assert sink.take_absorbed_copies() == {QUALIFIED: len(first)}

    table = f'"{sink._naming.schema_for("contract", "orders")}"."orders"'
    async with ts_pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT _cdc_event_id, _cdc_op, _cdc_time, _cdc_writetime, _cdc_write_id, _cdc_ttl "
            f"FROM {table} WHERE _cdc_segment = -1 ORDER BY _cdc_index"
        )
        ops = await connection.fetch(f"SELECT _cdc_op, count(*) AS n FROM {table} GROUP BY 1")
    assert [(r["_cdc_event_id"], r["_cdc_op"]) for r in rows] == [
        (e.event_id, "SNAPSHOT") for e in first
    ]
    assert [r["_cdc_time"] for r in rows] == [micros_to_datetime(t) for t in (10, 40, 50)]
    assert [r["_cdc_writetime"] for r in rows] == [10, 40, 50]
    assert [r["_cdc_ttl"] for r in rows] == [None, None, 60]
    assert [r["_cdc_write_id"] for r in rows] == [write_id(e) for e in first]
    assert {r["_cdc_op"]: r["n"] for r in ops} == {
        "SNAPSHOT": 3,
        "INSERT": 2,
        "UPDATE": 4,
        "DELETE": 2,
    }
    # In source order: the stream's (partition node1) first, then the snapshot's (none).
    assert await read_back() == [e.event_id for e in HISTORY] + [e.event_id for e in first]


# The history table as the sink made it before write ids (keyed by event id).
_BEFORE_WRITE_IDS = (
    "_cdc_time timestamptz NOT NULL, _cdc_event_id text NOT NULL, _cdc_op text NOT NULL, "
    "_cdc_scope text, _cdc_static boolean NOT NULL, _cdc_columns jsonb, "
    "_cdc_deleted_columns text[], _cdc_collections jsonb, _cdc_counters jsonb, "
    "_cdc_counter_totals jsonb, _cdc_range jsonb, _cdc_ttl integer, "
    "_cdc_expires_at timestamptz, _cdc_writetime bigint NOT NULL, _cdc_partition_id text, "
    "_cdc_segment bigint NOT NULL, _cdc_offset bigint NOT NULL, _cdc_index integer NOT NULL, "
    "_cdc_captured_at timestamptz NOT NULL, id integer"
)


async def test_a_history_table_from_before_write_ids_takes_them_on(make_ts_sink, ts_pool):
    sink, read_back = await make_ts_sink("history")
    extension = await sink.timescale()
    schema = sink._naming.schema_for("contract", "orders")
    table = f'"{schema}"."orders"'
    first = HISTORY[0]
    async with ts_pool.acquire() as connection:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        await connection.execute(f"CREATE TABLE {table} ({_BEFORE_WRITE_IDS})")
        await connection.execute(
            f'CREATE UNIQUE INDEX "orders__cdc_event" ON {table} (_cdc_event_id, _cdc_time)'
        )
        await connection.execute(
            f"SELECT \"{extension.schema}\".create_hypertable('{schema}.orders', "
            f"\"{extension.schema}\".by_range('_cdc_time'::name, '7 days'::interval))"
        )
        await connection.execute(
            f"INSERT INTO {table} (_cdc_time, _cdc_event_id, _cdc_op, _cdc_static, "
            "_cdc_writetime, _cdc_partition_id, _cdc_segment, _cdc_offset, _cdc_index, "
            "_cdc_captured_at, id) VALUES ($1, $2, 'INSERT', false, $3, 'node1', 1, 100, 0, "
            "now(), 1)",
            micros_to_datetime(first.timestamp_micros),
            first.event_id,
            first.timestamp_micros,
        )

    await sink.write(batch(HISTORY))  # the first event again: held under its event id
    copies = [replica_copy(e, "node2", SourcePosition(2, i)) for i, e in enumerate(HISTORY)]
    await sink.write(batch(copies))

    assert await sink.is_hypertable(QUALIFIED)
    async with ts_pool.acquire() as connection:
        indexes = await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'orders'",
            schema,
        )
    assert {"orders__cdc_event", "orders__cdc_write"} <= {r["indexname"] for r in indexes}
    held = await read_back()
    # Every write held once, but for the one recorded before write ids: its row has
    # none, so another node's copy of it is not recognised (ADR 0005).
    assert held == [e.event_id for e in HISTORY] + [copies[0].event_id]
    assert sink.take_absorbed_copies() == {QUALIFIED: len(HISTORY)}
    assert await sink.write_ids(QUALIFIED) == [
        *sorted(write_id(e) for e in HISTORY),
        None,
    ]
