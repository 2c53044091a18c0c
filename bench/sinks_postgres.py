"""PostgreSQL and TimescaleDB sink throughput against each server's own bulk path (issue 5).

    eval "$(scripts/services env)"
    .venv/bin/python bench/sinks_postgres.py [--events 1000000] [--ts-events 50000]

A stream of change events on a 10-column table (80% partial updates of existing keys,
10% inserts of new keys, 10% row deletes; write timestamps increasing) goes through
``PostgresSink`` at batch sizes 1,000 and 10,000, each into fresh tables. Beside it, in
the same run, the final rows the mirror holds are loaded with ``COPY`` into an
UNLOGGED table: the bulk-load rate the sink is measured against (target: >= 50%).

TimescaleDB (the WASM server here: no COPY, one connection) is measured the same way
for the history sink, against a plain multi-row ``INSERT ... VALUES`` of the same
history rows into a plain table: the fastest honest path that server has.

Events are generated one batch at a time, so memory stays bounded by the batch size;
the peak resident memory is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import os
import random
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cdc_adapters.postgres import PostgresSink, create_pool
from cdc_adapters.timescaledb import TimescaleHistorySink
from cdc_domain.events import ChangeEvent, DeletionScope, Operation, SourcePosition
from cdc_domain.offsets import Checkpoint
from cdc_domain.ports import SinkBatch
from tests.factories import table

COLUMNS = {
    "name": "text", "email": "text", "city": "text", "status": "text", "age": "int",
    "visits": "bigint", "score": "double", "active": "boolean", "seen": "timestamp",
    "ref": "uuid",
}  # fmt: skip
SCHEMA = table("users", keyspace="bench", partition={"id": "bigint"}, regular=COLUMNS)
CAPTURED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _value(rng: random.Random, name: str) -> object:
    return {
        "name": lambda: f"user {rng.randrange(10**6)}",
        "email": lambda: f"u{rng.randrange(10**6)}@example.com",
        "city": lambda: rng.choice(["Oslo", "Lyon", "Kyoto", "Lima"]),
        "status": lambda: rng.choice(["new", "active", "gone"]),
        "age": lambda: rng.randrange(100),
        "visits": lambda: rng.randrange(10**9),
        "score": lambda: rng.random(),
        "active": lambda: rng.random() < 0.5,
        "seen": lambda: CAPTURED + dt.timedelta(seconds=rng.randrange(10**7)),
        "ref": lambda: uuid.UUID(int=rng.getrandbits(128)),
    }[name]()


def stream(
    events: int, batch_size: int, preloaded: int = 0, seed: int = 7
) -> Iterator[list[ChangeEvent]]:
    """Batches of the benchmark stream; only the live key set is kept between batches.

    With ``preloaded``, the stream is just the inserts of keys ``0..preloaded-1``
    (the existing rows the measured stream updates and deletes).
    """
    rng = random.Random(seed)
    names = list(COLUMNS)
    live: list[int] = list(range(preloaded)) if events else []
    next_key = preloaded if events else 0
    segment, prefix = (1, "e") if events else (0, "p")
    # The measured stream is newer than the preload, so its updates really update.
    ts = 1_700_000_000_000_000 + (preloaded * 50 if events else 0)
    batch: list[ChangeEvent] = []
    for i in range(events or preloaded):
        ts += rng.randrange(1, 50)
        roll = rng.random()
        if not events or roll < 0.1:
            key, op = next_key, Operation.INSERT
            next_key += 1
            live.append(key)
            columns = {n: _value(rng, n) for n in names}
            extra: dict[str, Any] = {}
        elif roll < 0.2:
            key = live.pop(rng.randrange(len(live)))
            op, columns, extra = Operation.DELETE, {}, {"scope": DeletionScope.ROW}
        else:
            key, op = live[rng.randrange(len(live))], Operation.UPDATE
            columns = {n: _value(rng, n) for n in rng.sample(names, rng.randint(1, 3))}
            extra = {}
        batch.append(
            ChangeEvent.create(
                operation=op,
                keyspace="bench",
                table="users",
                partition_key={"id": key},
                columns=columns,
                timestamp_micros=ts,
                captured_at=CAPTURED,
                position=SourcePosition(segment, i),
                event_id=f"{prefix}{i}",
                **extra,
            )
        )
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def sink_batch(events: list[ChangeEvent]) -> SinkBatch:
    return SinkBatch(
        tuple(events),
        {SCHEMA.qualified_name: SCHEMA},
        Checkpoint("n1", events[-1].position, len(events)),
    )


async def run_sink(sink: Any, events: int, batch_size: int) -> float:
    """Seconds to write the whole stream (event generation and the untimed preload of
    the existing rows excluded)."""
    preloaded = events // 5
    for events_batch in stream(0, batch_size, preloaded):
        await sink.write(sink_batch(events_batch))
    spent = 0.0
    for events_batch in stream(events, batch_size, preloaded):
        item = sink_batch(events_batch)
        started = time.perf_counter()
        await sink.write(item)
        spent += time.perf_counter() - started
    return spent


USER_COLUMNS = '"id", ' + ", ".join(f'"{n}"' for n in COLUMNS)
SQL_TYPES = {
    "text": "text", "int": "integer", "bigint": "bigint", "double": "double precision",
    "boolean": "boolean", "timestamp": "timestamptz", "uuid": "uuid",
}  # fmt: skip


def _bare_rows(events: list[ChangeEvent]) -> list[tuple[Any, ...]]:
    """One row per key of the batch (as the sink sends), the changes merged in order,
    a deleted row with its values null: what a bare upsert has to write."""
    names = list(COLUMNS)
    rows: dict[int, list[Any]] = {}
    for event in events:
        key = event.partition_key["id"]
        row = rows.get(key)
        if row is None:
            row = rows[key] = [key] + [None] * len(names)
        if event.scope is DeletionScope.ROW:
            row[1:] = [None] * len(names)
        for name, value in event.columns.items():
            row[1 + names.index(name)] = value
    return [tuple(rows[k]) for k in sorted(rows)]


async def bare_upsert_bound(pool: Any, events: int, batch_size: int, schema: str) -> float:
    """Seconds the server takes to upsert the same batches with no last-write-wins at
    all (``INSERT ... SELECT FROM unnest(column arrays) ON CONFLICT (id) DO UPDATE SET
    every column``) into a plain table holding the same preloaded rows: what any upsert
    design can at best reach on this server. The Python side is not timed."""
    names = list(COLUMNS)
    table = f'"{schema}"."bare"'
    types = [SQL_TYPES[COLUMNS[n]] for n in names]
    definition = ", ".join(f'"{n}" {t}' for n, t in zip(names, types, strict=True))
    arrays = ", ".join(f"${i + 2}::{t}[]" for i, t in enumerate(types))
    sets = ", ".join(f'"{n}" = excluded."{n}"' for n in names)
    upsert = (
        f"INSERT INTO {table} ({USER_COLUMNS}) SELECT * FROM unnest($1::bigint[], {arrays}) "
        f'ON CONFLICT ("id") DO UPDATE SET {sets}'
    )
    spent = 0.0
    async with pool.acquire() as connection:
        await connection.execute(f'CREATE TABLE {table} ("id" bigint PRIMARY KEY, {definition})')
        for batch in stream(0, batch_size, events // 5):
            await connection.copy_records_to_table(
                "bare", schema_name=schema, records=_bare_rows(batch)
            )
        await connection.execute(f"VACUUM ANALYZE {table}")
        for batch in stream(events, batch_size, events // 5):
            rows = _bare_rows(batch)
            columns = [list(c) for c in zip(*rows, strict=True)]
            started = time.perf_counter()
            async with connection.transaction():
                await connection.execute(upsert, *columns)
            spent += time.perf_counter() - started
    return spent


async def copy_baseline(pool: Any, source: str) -> tuple[int, float]:
    """COPY the mirror's final rows into an UNLOGGED table; (rows, seconds)."""
    async with pool.acquire() as connection:
        buffer = io.BytesIO()
        await connection.copy_from_query(
            f"SELECT {USER_COLUMNS} FROM {source}", output=buffer, format="binary"
        )
        await connection.execute(
            f"DROP TABLE IF EXISTS bench_copy; CREATE UNLOGGED TABLE bench_copy AS "
            f"SELECT {USER_COLUMNS} FROM {source} WITH NO DATA; "
            'ALTER TABLE bench_copy ADD PRIMARY KEY ("id")'
        )
        rows = await connection.fetchval(f"SELECT count(*) FROM {source}")
        buffer.seek(0)
        started = time.perf_counter()
        await connection.copy_to_table("bench_copy", source=buffer, format="binary")
        return rows, time.perf_counter() - started


async def bench_postgres(dsn: str, events: int) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    print(f"PostgreSQL ({dsn.split('@')[-1]}), {events:,} events, 10 columns")
    for batch_size in (1000, 10_000):
        schema = f"bench_{batch_size}_{uuid.uuid4().hex[:6]}"
        sink = PostgresSink(name="bench", pool=pool, schema=schema, metadata_schema=schema)
        seconds = await run_sink(sink, events, batch_size)
        rows, copy_seconds = await copy_baseline(pool, f'"{schema}"."users__live"')
        bare_seconds = await bare_upsert_bound(pool, events, batch_size, schema)
        sink_rate, copy_rate = events / seconds, rows / copy_seconds
        bare_rate = events / bare_seconds
        print(
            f"  batch {batch_size:>6,}: sink {sink_rate:>10,.0f} events/s ({seconds:.1f} s) | "
            f"COPY of the {rows:,} final rows {copy_rate:>10,.0f} rows/s | "
            f"ratio {sink_rate / copy_rate:.1%}\n"
            f"  {'':13} bare upsert, no LWW (bound) {bare_rate:>10,.0f} events/s "
            f"({bare_seconds:.1f} s server only) = {bare_rate / copy_rate:.1%} of COPY; "
            f"sink = {sink_rate / bare_rate:.0%} of the bound"
        )
        async with pool.acquire() as connection:
            await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await pool.close()


async def bench_timescaledb(dsn: str, events: int) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    print(f"TimescaleDB ({dsn.split('@')[-1]}), history mode, {events:,} events")
    for batch_size in (1000, 10_000):
        schema = f"bench_{batch_size}_{uuid.uuid4().hex[:6]}"
        sink = TimescaleHistorySink(name="bench", pool=pool, schema=schema, metadata_schema=schema)
        seconds = await run_sink(sink, events, batch_size)
        source = f'"{schema}"."users"'
        async with pool.acquire() as connection:
            await connection.execute(
                f"CREATE TABLE {schema}.plain AS SELECT * FROM {source} WITH NO DATA"
            )
            columns = [
                r["attname"]
                for r in await connection.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
                    "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    source,
                )
            ]
            names = ", ".join(f'"{c}"' for c in columns)
            spent, total = 0.0, 0
            cursor_rows = await connection.fetch(f"SELECT {names} FROM {source}")
            # One statement takes at most 32,767 parameters (the protocol's limit).
            per_statement = min(batch_size, 32767 // len(columns))
            for start in range(0, len(cursor_rows), per_statement):
                chunk = cursor_rows[start : start + per_statement]
                width = len(columns)
                values = ", ".join(
                    "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                    for r in range(len(chunk))
                )
                args = [v for row in chunk for v in row]
                started = time.perf_counter()
                await connection.execute(
                    f"INSERT INTO {schema}.plain ({names}) VALUES {values}", *args
                )
                spent += time.perf_counter() - started
                total += len(chunk)
            await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        sink_rate, insert_rate = events / seconds, total / spent
        print(
            f"  batch {batch_size:>6,}: sink {sink_rate:>10,.0f} events/s ({seconds:.1f} s) | "
            f"multi-row INSERT of the same {total:,} rows {insert_rate:>10,.0f} rows/s | "
            f"ratio {sink_rate / insert_rate:.0%}"
        )
    await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--ts-events", type=int, default=50_000)
    parser.add_argument("--postgres-dsn", default=os.environ.get("CDC_TEST_POSTGRES_DSN"))
    parser.add_argument("--timescaledb-dsn", default=os.environ.get("CDC_TEST_TIMESCALEDB_DSN"))
    args = parser.parse_args()
    if args.postgres_dsn and args.events:
        await bench_postgres(args.postgres_dsn, args.events)
    if args.timescaledb_dsn and args.ts_events:
        await bench_timescaledb(args.timescaledb_dsn, args.ts_events)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
