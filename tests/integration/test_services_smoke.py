"""Each real service does real work: the fixtures' endpoints are usable, not just open ports."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- Cassandra


def _idx_offsets(cdc_raw_dir: Path) -> dict[str, int]:
    """Durable offset recorded in each CommitLog-*_cdc.idx ("<offset>[\\nCOMPLETED]")."""
    offsets = {}
    for idx in cdc_raw_dir.glob("CommitLog-*_cdc.idx"):
        try:
            offsets[idx.name] = int(idx.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # being rewritten right now
    return offsets


def test_cassandra_cdc_writes_reach_cdc_raw(cassandra_session, cassandra_keyspace, cdc_raw_dir):
    ks = cassandra_keyspace
    cassandra_session.execute(
        f"CREATE TABLE {ks}.orders (id int PRIMARY KEY, item text, qty int) WITH cdc = true"
    )
    before = _idx_offsets(cdc_raw_dir)
    insert = cassandra_session.prepare(f"INSERT INTO {ks}.orders (id, item, qty) VALUES (?, ?, ?)")
    for i in range(100):
        cassandra_session.execute(insert, (i, f"item-{i}", i % 7))
    assert cassandra_session.execute(f"SELECT count(*) FROM {ks}.orders").one()[0] == 100

    # The segment is hard-linked into cdc_raw; its _cdc.idx advances on each commit log sync.
    deadline = time.monotonic() + 10
    advanced: dict[str, int] = {}
    while not advanced and time.monotonic() < deadline:
        time.sleep(0.2)
        advanced = {
            name: offset
            for name, offset in _idx_offsets(cdc_raw_dir).items()
            if offset > before.get(name, 0)
        }
    assert advanced, f"no CommitLog-*_cdc.idx in {cdc_raw_dir} advanced within 10s"
    for name, offset in advanced.items():
        segment = cdc_raw_dir / name.replace("_cdc.idx", ".log")
        assert segment.exists(), f"{name} without its segment"
        assert offset > 0
        assert segment.stat().st_size >= offset


# --------------------------------------------------------------------------- PostgreSQL


async def test_postgres_create_insert_select(postgres_database_dsn):
    import asyncpg

    conn = await asyncpg.connect(postgres_database_dsn)
    try:
        await conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL)")
        await conn.executemany(
            "INSERT INTO orders (id, item) VALUES ($1, $2)", [(1, "apple"), (2, "pear")]
        )
        rows = await conn.fetch("SELECT id, item FROM orders ORDER BY id")
        assert [tuple(r) for r in rows] == [(1, "apple"), (2, "pear")]
        assert (await conn.fetchval("SHOW server_version")).split(".")[0].isdigit()
    finally:
        await conn.close()


# --------------------------------------------------------------------------- ClickHouse

CH_DDL = (
    "CREATE TABLE {db}.events (id UInt64, version UInt64, name String) "
    "ENGINE = ReplacingMergeTree(version) ORDER BY id"
)
CH_INSERT = (
    "INSERT INTO {db}.events (id, version, name) "
    "VALUES (1, 1, 'old'), (1, 2, 'new'), (2, 1, 'only')"
)
CH_SELECT = "SELECT id, name FROM {db}.events FINAL ORDER BY id"
CH_EXPECTED = [(1, "new"), (2, "only")]


async def test_clickhouse_replacing_merge_tree_final(clickhouse_url, clickhouse_database):
    import aiohttp
    from aiochclient import ChClient

    db = clickhouse_database
    async with aiohttp.ClientSession() as http:
        client = ChClient(http, url=clickhouse_url)
        assert await client.is_alive()
        await client.execute(CH_DDL.format(db=db))
        await client.execute(CH_INSERT.format(db=db))
        rows = await client.fetch(CH_SELECT.format(db=db))
        assert [(r["id"], r["name"]) for r in rows] == CH_EXPECTED


CHDB_SCRIPT = """
import sys
from chdb import session as chs

ddl, insert, select, path = sys.argv[1:]
sess = chs.Session(path)
try:
    sess.query("CREATE DATABASE smoke")
    sess.query(ddl.format(db="smoke"))
    sess.query(insert.format(db="smoke"))
    print(str(sess.query(select.format(db="smoke"), "CSV")), end="")
finally:
    sess.close()
"""


def test_chdb_runs_the_same_statements(tmp_path):
    """The embedded ClickHouse (chdb) accepts the same DDL/DML as the server.

    In a child process: chdb allows one data path per process, and other tests own this one's.
    """
    proc = subprocess.run(
        [sys.executable, "-c", CHDB_SCRIPT, CH_DDL, CH_INSERT, CH_SELECT, str(tmp_path / "chdb")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(",") for line in proc.stdout.strip().splitlines()]
    assert [(int(i), name.strip('"')) for i, name in rows] == CH_EXPECTED


# --------------------------------------------------------------------------- TimescaleDB
# PGlite serves one connection at a time: each test uses a single connection, no pool.


@pytest.fixture
async def tsdb(timescaledb_dsn, timescaledb_schema):
    import asyncpg

    # The module's schema first; public holds the timescaledb extension's functions.
    conn = await asyncpg.connect(
        timescaledb_dsn, server_settings={"search_path": f'"{timescaledb_schema}", public'}
    )
    try:
        yield conn
    finally:
        await conn.close()


async def test_timescaledb_hypertable_and_time_bucket(tsdb):
    assert await tsdb.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    await tsdb.execute(
        "CREATE TABLE metrics (ts timestamptz NOT NULL, device int, value double precision)"
    )
    await tsdb.execute("SELECT create_hypertable('metrics', 'ts')")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    await tsdb.executemany(
        "INSERT INTO metrics (ts, device, value) VALUES ($1, $2, $3)",
        [(start + timedelta(minutes=m), 1, float(m)) for m in range(120)],
    )
    rows = await tsdb.fetch(
        "SELECT time_bucket('1 hour', ts) AS bucket, count(*) AS n, avg(value) AS avg "
        "FROM metrics GROUP BY bucket ORDER BY bucket"
    )
    assert [(r["bucket"], r["n"], r["avg"]) for r in rows] == [
        (start, 60, 29.5),
        (start + timedelta(hours=1), 60, 89.5),
    ]


async def test_timescaledb_one_mib_parameter(tsdb):
    """A single protocol message far over 64 KiB (the bug in pglite-socket's own server)."""
    big = "x" * (1 << 20)
    assert await tsdb.fetchval("SELECT length($1::text)", big) == 1 << 20
    await tsdb.execute("CREATE TABLE blobs (id int, body text)")
    await tsdb.execute("INSERT INTO blobs VALUES (1, $1)", big)
    assert await tsdb.fetchval("SELECT md5(body) = md5($1::text) FROM blobs WHERE id = 1", big)


async def test_timescaledb_ten_thousand_row_unnest_batch(tsdb):
    await tsdb.execute("CREATE TABLE batch (id int PRIMARY KEY, name text)")
    ids = list(range(10_000))
    names = [f"name-{i}" for i in ids]
    await tsdb.execute(
        "INSERT INTO batch (id, name) SELECT * FROM unnest($1::int[], $2::text[])", ids, names
    )
    assert await tsdb.fetchval("SELECT count(*) FROM batch") == 10_000
    assert await tsdb.fetchval("SELECT name FROM batch WHERE id = 9999") == "name-9999"


async def test_timescaledb_copy_from_stdin(tsdb):
    """COPY FROM STDIN crashes PGlite behind pglite-socket; the launcher runs it itself."""
    await tsdb.execute("CREATE TABLE copied (id int, name text)")
    result = await tsdb.copy_records_to_table("copied", records=[(i, f"n{i}") for i in range(1000)])
    assert result == "COPY 1000"
    assert await tsdb.fetchval("SELECT count(*) FROM copied") == 1000


async def test_timescaledb_queues_a_second_connection(timescaledb_dsn, tsdb):
    """A second client waits for the first instead of hanging forever."""
    import asyncio

    import asyncpg

    async def second() -> int:
        conn = await asyncpg.connect(timescaledb_dsn)
        try:
            return await conn.fetchval("SELECT 42")
        finally:
            await conn.close()

    task = asyncio.create_task(second())
    await asyncio.sleep(0.3)
    assert not task.done()  # queued behind `tsdb`
    assert await tsdb.fetchval("SELECT 1") == 1
    await tsdb.close()
    assert await asyncio.wait_for(task, timeout=10) == 42
