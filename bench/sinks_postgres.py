"""PostgreSQL and TimescaleDB sink throughput against each server's own bulk path.

    eval "$(scripts/services env)"
    .venv/bin/python bench/sinks_postgres.py [--events 300000] [--runs 3] [--ts-events 50000]

A stream of change events on a 10-column table (80% partial updates of existing keys,
10% inserts of new keys, 10% row deletes; write timestamps increasing) goes through
``PostgresSink`` at batch sizes 1,000 and 10,000, each into fresh tables holding the
same preloaded rows. In the same run, the same batches are applied by the bound the
sink is measured against: a bare ``INSERT ... SELECT FROM unnest(...) ON CONFLICT (id)
DO UPDATE SET every column`` of the batch's final rows (one per key, as the sink
sends them) into a logged table of the user's columns holding the same preloaded rows,
one transaction per batch with the same offset upsert as the sink's (target: the sink
at >= 75% of its rate). A binary ``COPY`` of those rows into a logged table of the same
columns is printed for information. Each ratio is taken within one run; the script
repeats the runs and prints each ratio's median, and the load average around each run.
The last line is ``postgres: <ratio> of bare upserts`` at the pipeline's default batch
size (1,000).

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
import os
import random
import resource
import statistics
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


async def run_sink(
    sink: Any, events: int, batch_size: int, vacuum: tuple[Any, str] | None = None
) -> float:
    """Seconds to write the whole stream (event generation and the untimed preload of
    the existing rows excluded; ``vacuum`` (pool, table): vacuum the preloaded table
    first, as the bound's is)."""
    preloaded = events // 5
    for events_batch in stream(0, batch_size, preloaded):
        await sink.write(sink_batch(events_batch))
    if vacuum is not None:
        async with vacuum[0].acquire() as connection:
            await connection.execute(f"VACUUM ANALYZE {vacuum[1]}")
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
DEFINITION = ", ".join(f'"{n}" {SQL_TYPES[t]}' for n, t in COLUMNS.items())


def _final_rows(events: list[ChangeEvent]) -> list[tuple[Any, ...]]:
    """One row per key of the batch (as the sink sends them), the changes merged in
    order, a deleted row with its values null: what a bare upsert has to write."""
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


OFFSET_UPSERT = (
    "INSERT INTO {schema}.cdc_offsets AS o (destination, partition_id, segment_id, position, "
    "event_index, snapshot, events_processed, updated_at) "
    "VALUES ('bound', 'n1', $1, $2, 0, NULL, $3, now()) "
    "ON CONFLICT (destination, partition_id) DO UPDATE SET segment_id = excluded.segment_id, "
    "position = excluded.position, event_index = excluded.event_index, "
    "events_processed = o.events_processed + excluded.events_processed, "
    "updated_at = excluded.updated_at"
)


async def _prepared_bound(connection: Any, schema: str, table: str, index: str) -> None:
    """A logged table of the user's columns holding the preloaded rows, vacuumed."""
    await connection.execute(
        f'CREATE TABLE "{schema}"."{table}" ("id" bigint NOT NULL, {DEFINITION})'
    )
    await connection.execute(f'CREATE {index} ON "{schema}"."{table}" ("id")')


async def bare_upsert(pool: Any, events: int, batch_size: int, schema: str) -> float:
    """Seconds to apply the same batches as their final rows with a bare upsert (no
    last-write-wins: ``SET every column = excluded``) into a logged table holding the
    same preloaded rows, each batch in a transaction with its offset upsert. Timed as
    the sink is: encoding, round trips and server, the rows computed beforehand."""
    names = list(COLUMNS)
    table = f'"{schema}"."bare"'
    types = [SQL_TYPES[COLUMNS[n]] for n in names]
    arrays = ", ".join(f"${i + 2}::{t}[]" for i, t in enumerate(types))
    sets = ", ".join(f'"{n}" = excluded."{n}"' for n in names)
    upsert = (
        f"INSERT INTO {table} ({USER_COLUMNS}) SELECT * FROM unnest($1::bigint[], {arrays}) "
        f'ON CONFLICT ("id") DO UPDATE SET {sets}'
    )
    offsets = OFFSET_UPSERT.format(schema=f'"{schema}"')
    spent = 0.0
    async with pool.acquire() as connection:
        await _prepared_bound(connection, schema, "bare", "UNIQUE INDEX bare_pk")
        for batch in stream(0, batch_size, events // 5):
            await connection.copy_records_to_table(
                "bare", schema_name=schema, records=_final_rows(batch)
            )
        await connection.execute(f"VACUUM ANALYZE {table}")
        for i, batch in enumerate(stream(events, batch_size, events // 5)):
            rows = _final_rows(batch)
            columns = [list(c) for c in zip(*rows, strict=True)]
            started = time.perf_counter()
            async with connection.transaction():
                await connection.execute(upsert, *columns)
                await connection.execute(offsets, 1, i, len(batch))
            spent += time.perf_counter() - started
    return spent


async def copy_rows(pool: Any, events: int, batch_size: int, schema: str) -> tuple[int, float]:
    """(rows, seconds) of a binary COPY of the same final rows into a logged table of
    the same columns (an index on the key, not a unique one: keys repeat across
    batches), each batch in a transaction with its offset upsert."""
    offsets = OFFSET_UPSERT.format(schema=f'"{schema}"')
    spent, total = 0.0, 0
    async with pool.acquire() as connection:
        await _prepared_bound(connection, schema, "copied", "INDEX copied_id")
        for i, batch in enumerate(stream(events, batch_size, events // 5)):
            rows = _final_rows(batch)
            started = time.perf_counter()
            async with connection.transaction():
                await connection.copy_records_to_table("copied", schema_name=schema, records=rows)
                await connection.execute(offsets, 1, i, len(batch))
            spent += time.perf_counter() - started
            total += len(rows)
    return total, spent


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


async def bench_postgres(dsn: str, events: int, runs: int) -> float:
    """Prints each run and the medians; returns the median ratio at batch size 1,000."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    print(f"PostgreSQL ({dsn.split('@')[-1]}), {events:,} events, 10 columns, {runs} runs")
    ratios: dict[int, list[float]] = {1000: [], 10_000: []}
    copies: dict[int, list[float]] = {1000: [], 10_000: []}
    for run in range(1, runs + 1):
        print(f"run {run} ({_load()})")
        for batch_size in ratios:
            schema = f"bench_{batch_size}_{uuid.uuid4().hex[:6]}"
            sink = PostgresSink(name="bench", pool=pool, schema=schema, metadata_schema=schema)
            seconds = await run_sink(sink, events, batch_size, (pool, f'"{schema}"."users"'))
            bare_seconds = await bare_upsert(pool, events, batch_size, schema)
            rows, copy_seconds = await copy_rows(pool, events, batch_size, schema)
            ratio, copy_ratio = bare_seconds / seconds, copy_seconds / seconds
            ratios[batch_size].append(ratio)
            copies[batch_size].append(copy_ratio)
            print(
                f"  batch {batch_size:>6,}: sink {events / seconds:>8,.0f} events/s "
                f"({seconds:.1f} s) | bare upsert {events / bare_seconds:>8,.0f} events/s "
                f"({bare_seconds:.1f} s) | COPY {rows / copy_seconds:>9,.0f} rows/s "
                f"({copy_seconds:.1f} s, {rows:,} rows) | sink/bare {ratio:.2f}, "
                f"sink/COPY {copy_ratio:.2f}"
            )
            async with pool.acquire() as connection:
                await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        print(f"  ({_load()})")
    for batch_size in ratios:
        print(
            f"batch {batch_size:>6,}: sink/bare median {statistics.median(ratios[batch_size]):.2f} "
            f"(runs: {', '.join(f'{r:.2f}' for r in ratios[batch_size])}); sink/COPY median "
            f"{statistics.median(copies[batch_size]):.2f}"
        )
    await pool.close()
    return statistics.median(ratios[1000])


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ts-events", type=int, default=50_000)
    parser.add_argument("--postgres-dsn", default=os.environ.get("CDC_TEST_POSTGRES_DSN"))
    parser.add_argument("--timescaledb-dsn", default=os.environ.get("CDC_TEST_TIMESCALEDB_DSN"))
    args = parser.parse_args()
    ratio = None
    if args.postgres_dsn and args.events:
        ratio = await bench_postgres(args.postgres_dsn, args.events, args.runs)
    if args.timescaledb_dsn and args.ts_events:
        await bench_timescaledb(args.timescaledb_dsn, args.ts_events)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MiB")
    if ratio is not None:
        print(f"postgres: {ratio:.2f} of bare upserts")


if __name__ == "__main__":
    asyncio.run(main())
