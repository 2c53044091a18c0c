"""PostgreSQL and TimescaleDB sink throughput against each server's own bulk path.

    eval "$(scripts/services env)"
    .venv/bin/python bench/sinks_postgres.py [--events 300000] [--runs 3] [--ts-events 50000]

A stream of change events on a 10-column table (80% partial updates of existing keys,
10% inserts of new keys, 10% row deletes; write timestamps increasing) goes through
``PostgresSink`` at batch sizes 1,000 and 10,000, each into fresh tables holding the
same preloaded rows. In the same run, batch by batch in turn with the sink's writes
(so that all meet the same load), the same batches are applied by the bound the sink
is measured against: a bare ``INSERT ... SELECT FROM unnest(...) ON CONFLICT (pk)
DO UPDATE SET every column = excluded`` (no last-write-wins) of the batch's final rows,
exactly as the sink sends them, into a logged table of the mirror table's shape (made
``LIKE`` it) holding the same preloaded rows, one transaction per batch with the same
offset upsert as the sink's (target: the sink at >= 75% of its rate). Printed beside
it, for information: the same bare upsert of the final rows into a table of the user's
ten columns only (no bookkeeping columns: a stricter bound), and a binary ``COPY`` of
the final rows into a logged table of the mirror's shape. Only the writes are timed
(the final rows are computed beforehand). Each ratio is taken within one run; runs
are repeated and each ratio's median printed, with the load average around each run.
The last line is ``postgres: <ratio> of bare upserts (into a table of the mirror's
shape)``, at the pipeline's default batch size (1,000); the line before it gives the
ratio against the user's columns only.

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
from cdc_adapters.postgres.collapse import collapse
from cdc_adapters.postgres.identifiers import quote
from cdc_adapters.postgres.layout import NEVER
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
    return await measured(sink, events, batch_size)


async def measured(sink: Any, events: int, batch_size: int) -> float:
    """Seconds to write the measured stream (after the preload)."""
    spent = 0.0
    for events_batch in stream(events, batch_size, events // 5):
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
OFFSET_UPSERT = (
    "INSERT INTO {schema}.cdc_offsets AS o (destination, partition_id, segment_id, position, "
    "event_index, snapshot, events_processed, updated_at) "
    "VALUES ('bound', 'n1', $1, $2, 0, NULL, $3, now()) "
    "ON CONFLICT (destination, partition_id) DO UPDATE SET segment_id = excluded.segment_id, "
    "position = excluded.position, event_index = excluded.event_index, "
    "events_processed = o.events_processed + excluded.events_processed, "
    "updated_at = excluded.updated_at"
)


def sent_rows(sink: PostgresSink, events: list[ChangeEvent]) -> list[tuple[Any, ...]]:
    """The batch's final rows exactly as the sink sends them (its row type's fields),
    from its own fold (an internal of the sink: this is a benchmark)."""
    prepared = sink._prepare(SCHEMA)
    writes, _ = collapse(events, {SCHEMA.qualified_name: prepared.plan})
    table = writes[SCHEMA.qualified_name]
    return [row for chunk in table.chunks(False, len(events)) for row in chunk]


def _user_rows(events: list[ChangeEvent]) -> list[tuple[Any, ...]]:
    """The same final rows in the user's columns only: one per key, the changes merged
    in order, a deleted row with its values null."""
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


class MirrorShape:
    """How the sink's row type's fields land in the mirror table's columns, so the
    bound writes exactly the rows the sink writes, in a table made like the sink's."""

    def __init__(self, sink: PostgresSink) -> None:
        layout = sink._prepare(SCHEMA).layout
        target = layout.main
        self.table = target.table
        self.row_type = f'"{target.schema}"."{target.row_type}"'
        columns = [quote(k.name) for k in target.keys]
        fields = [f"u.k{i}" for i in range(len(target.keys))]
        for i, column in enumerate(target.values):
            columns += [quote(column.name), quote(column.ts), quote(column.exp)]
            fields += [f"u.v{i}", f"u.t{i}", f"u.x{i}"]
        columns += ['"_cdc_live_at"', '"_cdc_live_exp"', '"_cdc_deleted_at"', '"_cdc_writetime"']
        fields += ["u.live", "u.lx", f"coalesce(u.rowdel, {NEVER})", "u.wt"]
        self.columns = columns
        self.fields = fields

    def upsert(self, table: str) -> str:
        sets = ", ".join(f"{c} = excluded.{c}" for c in self.columns[1:])
        return (
            f"INSERT INTO {table} ({', '.join(self.columns)}) SELECT {', '.join(self.fields)} "
            f'FROM unnest($1::{self.row_type}[]) AS u ON CONFLICT ("id") DO UPDATE SET {sets}'
        )

    def copied(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """A sent row as the table's columns hold it, for COPY (which takes no SELECT)."""
        values = list(row[: len(self.fields)])
        values[len(self.fields) - 2] = NEVER if values[-2] is None else values[-2]
        return tuple(values)


async def bound_tables(pool: Any, schema: str, sink: PostgresSink, batch_size: int) -> None:
    """Tables for the bounds beside the sink's: a copy of the mirror table (made LIKE it)
    and one of the user's columns holding the same preloaded rows, and an empty one of
    the mirror's shape for the COPY; all vacuumed."""
    shape = MirrorShape(sink)
    mirror = f'"{schema}"."{shape.table}"'
    async with pool.acquire() as connection:
        await connection.execute(f'CREATE TABLE "{schema}"."bare" (LIKE {mirror} INCLUDING ALL)')
        # The COPY's keys repeat from batch to batch: an index on the key, not a unique one.
        await connection.execute(
            f'CREATE TABLE "{schema}"."copied" (LIKE {mirror} INCLUDING DEFAULTS)'
        )
        await connection.execute(f'CREATE INDEX ON "{schema}"."copied" ("id")')
        await connection.execute(f'INSERT INTO "{schema}"."bare" SELECT * FROM {mirror}')
        await connection.execute(
            f'CREATE TABLE "{schema}"."plain" ("id" bigint PRIMARY KEY, {DEFINITION})'
        )
        for batch in stream(0, batch_size, 0):
            await connection.copy_records_to_table(
                "plain", schema_name=schema, records=_user_rows(batch)
            )
        for name in (shape.table, "bare", "copied", "plain"):
            await connection.execute(f'VACUUM ANALYZE "{schema}"."{name}"')


async def interleaved(
    pool: Any, sink: PostgresSink, events: int, batch_size: int, schema: str
) -> tuple[float, float, float, int, float]:
    """Seconds of the sink, of the bare upsert into the mirror's shape, of the bare
    upsert into the user's columns, and rows and seconds of the COPY, batch by batch
    in turn, so that all of them meet the same load on this shared machine. Each bound
    applies a batch in a transaction with its offset upsert, timed as the sink is
    (encoding, round trips, server), its final rows computed beforehand."""
    shape = MirrorShape(sink)
    mirror_upsert = shape.upsert(f'"{schema}"."bare"')
    names = list(COLUMNS)
    types = [SQL_TYPES[COLUMNS[n]] for n in names]
    arrays = ", ".join(f"${i + 2}::{t}[]" for i, t in enumerate(types))
    sets = ", ".join(f'"{n}" = excluded."{n}"' for n in names)
    user_upsert = (
        f'INSERT INTO "{schema}"."plain" ({USER_COLUMNS}) SELECT * FROM unnest($1::bigint[], '
        f'{arrays}) ON CONFLICT ("id") DO UPDATE SET {sets}'
    )
    offsets = OFFSET_UPSERT.format(schema=f'"{schema}"')
    sink_s = mirror_s = user_s = copy_s = 0.0
    copied = 0
    async with pool.acquire() as connection:
        for i, batch in enumerate(stream(events, batch_size, events // 5)):
            item = sink_batch(batch)
            sent = sent_rows(sink, batch)
            columns = [list(c) for c in zip(*_user_rows(batch), strict=True)]
            rows = [shape.copied(r) for r in sent]
            started = time.perf_counter()
            await sink.write(item)
            sink_s += time.perf_counter() - started
            started = time.perf_counter()
            async with connection.transaction():
                await connection.execute(mirror_upsert, sent)
                await connection.execute(offsets, 1, i, len(batch))
            mirror_s += time.perf_counter() - started
            started = time.perf_counter()
            async with connection.transaction():
                await connection.execute(user_upsert, *columns)
                await connection.execute(offsets, 1, i, len(batch))
            user_s += time.perf_counter() - started
            started = time.perf_counter()
            async with connection.transaction():
                await connection.copy_records_to_table(
                    "copied",
                    schema_name=schema,
                    records=rows,
                    columns=[c.strip('"') for c in shape.columns],
                )
                await connection.execute(offsets, 1, i, len(batch))
            copy_s += time.perf_counter() - started
            copied += len(rows)
    return sink_s, mirror_s, user_s, copied, copy_s


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


async def bench_postgres(dsn: str, events: int, runs: int) -> tuple[float, float]:
    """Prints each run and the medians; returns the median ratios at batch size 1,000
    against the bare upsert into the mirror's shape and into the user's columns."""
    pool = await create_pool(dsn, min_size=2, max_size=2)
    print(f"PostgreSQL ({dsn.split('@')[-1]}), {events:,} events, 10 columns, {runs} runs")
    sizes = (1000, 10_000)
    ratios: dict[str, dict[int, list[float]]] = {
        k: {b: [] for b in sizes} for k in ("mirror", "user", "copy")
    }
    for run in range(1, runs + 1):
        print(f"run {run} ({_load()})")
        for batch_size in sizes:
            schema = f"bench_{batch_size}_{uuid.uuid4().hex[:6]}"
            sink = PostgresSink(name="bench", pool=pool, schema=schema, metadata_schema=schema)
            for events_batch in stream(0, batch_size, events // 5):
                await sink.write(sink_batch(events_batch))
            await bound_tables(pool, schema, sink, batch_size)
            seconds, mirror_s, user_s, rows, copy_s = await interleaved(
                pool, sink, events, batch_size, schema
            )
            for key, bound in (("mirror", mirror_s), ("user", user_s), ("copy", copy_s)):
                ratios[key][batch_size].append(bound / seconds)
            print(
                f"  batch {batch_size:>6,}: sink {events / seconds:>8,.0f} events/s "
                f"({seconds:.2f} s) | bare upsert, mirror's shape {events / mirror_s:>8,.0f} "
                f"({mirror_s:.2f} s) | bare upsert, user's columns {events / user_s:>8,.0f} "
                f"({user_s:.2f} s) | COPY {rows / copy_s:>9,.0f} rows/s ({copy_s:.2f} s, "
                f"{rows:,} rows) | sink/bare {mirror_s / seconds:.2f}, sink/bare(user's "
                f"columns) {user_s / seconds:.2f}, sink/COPY {copy_s / seconds:.2f}"
            )
            async with pool.acquire() as connection:
                await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        print(f"  ({_load()})")
    for batch_size in sizes:
        median = {k: statistics.median(v[batch_size]) for k, v in ratios.items()}
        runs_text = ", ".join(f"{r:.2f}" for r in ratios["mirror"][batch_size])
        print(
            f"batch {batch_size:>6,}: sink/bare median {median['mirror']:.2f} (runs: "
            f"{runs_text}); sink/bare(user's columns) {median['user']:.2f}; "
            f"sink/COPY {median['copy']:.2f}"
        )
    await pool.close()
    return statistics.median(ratios["mirror"][1000]), statistics.median(ratios["user"][1000])


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
    ratios = None
    if args.postgres_dsn and args.events:
        ratios = await bench_postgres(args.postgres_dsn, args.events, args.runs)
    if args.timescaledb_dsn and args.ts_events:
        await bench_timescaledb(args.timescaledb_dsn, args.ts_events)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MiB")
    if ratios is not None:
        mirror, user = ratios
        print(f"(batch 1,000: {user:.2f} of bare upserts into a table of the user's columns only)")
        print(f"postgres: {mirror:.2f} of bare upserts (into a table of the mirror's shape)")


if __name__ == "__main__":
    asyncio.run(main())
